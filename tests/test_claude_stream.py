"""The Claude Code headless driver against the fake stream-json agent."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent_relay_runtime.contract import DeliveryMode, RelayMessage
from agent_relay_runtime.exceptions import SessionStartFailed
from agent_relay_runtime.supervisor import Supervisor
from agent_relay_runtime.testing import EventRecorder

from .conftest import claude_spec, read_trace

pytestmark = pytest.mark.anyio


async def send(supervisor: Supervisor, name: str, text: str, **kw: object) -> RelayMessage:
    message = RelayMessage(text=text, **kw)  # type: ignore[arg-type]
    await supervisor.get(name).receive_message(message)
    return message


async def test_ready_when_initialize_is_answered(
    supervisor: Supervisor, recorder: EventRecorder
) -> None:
    session = await supervisor.create(claude_spec())
    change = recorder.matching("status.changed")[0]
    assert (change.state, change.reason, change.signal) == (
        "ready",
        "initialize answered",
        "protocol",
    )
    assert session.capabilities.idle_signal == "protocol"
    argv = session.driver.argv
    assert "--replay-user-messages" in argv and "--session-id" in argv


async def test_a_turn_reports_exact_events(
    supervisor: Supervisor, recorder: EventRecorder, tmp_path: Path
) -> None:
    spec = claude_spec().model_copy(update={"cwd": tmp_path})
    await supervisor.create(spec)
    message = await send(supervisor, "claude", "do it write:out.txt bash:ls fail-tool")
    await recorder.wait_for("status.changed", where=lambda e: e.state == "idle", after=3)
    types = [e.type for e in recorder.events]
    start = types.index("delivery.accepted")
    # The receipt is reported by the delivery worker, in step with the protocol reader
    # but not in a fixed order with the events that follow the replay.
    assert types.index("turn.started") < types.index("delivery.delivered")
    protocol = [t for t in types[start:] if t != "delivery.delivered"]
    assert protocol == [
        "delivery.accepted",
        "status.changed",  # busy
        "turn.started",
        "transcript.chunk",  # the user's message, replayed
        "tool.called",
        "tool.completed",
        "file.changed",
        "tool.called",
        "command.started",
        "tool.completed",
        "command.completed",
        "tool.called",
        "command.started",
        "tool.failed",
        "command.completed",
        "transcript.chunk",
        "turn.completed",
        "usage.updated",
        "status.changed",  # idle
    ]
    delivered = recorder.matching("delivery.delivered")[0].receipt
    assert delivered.message_id == message.id
    assert delivered.evidence.kind == "protocol_ack"
    changed = recorder.matching("file.changed")[0]
    assert changed.path == "out.txt" and (tmp_path / "out.txt").read_text() == "fake\n"
    write = recorder.matching("tool.called")[0]
    assert write.tool == "Write" and write.input["file_path"] == "out.txt"
    failed = recorder.matching("command.completed")[1]
    assert failed.failed and failed.command == "false"
    assert recorder.matching("transcript.chunk")[-1].text.startswith("echo: do it")
    assert recorder.matching("turn.completed")[0].outcome == "completed"


async def test_waiting_messages_go_in_between_turns(
    supervisor: Supervisor, recorder: EventRecorder, tmp_path: Path
) -> None:
    trace = tmp_path / "trace.jsonl"
    await supervisor.create(claude_spec(trace_file=str(trace)))
    first = await send(supervisor, "claude", "one work:0.3")
    second = await send(supervisor, "claude", "two")
    await recorder.wait_for("delivery.delivered", where=lambda e: e.receipt.message_id == second.id)
    assert recorder.receipt_statuses(first.id) == ["accepted", "delivered"]
    assert recorder.receipt_statuses(second.id) == ["deferred", "delivered"]
    events = [t["event"] for t in read_trace(trace)]
    # The second message was written only after the first turn ended.
    assert events.index("turn_end") < [i for i, e in enumerate(events) if e == "submit"][1]


async def test_steer_interrupts_the_turn(
    supervisor: Supervisor, recorder: EventRecorder, tmp_path: Path
) -> None:
    trace = tmp_path / "trace.jsonl"
    await supervisor.create(claude_spec(trace_file=str(trace)))
    long = await send(supervisor, "claude", "long work:30")
    await recorder.wait_for("delivery.delivered", where=lambda e: e.receipt.message_id == long.id)
    steer = await send(supervisor, "claude", "change of plan", mode=DeliveryMode.STEER)
    await recorder.wait_for("delivery.delivered", where=lambda e: e.receipt.message_id == steer.id)
    outcomes = [e.outcome for e in recorder.matching("turn.completed")]
    assert outcomes[0] == "interrupted"
    first_end = next(t for t in read_trace(trace) if t["event"] == "turn_end")
    assert first_end["status"] == "interrupted"


async def test_immediate_joins_the_running_turn(
    supervisor: Supervisor, recorder: EventRecorder
) -> None:
    await supervisor.create(claude_spec())
    await send(supervisor, "claude", "busy work:1")
    await recorder.wait_for("status.changed", where=lambda e: e.state == "busy")
    now = await send(supervisor, "claude", "also this", mode=DeliveryMode.IMMEDIATE)
    got = await recorder.wait_for(
        "delivery.delivered", where=lambda e: e.receipt.message_id == now.id
    )
    assert got.receipt.evidence.kind == "protocol_ack"
    await recorder.wait_for("turn.completed")
    assert len(recorder.matching("turn.completed")) == 1  # one turn answered both


async def test_a_sixteen_mebibyte_line_and_garbage_do_not_stop_the_session(
    supervisor: Supervisor, recorder: EventRecorder
) -> None:
    await supervisor.create(claude_spec())
    size = 16 * 1024 * 1024
    await send(supervisor, "claude", f"garbage bigline:{size}")
    await recorder.wait_for("turn.completed", timeout=30)
    error = recorder.matching("protocol.error")[0]
    assert error.preview == "this is not json {"
    texts = [
        e.text for e in recorder.matching("transcript.chunk", where=lambda e: e.role == "assistant")
    ]
    assert any(len(t) == size for t in texts)
    assert supervisor.get("claude").state == "idle"


async def test_a_crash_fails_the_session(supervisor: Supervisor, recorder: EventRecorder) -> None:
    await supervisor.create(claude_spec())
    await send(supervisor, "claude", "crash")
    failed = await recorder.wait_for("session.failed")
    assert failed.exit_code == 2 and "unexpectedly: exit code 2" in failed.reason


async def test_a_cli_that_exits_at_start_fails_with_its_stderr(supervisor: Supervisor) -> None:
    spec = claude_spec().model_copy(update={"args": ["--bogus-flag"]})
    with pytest.raises(SessionStartFailed) as info:
        await supervisor.create(spec)
    message = str(info.value)
    assert "exited before it was ready: exit code 1" in message
    assert "unknown option '--bogus-flag'" in message


async def test_resume_keeps_the_given_conversation(supervisor: Supervisor) -> None:
    spec = claude_spec().model_copy(update={"args": ["--resume", "abc-123"]})
    session = await supervisor.create(spec)
    assert "--session-id" not in session.driver.argv
    await send(supervisor, "claude", "hello")
    await session.wait_state(lambda s: s == "idle", 10)
    assert session.identity.conversation_id == "abc-123"


@pytest.mark.parametrize("policy", ["allow", "deny"])
async def test_a_policy_answers_tool_approvals(
    supervisor: Supervisor, recorder: EventRecorder, policy: str
) -> None:
    await supervisor.create(claude_spec().model_copy(update={"approvals": policy}))
    await send(supervisor, "claude", "approve:ls")
    resolved = await recorder.wait_for("tool.approval.resolved")
    assert (resolved.decision, resolved.by) == (policy, "policy")
    requested = recorder.matching("tool.approval.requested")[0]
    assert requested.tool == "Bash" and requested.input == {"command": "ls"}
    outcome = "tool.completed" if policy == "allow" else "tool.failed"
    await recorder.wait_for(outcome)
    assert "blocked" not in recorder.states("claude")


async def test_a_person_answers_when_the_policy_is_ask(
    supervisor: Supervisor, recorder: EventRecorder
) -> None:
    session = await supervisor.create(claude_spec())
    await send(supervisor, "claude", "approve:rm-it")
    blocked = await recorder.wait_for("session.blocked")
    assert blocked.reason.startswith("approval requested for Bash (apr_")
    [pending] = session.approvals.pending()
    assert pending["input"] == {"command": "rm-it"}
    session.approvals.answer(pending["approval_id"], "allow")
    resolved = await recorder.wait_for("tool.approval.resolved")
    assert (resolved.decision, resolved.by) == ("allow", "user")
    await recorder.wait_for("tool.completed")
    await recorder.wait_for("status.changed", where=lambda e: e.state == "idle")
    assert recorder.states("claude")[-3:] == ["blocked", "busy", "idle"]


async def test_an_unanswered_approval_is_denied_at_its_timeout(
    supervisor: Supervisor, recorder: EventRecorder
) -> None:
    await supervisor.create(claude_spec().model_copy(update={"approval_timeout": 0.5}))
    await send(supervisor, "claude", "approve:ls")
    resolved = await recorder.wait_for("tool.approval.resolved")
    assert (resolved.decision, resolved.by) == ("deny", "timeout")
    failed = await recorder.wait_for("tool.failed")
    assert "denied by the agent-relay-runtime policy" in str(failed.error)


async def test_yolo_passes_the_bypass_flag_instead_of_asking(supervisor: Supervisor) -> None:
    session = await supervisor.create(claude_spec().model_copy(update={"yolo": True}))
    assert "--dangerously-skip-permissions" in session.driver.argv
    assert "--permission-prompt-tool" not in session.driver.argv


async def test_a_cli_without_a_login_fails_with_what_to_do(supervisor: Supervisor) -> None:
    with pytest.raises(SessionStartFailed, match=r"claude is not logged in.*ANTHROPIC_API_KEY"):
        await supervisor.create(claude_spec(logged_in=False))
    assert supervisor.sessions() == []

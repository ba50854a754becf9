"""The Codex app-server driver against the fake app-server."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent_relay_runtime.contract import DeliveryMode, RelayMessage
from agent_relay_runtime.supervisor import Supervisor
from agent_relay_runtime.testing import EventRecorder

from .conftest import codex_spec, read_trace

pytestmark = pytest.mark.anyio


async def send(supervisor: Supervisor, name: str, text: str, **kw: object) -> RelayMessage:
    message = RelayMessage(text=text, **kw)  # type: ignore[arg-type]
    await supervisor.get(name).receive_message(message)
    return message


async def test_ready_once_a_thread_is_open(supervisor: Supervisor, recorder: EventRecorder) -> None:
    session = await supervisor.create(codex_spec())
    change = recorder.matching("status.changed")[0]
    assert change.state == "ready" and change.signal == "protocol"
    assert change.reason == f"thread {session.identity.conversation_id} open"
    assert session.driver.argv[1] == "app-server"


async def test_a_turn_reports_commands_files_transcript_and_usage(
    supervisor: Supervisor, recorder: EventRecorder, tmp_path: Path
) -> None:
    await supervisor.create(codex_spec().model_copy(update={"cwd": tmp_path}))
    message = await send(supervisor, "codex", "go shell:ls write:out.txt fail-shell")
    await recorder.wait_for("turn.completed")
    delivered = recorder.matching("delivery.delivered")[0].receipt
    assert delivered.message_id == message.id and delivered.evidence.kind == "protocol_ack"
    assert delivered.evidence.detail.startswith("turn/start accepted (turn ")
    commands = recorder.matching("command.completed")
    assert [(c.command, c.exit_code, c.failed) for c in commands] == [
        ("bash -lc ls", 0, False),
        ("bash -lc false", 1, True),
    ]
    changed = recorder.matching("file.changed")[0]
    assert changed.path == str(tmp_path / "out.txt") and changed.change == "created"
    assert (tmp_path / "out.txt").read_text() == "fake\n"
    tools = [
        (e.type, e.tool) for e in recorder.matching(where=lambda e: e.type.startswith("tool."))
    ]
    assert tools == [
        ("tool.called", "shell"),
        ("tool.completed", "shell"),
        ("tool.called", "apply_patch"),
        ("tool.completed", "apply_patch"),
        ("tool.called", "shell"),
        ("tool.failed", "shell"),
    ]
    texts = [(e.role, e.text) for e in recorder.matching("transcript.chunk")]
    assert texts[0] == ("user", "go shell:ls write:out.txt fail-shell")
    assert texts[-1] == ("assistant", "echo: go shell:ls write:out.txt fail-shell")
    assert recorder.matching("usage.updated")[-1].output_tokens > 0
    await recorder.wait_for("status.changed", where=lambda e: e.state == "idle")


async def test_steer_and_immediate_join_the_running_turn(
    supervisor: Supervisor, recorder: EventRecorder, tmp_path: Path
) -> None:
    trace = tmp_path / "trace.jsonl"
    await supervisor.create(codex_spec(trace_file=str(trace)))
    await send(supervisor, "codex", "long work:2")
    await recorder.wait_for("status.changed", where=lambda e: e.state == "busy")
    steer = await send(supervisor, "codex", "steer this", mode=DeliveryMode.STEER)
    got = await recorder.wait_for(
        "delivery.delivered", where=lambda e: e.receipt.message_id == steer.id
    )
    assert got.receipt.evidence.detail.startswith("turn/steer accepted")
    waiting = await send(supervisor, "codex", "afterwards")
    await recorder.wait_for(
        "delivery.delivered", where=lambda e: e.receipt.message_id == waiting.id, timeout=15
    )
    assert recorder.receipt_statuses(waiting.id) == ["deferred", "delivered"]
    submits = [t["text"] for t in read_trace(trace) if t["event"] == "submit"]
    assert submits == ["long work:2", "steer this", "afterwards"]
    first_turn = recorder.matching("turn.completed")[0]
    assert first_turn.outcome == "completed"
    assistant = [e.text for e in recorder.matching("transcript.chunk") if e.role == "assistant"]
    assert "echo: steer this" in assistant[:2]


async def test_an_overloaded_server_is_retried(
    supervisor: Supervisor, recorder: EventRecorder
) -> None:
    await supervisor.create(codex_spec())
    message = await send(supervisor, "codex", "overloaded please")
    got = await recorder.wait_for(
        "delivery.delivered", where=lambda e: e.receipt.message_id == message.id
    )
    assert recorder.receipt_statuses(message.id) == ["accepted", "delivered"]
    assert got.receipt.evidence.kind == "protocol_ack"


@pytest.mark.parametrize(("policy", "outcome"), [("allow", "completed"), ("deny", "failed")])
async def test_command_approvals_go_to_the_policy(
    supervisor: Supervisor, recorder: EventRecorder, policy: str, outcome: str
) -> None:
    await supervisor.create(codex_spec().model_copy(update={"approvals": policy}))
    await send(supervisor, "codex", "approve-shell:make")
    resolved = await recorder.wait_for("tool.approval.resolved")
    assert (resolved.tool, resolved.decision, resolved.by) == ("shell", policy, "policy")
    requested = recorder.matching("tool.approval.requested")[0]
    assert requested.input["command"] == "bash -lc make"
    await recorder.wait_for(f"tool.{outcome}")


async def test_a_failed_turn_and_a_crash(supervisor: Supervisor, recorder: EventRecorder) -> None:
    await supervisor.create(codex_spec())
    await send(supervisor, "codex", "error")
    completed = await recorder.wait_for("turn.completed")
    assert completed.outcome == "failed" and completed.detail == "boom"
    system = [e.text for e in recorder.matching("transcript.chunk") if e.role == "system"]
    assert system == ["codex error: boom"]
    await recorder.wait_for("status.changed", where=lambda e: e.state == "idle")
    await send(supervisor, "codex", "crash")
    failed = await recorder.wait_for("session.failed")
    assert failed.exit_code == 3


async def test_resume_opens_the_given_thread(supervisor: Supervisor) -> None:
    session = await supervisor.create(codex_spec().model_copy(update={"resume": "thr-42"}))
    assert session.identity.conversation_id == "thr-42"


async def test_isolated_gets_a_codex_home_that_release_removes(
    supervisor: Supervisor, data_dir: Path
) -> None:
    session = await supervisor.create(codex_spec().model_copy(update={"isolated": True}))
    homes = list((data_dir / "sessions").glob("codex-*/codex-home"))
    assert len(homes) == 1
    config = (homes[0] / "config.toml").read_text()
    assert "check_for_update_on_startup = false" in config and "trust_level" in config
    await supervisor.release("codex")
    assert not homes[0].exists() and session.state == "exited"


async def test_a_cli_without_a_login_fails_with_what_to_do(supervisor: Supervisor) -> None:
    from agent_relay_runtime.exceptions import SessionStartFailed

    with pytest.raises(SessionStartFailed, match=r"codex .*is not logged in: set OPENAI_API_KEY"):
        await supervisor.create(codex_spec(logged_in=False))
    assert supervisor.sessions() == []

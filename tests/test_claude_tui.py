"""The Claude TUI driver (hooks side channel) against the fake TUI in its hooks mode."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent_relay_runtime.contract import DeliveryMode, RelayMessage, SessionSpec
from agent_relay_runtime.supervisor import Supervisor
from agent_relay_runtime.testing import EventRecorder

from .conftest import FAKE_TUI, read_trace, script_env

pytestmark = pytest.mark.anyio


def tui_spec(**fields: object) -> SessionSpec:
    trace = fields.pop("trace", None)
    script = {"trace_file": str(trace)} if trace else {}
    base: dict[str, object] = {
        "harness": "claude",
        "name": "ct",
        "mode": "pty",
        "command": str(FAKE_TUI),
        "env": script_env(**script),
    }
    return SessionSpec(**(base | fields))


async def send(supervisor: Supervisor, text: str, **kw: object) -> RelayMessage:
    message = RelayMessage(text=text, **kw)  # type: ignore[arg-type]
    await supervisor.get("ct").receive_message(message)
    return message


async def test_hooks_make_delivery_idle_and_tools_exact(
    supervisor: Supervisor, recorder: EventRecorder, tmp_path: Path
) -> None:
    session = await supervisor.create(tui_spec(cwd=tmp_path, isolated=True))
    assert session.capabilities.idle_signal == "hook"
    settings = session.driver.argv[session.driver.argv.index("--settings") + 1]
    hooks = json.loads(Path(settings).read_text())["hooks"]
    assert {"UserPromptSubmit", "Stop", "PreToolUse", "PermissionRequest"} <= set(hooks)
    assert hooks["Stop"][0]["hooks"][0]["url"].startswith("http://127.0.0.1:")

    message = await send(supervisor, "go write:out.txt bash:ls fail-tool")
    got = await recorder.wait_for(
        "delivery.delivered", where=lambda e: e.receipt.message_id == message.id
    )
    assert got.receipt.evidence.kind == "hook"
    await recorder.wait_for("turn.completed")
    changes = [(e.state, e.signal) for e in recorder.matching("status.changed")]
    assert changes[-2:] == [("busy", "hook"), ("idle", "hook")]
    tools = [
        (e.type, e.tool) for e in recorder.matching(where=lambda e: e.type.startswith("tool."))
    ]
    assert tools == [
        ("tool.called", "Write"),
        ("tool.completed", "Write"),
        ("tool.called", "Bash"),
        ("tool.completed", "Bash"),
        ("tool.called", "Bash"),
        ("tool.failed", "Bash"),
    ]
    assert [e.path for e in recorder.matching("file.changed")] == [str(tmp_path / "out.txt")]
    commands = [(c.command, c.failed) for c in recorder.matching("command.completed")]
    assert commands == [("ls", False), ("false", True)]
    texts = [(e.role, e.text) for e in recorder.matching("transcript.chunk")]
    assert texts == [
        ("user", "go write:out.txt bash:ls fail-tool"),
        ("assistant", "echo: go write:out.txt bash:ls fail-tool"),
    ]
    assert session.identity.conversation_id  # from the hooks' session_id


async def test_the_transcript_is_not_reported_twice(
    supervisor: Supervisor, recorder: EventRecorder, tmp_path: Path
) -> None:
    await supervisor.create(tui_spec(isolated=True))
    for text in ("one", "two"):
        mark = recorder.mark()
        await send(supervisor, text)
        await recorder.wait_for("turn.completed", after=mark)
    assistant = [e.text for e in recorder.matching("transcript.chunk") if e.role == "assistant"]
    assert assistant == ["echo: one", "echo: two"]


@pytest.mark.parametrize("policy", ["allow", "deny"])
async def test_permission_requests_go_to_the_policy(
    supervisor: Supervisor, recorder: EventRecorder, policy: str
) -> None:
    await supervisor.create(tui_spec(approvals=policy))
    await send(supervisor, "approve:make")
    resolved = await recorder.wait_for("tool.approval.resolved")
    assert (resolved.tool, resolved.decision, resolved.by) == ("Bash", policy, "policy")
    await recorder.wait_for("tool.completed" if policy == "allow" else "tool.failed")
    await recorder.wait_for("turn.completed")


async def test_a_person_answers_a_permission_request(
    supervisor: Supervisor, recorder: EventRecorder
) -> None:
    session = await supervisor.create(tui_spec())
    await send(supervisor, "approve:deploy")
    blocked = await recorder.wait_for("session.blocked")
    assert "approval requested for Bash" in blocked.reason
    [pending] = session.approvals.pending()
    session.approvals.answer(pending["approval_id"], "allow")
    await recorder.wait_for("tool.completed")
    await recorder.wait_for("turn.completed")


async def test_a_message_sent_while_busy_is_queued_with_screen_evidence(
    supervisor: Supervisor, recorder: EventRecorder, tmp_path: Path
) -> None:
    trace = tmp_path / "trace.jsonl"
    await supervisor.create(tui_spec(trace=trace))
    await send(supervisor, "long work:2")
    await recorder.wait_for("status.changed", where=lambda e: e.state == "busy")
    queued = await send(supervisor, "meanwhile", mode=DeliveryMode.IMMEDIATE)
    got = await recorder.wait_for(
        "delivery.delivered", where=lambda e: e.receipt.message_id == queued.id
    )
    assert got.receipt.evidence.kind == "screen_change"
    second_turn = await recorder.wait_for("turn.started", where=lambda e: e.turn == 2, timeout=15)
    assert second_turn
    submits = [t["text"] for t in read_trace(trace) if t["event"] == "submit"]
    assert submits == ["long work:2", "meanwhile"]

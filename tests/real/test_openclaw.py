"""OpenClaw against the real gateway (``openclaw gateway run``), offline: spawn → ready →
a message → delivered → a tool that writes a file → an exec behind an approval →
idle → a second message → release, nothing left behind."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import psutil
import pytest

from agent_relay_runtime.contract import RelayMessage, SessionSpec
from agent_relay_runtime.supervisor import Supervisor
from agent_relay_runtime.testing import EventRecorder
from agent_relay_runtime.transports.process import descendants

from .conftest import cli_path, openclaw_config

pytestmark = [pytest.mark.anyio, pytest.mark.realcli]

WRITE_INPUT = {"path": "a.txt", "content": "hello\n"}


@pytest.mark.timeout(400)  # a gateway on a new state dir takes 30-60 s to be ready
@pytest.mark.parametrize("mode", ["headless", "pty"])
async def test_a_real_openclaw_session_end_to_end(
    mode: str,
    supervisor: Supervisor,
    recorder: EventRecorder,
    model_server: Any,
    work: Path,
    tmp_path: Path,
) -> None:
    written, touched = work / "a.txt", work / "b.txt"
    model_server.add_turns(
        {"text": "Writing the file.", "tool": {"name": "write", "input": WRITE_INPUT}},
        {"text": "The file is written."},
    )
    model_server.add_turns(
        {"text": "Touching.", "tool": {"name": "exec", "input": {"command": "touch b.txt"}}},
        {"text": "Second answer."},
    )
    spec = SessionSpec(
        harness="openclaw",
        name="claw",
        mode=mode,
        cwd=work,
        isolated=True,
        approvals="allow",
        command=cli_path("openclaw"),
        env=openclaw_config(model_server.url, tmp_path / "user-openclaw.json"),
        ready_timeout=240,
    )
    session = await supervisor.create(spec)
    assert session.state == "ready" and session.identity.conversation_id
    # Its log goes to the session's directory (not /tmp/openclaw/).
    [log] = supervisor.data_dir.rglob("gateway.log")
    assert "loading configuration" in log.read_text()
    if mode == "pty":
        screen = session.screen()
        assert screen is not None and "connected | idle" in screen.text

    first = RelayMessage(text="Please write a.txt")
    await session.receive_message(first)
    got = await recorder.wait_for(
        "delivery.delivered", where=lambda e: e.receipt.message_id == first.id, timeout=60
    )
    assert got.receipt.evidence.kind == "protocol_ack"
    turn = await recorder.wait_for("turn.completed", timeout=120)
    assert turn.outcome == "completed"
    assistant = [e.text for e in recorder.matching("transcript.chunk") if e.role == "assistant"]
    assert assistant == ["Writing the file.", "The file is written."]
    called = recorder.matching("tool.called")[0]
    assert called.tool == "write"
    assert recorder.matching("tool.completed", where=lambda e: e.call_id == called.call_id)
    changed = recorder.matching("file.changed")
    assert [Path(e.path).resolve() for e in changed] == [written.resolve()]
    assert written.read_text() == "hello\n"
    # Usage comes with the run's result, the `agent` request's second answer.
    assert (await recorder.wait_for("usage.updated", timeout=30)).input_tokens > 0
    await session.wait_state(lambda s: s.is_idle, 30)

    # The exec asks (the user's config says tools.exec.mode "ask"); the policy allows it.
    second = RelayMessage(text="Now touch b.txt")
    mark = recorder.mark()
    await session.receive_message(second)
    await recorder.wait_for("turn.completed", after=mark, timeout=120)
    resolved = recorder.matching("tool.approval.resolved", after=mark)
    assert [(e.tool, e.decision) for e in resolved] == [("exec", "allow")]
    [command] = recorder.matching("command.completed", after=mark)
    assert (command.command, command.exit_code) == ("touch b.txt", 0)
    assert touched.exists()
    texts = [e.text for e in recorder.matching("transcript.chunk", after=mark)]
    assert texts[0] == "Now touch b.txt" and texts[-1] == "Second answer."

    if mode == "pty":  # the TUI shows the runs the relay's messages started
        with anyio.fail_after(20):
            while "Nowtouchb.txt" not in "".join(session.screen().text.split()):  # type: ignore[union-attr]
                await session.driver._drawn.wait()  # type: ignore[attr-defined]
        # A person types in the TUI: a turn like any other, its prompt from the history.
        model_server.add_turns({"text": "Third answer."})
        mark = recorder.mark()
        await session.send_keys(b"typed by hand")
        await session.send_keys(b"\r")
        await recorder.wait_for("turn.completed", after=mark, timeout=120)
        texts = [(e.role, e.text) for e in recorder.matching("transcript.chunk", after=mark)]
        assert sorted(texts) == [("assistant", "Third answer."), ("user", "typed by hand")]
    roots = [session.identity.pid or 0]
    if mode == "pty":
        roots.append(session.driver._tui.handle.pid)  # type: ignore[attr-defined]
    tree = roots + [p.pid for root in roots for p in descendants(root)]
    info = await supervisor.release("claw")
    assert not info.survivors
    for each in tree:
        assert not psutil.pid_exists(each) or psutil.Process(each).status() == "zombie"

"""Each harness's headless mode against its real CLI: spawn → ready → message →
delivered → transcript → a tool that writes a file → idle → second message → release."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psutil
import pytest

from agent_relay_runtime.contract import RelayMessage, SessionSpec
from agent_relay_runtime.supervisor import Supervisor
from agent_relay_runtime.testing import EventRecorder
from agent_relay_runtime.transports.process import descendants

from .conftest import claude_env, cli_path, codex_args, opencode_env

pytestmark = [pytest.mark.anyio, pytest.mark.realcli]


def write_turn(harness: str, path: Path) -> dict[str, Any]:
    """A scripted model turn that writes ``path`` with the harness's own tool."""
    if harness == "claude":
        tool = {"name": "Write", "input": {"file_path": str(path), "content": "hello\n"}}
    elif harness == "codex":
        patch = f"*** Begin Patch\n*** Add File: {path.name}\n+hello\n*** End Patch\n"
        tool = {"name": "apply_patch", "input": patch}
    else:
        tool = {"name": "write", "input": {"filePath": str(path), "content": "hello\n"}}
    return {"text": "Writing the file.", "tool": tool}


def spec_for(harness: str, url: str, work: Path) -> SessionSpec:
    common: dict[str, Any] = {"harness": harness, "name": harness, "cwd": work, "isolated": True}
    if harness == "claude":
        return SessionSpec(**common, command=cli_path("claude"), env=claude_env(url),
                           approvals="allow")  # fmt: skip
    if harness == "codex":
        return SessionSpec(**common, command=cli_path("codex"), args=codex_args(url),
                           env={"SCRIPTED_API_KEY": "sk-test"}, approvals="allow")  # fmt: skip
    return SessionSpec(**common, command=cli_path("opencode"), env=opencode_env(url))


async def delivered(recorder: EventRecorder, message: RelayMessage) -> Any:
    return await recorder.wait_for(
        "delivery.delivered", where=lambda e: e.receipt.message_id == message.id, timeout=90
    )


@pytest.mark.parametrize("harness", ["claude", "codex", "opencode"])
async def test_a_real_headless_session_end_to_end(
    harness: str, supervisor: Supervisor, recorder: EventRecorder, model_server: Any, work: Path
) -> None:
    target = work / "a.txt"
    model_server.add_turns(write_turn(harness, target), {"text": "The file is written."})
    model_server.add_turns({"text": "Second answer."})
    session = await supervisor.create(spec_for(harness, model_server.url, work))
    assert session.state == "ready" and session.identity.conversation_id

    first = RelayMessage(text="Please write a.txt")
    await session.receive_message(first)
    got = await delivered(recorder, first)
    assert got.receipt.evidence.kind == "protocol_ack"
    turn = await recorder.wait_for("turn.completed", timeout=90)
    assert turn.outcome == "completed"
    assistant = [e.text for e in recorder.matching("transcript.chunk") if e.role == "assistant"]
    assert "Writing the file." in assistant and "The file is written." in assistant
    called = recorder.matching("tool.called")[0]
    assert recorder.matching("tool.completed", where=lambda e: e.call_id == called.call_id)
    changed = recorder.matching("file.changed")
    assert [Path(e.path).resolve() for e in changed] == [target.resolve()]
    assert target.read_text() == "hello\n"
    await session.wait_state(lambda s: s.is_idle, 30)

    second = RelayMessage(text="And now?")
    mark = recorder.mark()
    await session.receive_message(second)
    await delivered(recorder, second)
    await recorder.wait_for("turn.completed", after=mark, timeout=90)
    assistant = [e.text for e in recorder.matching("transcript.chunk", after=mark)]
    assert "Second answer." in assistant
    assert recorder.matching("usage.updated")[-1].input_tokens > 0

    tree = [session.identity.pid, *(p.pid for p in descendants(session.identity.pid or 0))]
    info = await supervisor.release(harness)
    assert not info.survivors
    for pid in tree:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"

"""PTY modes against the real CLIs: the TUI on a terminal, with each harness's side
channel making delivery, idle and tool events exact."""

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
from .test_headless import write_turn

pytestmark = [pytest.mark.anyio, pytest.mark.realcli]


def pty_spec(harness: str, url: str, work: Path) -> SessionSpec:
    common: dict[str, Any] = {
        "harness": harness,
        "name": f"{harness}-tui",
        "mode": "pty",
        "cwd": work,
        "isolated": True,
        "approvals": "allow",
    }
    if harness == "claude":
        return SessionSpec(**common, command=cli_path("claude"), env=claude_env(url))
    if harness == "codex":
        return SessionSpec(**common, command=cli_path("codex"), args=codex_args(url),
                           env={"SCRIPTED_API_KEY": "sk-test"})  # fmt: skip
    return SessionSpec(**common, command=cli_path("opencode"), env=opencode_env(url))


EVIDENCE = {"claude": "hook", "codex": "transcript", "opencode": "protocol_ack"}
IDLE_SIGNAL = {"claude": "hook", "codex": "transcript", "opencode": "protocol"}


@pytest.mark.parametrize("harness", ["claude", "codex", "opencode"])
async def test_a_real_tui_session_end_to_end(
    harness: str, supervisor: Supervisor, recorder: EventRecorder, model_server: Any, work: Path
) -> None:
    target = work / "a.txt"
    model_server.add_turns(write_turn(harness, target), {"text": "The file is written."})
    model_server.add_turns({"text": "Second answer."})
    spec = pty_spec(harness, model_server.url, work)
    session = await supervisor.create(spec)
    assert session.state == "ready"
    assert session.capabilities.idle_signal == IDLE_SIGNAL[harness]

    first = RelayMessage(text="Please write a.txt")
    await session.receive_message(first)
    got = await recorder.wait_for(
        "delivery.delivered", where=lambda e: e.receipt.message_id == first.id, timeout=90
    )
    assert got.receipt.evidence.kind == EVIDENCE[harness]
    await recorder.wait_for("turn.completed", timeout=90)
    assistant = [e.text for e in recorder.matching("transcript.chunk") if e.role == "assistant"]
    assert assistant == ["Writing the file.", "The file is written."]
    changed = recorder.matching("file.changed")
    assert [Path(e.path).resolve() for e in changed] == [target.resolve()]
    assert target.read_text() == "hello\n"
    assert [e.state for e in recorder.matching("status.changed")][-1] == "idle"

    mark = recorder.mark()
    second = RelayMessage(text="And now?")
    await session.receive_message(second)
    await recorder.wait_for("turn.completed", after=mark, timeout=90)
    texts = [e.text for e in recorder.matching("transcript.chunk", after=mark)]
    assert texts[0] == "And now?" and texts[-1] == "Second answer."

    tree = [session.identity.pid, *(p.pid for p in descendants(session.identity.pid or 0))]
    info = await supervisor.release(spec.name or "")
    assert not info.survivors
    for pid in tree:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"


@pytest.mark.parametrize(
    ("harness", "advice"),
    [("claude", "set ANTHROPIC_API_KEY"), ("codex", "set OPENAI_API_KEY")],
)
async def test_a_tui_without_a_login_fails_at_once_saying_what_to_do(
    harness: str,
    advice: str,
    supervisor: Supervisor,
    work: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from agent_relay_runtime.exceptions import SessionStartFailed

    for name in ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    spec = SessionSpec(
        harness=harness, name="nologin", mode="pty", cwd=work, isolated=True,
        command=cli_path(harness), ready_timeout=30,
        env={"CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"} if harness == "claude" else {},
    )  # fmt: skip
    with pytest.raises(SessionStartFailed, match=rf"{harness} is not logged in.*{advice}"):
        await supervisor.create(spec)
    assert supervisor.sessions() == []

"""OpenClaw in a PTY: the (fake) TUI in front of the session's (fake) gateway."""

from __future__ import annotations

from pathlib import Path

import psutil
import pytest

from agent_relay_runtime.contract import RelayMessage, SessionMode, SessionSpec
from agent_relay_runtime.exceptions import ConfigError
from agent_relay_runtime.session.core import Session
from agent_relay_runtime.supervisor import Supervisor
from agent_relay_runtime.testing import EventRecorder
from agent_relay_runtime.transports.process import descendants

from .conftest import openclaw_spec

pytestmark = pytest.mark.anyio


def tui_spec(tmp_path: Path) -> SessionSpec:
    return openclaw_spec().model_copy(update={"mode": SessionMode.PTY, "cwd": tmp_path})


def session_processes(session: Session) -> list[int]:
    tui = session.driver._tui.handle  # type: ignore[attr-defined]
    roots = [session.identity.pid or 0, tui.pid]
    return roots + [p.pid for root in roots for p in descendants(root)]


async def test_the_tui_shows_what_the_gateway_runs_and_events_stay_exact(
    supervisor: Supervisor, recorder: EventRecorder, tmp_path: Path
) -> None:
    session = await supervisor.create(tui_spec(tmp_path))
    assert session.state == "ready" and session.capabilities.interactive
    assert "gateway connected | idle" in session.screen().text  # type: ignore[union-attr]
    # The TUI found the gateway through the session's config: no token on its command line.
    assert session.driver.tui_argv[1:] == ["tui", "--session", session.identity.conversation_id]  # type: ignore[attr-defined]

    message = RelayMessage(text="hello write:a.txt")
    await session.receive_message(message)
    delivered = await recorder.wait_for("delivery.delivered")
    assert delivered.receipt.evidence.kind == "protocol_ack"
    await recorder.wait_for("turn.completed")
    assert [e.path for e in recorder.matching("file.changed")] == [str(tmp_path / "a.txt")]
    await session.wait_state(lambda s: s.is_idle, 10)
    # The refresh after the run draws the message and the reply.
    while "echo: hello write:a.txt" not in session.screen().text:  # type: ignore[union-attr]
        await session.driver._drawn.wait()  # type: ignore[attr-defined]
    assert "hello write:a.txt" in session.logs().decode()


async def test_a_person_typing_in_the_tui_is_reported_as_a_turn(
    supervisor: Supervisor, recorder: EventRecorder, tmp_path: Path
) -> None:
    session = await supervisor.create(tui_spec(tmp_path))
    await session.send_keys(b"typed by hand\r")
    turn = await recorder.wait_for("turn.completed")
    assert turn.outcome == "completed"
    # The prompt comes from the session's history (the run's events do not carry it),
    # which has it only at the run's end: still reported before turn.completed.
    user = recorder.matching("transcript.chunk", where=lambda e: e.role == "user")
    assert [e.text for e in user] == ["typed by hand"]
    texts = [e.text for e in recorder.matching("transcript.chunk") if e.role == "assistant"]
    assert texts == ["echo: typed by hand"]


async def test_release_ends_the_tui_and_the_gateway(supervisor: Supervisor, tmp_path: Path) -> None:
    session = await supervisor.create(tui_spec(tmp_path))
    tree = session_processes(session)
    info = await supervisor.release(session.name)
    assert not info.survivors
    for pid in tree:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"


async def test_quitting_the_tui_ends_the_session(
    supervisor: Supervisor, recorder: EventRecorder, tmp_path: Path
) -> None:
    session = await supervisor.create(tui_spec(tmp_path))
    tree = session_processes(session)
    await session.send_keys(b"\x03")
    await session.wait_state(lambda s: s.is_final, 20)
    assert session.state == "exited"
    for pid in tree:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"


async def test_a_tui_on_an_attached_gateway_is_refused(supervisor: Supervisor) -> None:
    spec = openclaw_spec().model_copy(
        update={"mode": SessionMode.PTY, "endpoint": "ws://127.0.0.1:1"}
    )
    with pytest.raises(ConfigError, match="--mode pty runs the TUI on a gateway of its own"):
        await supervisor.create(spec)

"""The supervisor: bad input gets a precise error and loses nothing; hygiene over many
cycles; attach by pid."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import anyio
import psutil
import pytest

from agent_relay_runtime.contract import RelayMessage, SessionSpec
from agent_relay_runtime.exceptions import (
    ConfigError,
    CwdNotFound,
    ExecutableNotFound,
    InvalidRequest,
    NameInUse,
    ProfileError,
    SessionClosed,
    SessionNotFound,
    UnknownHarness,
)
from agent_relay_runtime.profiles import ProfileRegistry
from agent_relay_runtime.supervisor import Supervisor
from agent_relay_runtime.testing import EventRecorder

from .conftest import FAKE_TUI, claude_spec, tui_spec

pytestmark = pytest.mark.anyio


async def test_bad_input_is_refused_and_the_other_sessions_keep_serving(
    supervisor: Supervisor, profiles: ProfileRegistry, recorder: EventRecorder, tmp_path: Path
) -> None:
    survivor = await supervisor.create(tui_spec("survivor"))
    (profiles.dirs[-1] / "typo.toml").write_text("[idle]\nquite = 1\n")
    cases = [
        (tui_spec("survivor"), NameInUse, "a session named 'survivor' already exists"),
        (SessionSpec(harness="nope"), UnknownHarness, "unknown harness 'nope'"),
        (SessionSpec(harness="generic"), ConfigError, "needs an executable"),
        (
            SessionSpec(harness="generic", command="/no/such/agent"),
            ExecutableNotFound,
            "executable not found: /no/such/agent",
        ),
        (
            SessionSpec(harness="generic", command="no-such-agent-xyz"),
            ExecutableNotFound,
            "executable not found on PATH: no-such-agent-xyz",
        ),
        (
            tui_spec("x").model_copy(update={"cwd": tmp_path / "missing"}),
            CwdNotFound,
            "cwd not found",
        ),
        (SessionSpec(harness="typo"), ProfileError, "typo.toml: idle.quite: unknown key"),
        (tui_spec("m").model_copy(update={"model": "x"}), ConfigError, "does not take a model"),
        (
            claude_spec("c").model_copy(update={"mode": "pty", "command": "/no/claude"}),
            ExecutableNotFound,
            "/no/claude",
        ),
    ]
    for spec, error, text in cases:
        with pytest.raises(error) as info:
            await supervisor.create(spec)
        assert text in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(ValueError, match="invalid session name"):
        SessionSpec(harness="generic", name="bad name!")
    with pytest.raises(SessionNotFound, match="no session named 'ghost'"):
        await supervisor.deliver("ghost", RelayMessage(text="hi"), _ctx())
    # Nothing half-made is left, and the survivor still works.
    assert [s.name for s in supervisor.sessions()] == ["survivor"]
    message = RelayMessage(text="still here?")
    await survivor.receive_message(message)
    await recorder.wait_for(
        "delivery.delivered", where=lambda e: e.receipt.message_id == message.id
    )


async def test_messages_to_a_released_session_fail_clearly(supervisor: Supervisor) -> None:
    await supervisor.create(claude_spec())
    await supervisor.release("claude", "finished")
    with pytest.raises(SessionNotFound, match=r"session 'claude' has ended \(released: finished\)"):
        await supervisor.deliver("claude", RelayMessage(text="hi"), _ctx())
    await supervisor.create(claude_spec())  # the name is free again


async def test_a_mode_the_session_cannot_take_is_refused(supervisor: Supervisor) -> None:
    spec = SessionSpec(harness="generic", name="g", command=str(FAKE_TUI), idle_after=0.2)
    session = await supervisor.create(spec)
    with pytest.raises(SessionClosed, match="does not take 'steer' messages"):
        await session.receive_message(RelayMessage(text="x", mode="steer"))  # type: ignore[arg-type]


async def test_attach_by_pid_observes_and_releases_a_process_tree(supervisor: Supervisor) -> None:
    code = (
        "import subprocess, sys, time\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
        "print('up', flush=True); time.sleep(600)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], start_new_session=True, stdout=subprocess.PIPE
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"up\n"
        child = psutil.Process(proc.pid).children()[0]
        session = await supervisor.attach("adopted", proc.pid)
        assert session.state == "ready" and session.identity.mode == "attached"
        with pytest.raises(SessionClosed, match="takes: none"):
            await session.receive_message(RelayMessage(text="hi"))
        info = await supervisor.release("adopted")
        assert info.signals_sent[0] == "SIGTERM" and not info.survivors
        assert child.pid in info.swept
        assert proc.wait(timeout=5) == -15
        assert not psutil.pid_exists(child.pid) or child.status() == psutil.STATUS_ZOMBIE
    finally:
        proc.kill()
        proc.wait()


async def test_attach_refuses_dangerous_pids(supervisor: Supervisor) -> None:
    for pid, why in ((1, "init"), (os.getpid(), "daemon itself"), (os.getppid(), "ancestors")):
        with pytest.raises(InvalidRequest, match=why):
            await supervisor.attach(f"p{pid}", pid)
    with pytest.raises(InvalidRequest, match="no such process"):
        await supervisor.attach("gone", 2**22 - 3)


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _zombie_children() -> list[int]:
    return [
        c.pid
        for c in psutil.Process().children(recursive=True)
        if c.status() == psutil.STATUS_ZOMBIE
    ]


@pytest.mark.slow
async def test_a_hundred_create_release_cycles_leave_no_zombie_and_no_fd(
    supervisor: Supervisor,
) -> None:
    async def cycle(worker: int, rounds: int, spec_of: object) -> None:
        for n in range(rounds):
            spec = spec_of(f"w{worker}-{n}")  # type: ignore[operator]
            await supervisor.create(spec)
            info = await supervisor.release(spec.name)
            assert not info.survivors

    # Warm up once so that lazily opened fds (the thread pool, pidfd probes) exist.
    await cycle(99, 1, tui_spec)
    await cycle(98, 1, claude_spec)
    fds = _open_fds()
    async with anyio.create_task_group() as tg:
        for worker in range(10):
            tg.start_soon(cycle, worker, 5, tui_spec)
            tg.start_soon(cycle, worker + 10, 5, claude_spec)
    assert supervisor.sessions() == []
    assert _zombie_children() == []
    assert _open_fds() <= fds


def _ctx():  # type: ignore[no-untyped-def]
    from agent_relay_runtime.contract import MessageContext

    return MessageContext()


async def test_a_failed_start_on_an_untested_cli_version_says_so(
    supervisor: Supervisor, tmp_path: Path
) -> None:
    from agent_relay_runtime.exceptions import SessionStartFailed

    old = tmp_path / "claude"
    old.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = "--version" ]; then echo "1.0.3 (Claude Code)"; exit 0; fi\n'
        'echo "error: something broke at start" >&2\nexit 4\n'
    )
    old.chmod(0o755)
    with pytest.raises(SessionStartFailed) as info:
        await supervisor.create(SessionSpec(harness="claude", name="old", command=str(old)))
    message = str(info.value)
    assert "exit code 4" in message and "something broke at start" in message
    assert "note: claude 1.0.3 is not a version the runtime was tested on" in message

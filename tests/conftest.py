"""Shared fixtures: fake agent paths, an in-process supervisor, and a leak check.

Every test is checked for process hygiene: a live process carrying a session marker
(AGENT_RELAY_SESSION) that was not there before the test fails it.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from agent_relay_runtime.contract import SessionSpec
from agent_relay_runtime.profiles import ProfileRegistry, builtin_profile_dir
from agent_relay_runtime.supervisor import Supervisor
from agent_relay_runtime.testing import EventRecorder
from agent_relay_runtime.transports.process import SESSION_MARKER, alive

ROOT = Path(__file__).resolve().parents[1]
FAKES = ROOT / "fixtures" / "fake_agents"
FAKE_TUI = FAKES / "fake_tui.py"
FAKE_CLAUDE = FAKES / "fake_claude_stream.py"
FAKE_CODEX = FAKES / "fake_codex.py"
FAKE_OPENCODE = FAKES / "fake_opencode.py"
FAKE_OPENCLAW = FAKES / "fake_openclaw.py"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# Every process this test run starts inherits this, so that the leak check below never
# counts (or kills) the sessions of another test run on the same machine.
RUN_MARKER = "AGENT_RELAY_TEST_RUN"
os.environ[RUN_MARKER] = uuid.uuid4().hex


def marked_pids() -> set[int]:
    found = set()
    for proc in psutil.process_iter():
        try:
            env = proc.environ()
            ours = env.get(RUN_MARKER) == os.environ[RUN_MARKER]
            if SESSION_MARKER in env and ours and alive(proc):
                found.add(proc.pid)
        except psutil.Error:
            continue
    return found


@pytest.fixture(autouse=True)
def no_leaked_processes() -> Iterator[None]:
    before = marked_pids()
    yield
    leaked = marked_pids() - before
    for pid in leaked:  # do not let one failure poison the following tests
        with contextlib.suppress(psutil.Error):
            psutil.Process(pid).kill()
    assert not leaked, f"processes left behind: {sorted(leaked)}"


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path


@pytest.fixture
def profiles(tmp_path: Path) -> ProfileRegistry:
    user = tmp_path / "profiles"
    user.mkdir()
    return ProfileRegistry([builtin_profile_dir(), user])


@pytest.fixture
async def supervisor(data_dir: Path, profiles: ProfileRegistry) -> AsyncIterator[Supervisor]:
    async with Supervisor(data_dir=data_dir, profiles=profiles) as sup:
        yield sup


@pytest.fixture
def recorder(supervisor: Supervisor) -> EventRecorder:
    rec = EventRecorder()
    supervisor.subscribe(rec)
    return rec


def script_env(**script: Any) -> dict[str, str]:
    """The environment that scripts a fake agent."""
    return {"FAKE_AGENT_SCRIPT": json.dumps(script)}


def tui_spec(name: str = "tui", **script: Any) -> SessionSpec:
    return SessionSpec(harness="fake-tui", name=name, env=script_env(**script))


def claude_spec(name: str = "claude", **script: Any) -> SessionSpec:
    return SessionSpec(
        harness="claude", name=name, command=str(FAKE_CLAUDE), env=script_env(**script)
    )


def codex_spec(name: str = "codex", **script: Any) -> SessionSpec:
    return SessionSpec(
        harness="codex", name=name, command=str(FAKE_CODEX), env=script_env(**script)
    )


def opencode_spec(name: str = "opencode", **script: Any) -> SessionSpec:
    return SessionSpec(
        harness="opencode", name=name, command=str(FAKE_OPENCODE), env=script_env(**script)
    )


def openclaw_spec(name: str = "openclaw", **script: Any) -> SessionSpec:
    """The fake gateway, reading no user config (the path names no file)."""
    env = {**script_env(**script), "OPENCLAW_CONFIG_PATH": "/nonexistent/openclaw.json"}
    return SessionSpec(harness="openclaw", name=name, command=str(FAKE_OPENCLAW), env=env)


def read_trace(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


PYTHON = sys.executable
os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")

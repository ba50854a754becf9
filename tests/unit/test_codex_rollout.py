"""The Codex TUI driver's reading of a rollout file (a real capture, trimmed)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from agent_relay_runtime.contract import SessionState, SignalSource
from agent_relay_runtime.drivers.codex_tui import CodexTuiDriver
from agent_relay_runtime.profiles import ProfileRegistry, builtin_profile_dir
from agent_relay_runtime.session.core import Session
from agent_relay_runtime.testing import EventRecorder

CAPTURE = Path(__file__).resolve().parents[1] / "data" / "codex-rollout.jsonl"


def test_a_rollout_becomes_exact_session_events(tmp_path: Path) -> None:
    meta = json.loads(CAPTURE.read_text().splitlines()[0])["payload"]
    cwd = Path(meta["cwd"])
    home = tmp_path / "codex-home"
    day = home / "sessions" / "2026" / "11" / "21"
    day.mkdir(parents=True)
    shutil.copy(CAPTURE, day / f"rollout-2026-11-21T16-19-51-{meta['id']}.jsonl")
    profile = ProfileRegistry([builtin_profile_dir()]).load("codex")
    driver = CodexTuiDriver(
        profile=profile, argv=["codex"], cwd=cwd, env={}, codex_home=home, thread_id=meta["id"]
    )
    session = Session(name="cx", driver=driver)
    recorder = EventRecorder()
    session.on_event(recorder)
    driver._port = session
    session.set_state(SessionState.READY, "test", SignalSource.SCREEN)

    driver._read_rollout()

    assert session.identity.conversation_id == meta["id"]
    assert recorder.states("cx") == ["ready", "busy", "idle", "busy", "idle"]
    assert {e.signal for e in recorder.matching("status.changed")[1:]} == {"transcript"}
    texts = [(e.role, e.text) for e in recorder.matching("transcript.chunk")]
    assert texts[0] == ("user", "please write") and texts[-1] == ("assistant", "second answer")
    [changed] = recorder.matching("file.changed")
    assert changed.path == str(cwd / "a.txt") and changed.change == "created"
    [command] = recorder.matching("command.completed")
    assert command.command.endswith("'echo ran'") and command.exit_code == 0
    assert [e.outcome for e in recorder.matching("turn.completed")] == ["completed", "completed"]
    assert recorder.matching("usage.updated")[-1].input_tokens > 0
    assert driver._user_messages == 2  # the delivery evidence counts user messages
    driver._read_rollout()
    assert len(recorder.matching("turn.completed")) == 2  # nothing is read twice

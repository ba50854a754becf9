"""PTY sessions of the fake TUI agent, end to end through the supervisor."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import psutil
import pytest
import structlog.testing

from agent_relay_runtime.contract import DeliveryMode, RelayMessage, SessionSpec
from agent_relay_runtime.exceptions import SessionStartFailed
from agent_relay_runtime.profiles import ProfileRegistry
from agent_relay_runtime.sanitize import sanitize_for_terminal
from agent_relay_runtime.supervisor import Supervisor
from agent_relay_runtime.testing import EventRecorder
from agent_relay_runtime.transports.process import EscalationPolicy

from .conftest import FAKE_TUI, read_trace, script_env, tui_spec

pytestmark = pytest.mark.anyio

FAST_RELEASE = EscalationPolicy(graceful_timeout=1.0, term_timeout=1.0, kill_timeout=2.0)


def user_profile(profiles: ProfileRegistry, name: str, text: str) -> None:
    (profiles.dirs[-1] / f"{name}.toml").write_text(text)


async def send(supervisor: Supervisor, name: str, text: str, **kw: object) -> RelayMessage:
    message = RelayMessage(text=text, **kw)  # type: ignore[arg-type]
    await supervisor.get(name).receive_message(message)
    return message


async def test_readiness(supervisor: Supervisor, recorder: EventRecorder) -> None:
    session = await supervisor.create(tui_spec())
    assert session.state == "ready"
    assert [e.type for e in recorder.events][:3] == [
        "session.started",
        "status.changed",
        "session.ready",
    ]
    assert "? for shortcuts" in session.screen().text  # type: ignore[union-attr]
    assert session.identity.pid and session.capabilities.interactive


async def test_idle_is_detected_after_a_scripted_busy_period(
    supervisor: Supervisor, recorder: EventRecorder, tmp_path: Path
) -> None:
    trace = tmp_path / "trace.jsonl"
    spec = tui_spec(trace_file=str(trace))
    await supervisor.create(spec)
    mark = recorder.mark()
    await send(supervisor, "tui", "think work:0.6")
    busy = await recorder.wait_for("status.changed", where=lambda e: e.state == "busy", after=mark)
    idle = await recorder.wait_for("status.changed", where=lambda e: e.state == "idle", after=mark)
    turn_end = next(t for t in read_trace(trace) if t["event"] == "turn_end")
    quiet = supervisor.harnesses.profiles.load("fake-tui").idle.quiet
    # Idle comes after the agent's own end of turn plus the quiet window, never before.
    assert idle.at.timestamp() >= turn_end["t"] + quiet - 0.01
    assert (idle.at - busy.at).total_seconds() >= 0.6


async def test_receipts_accepted_then_delivered_and_deferred_then_delivered(
    supervisor: Supervisor, recorder: EventRecorder
) -> None:
    await supervisor.create(tui_spec())
    first = await send(supervisor, "tui", "first work:0.5")
    await recorder.wait_for("delivery.delivered", where=lambda e: e.receipt.message_id == first.id)
    second = await send(supervisor, "tui", "second")
    await recorder.wait_for(
        "delivery.delivered", where=lambda e: e.receipt.message_id == second.id, timeout=15
    )
    assert recorder.receipt_statuses(first.id) == ["accepted", "delivered"]
    assert recorder.receipt_statuses(second.id) == ["deferred", "delivered"]
    delivered = recorder.matching("delivery.delivered")[0].receipt
    assert delivered.evidence.kind == "screen_busy"


async def test_steer_interrupts_and_goes_before_waiting_messages(
    supervisor: Supervisor, recorder: EventRecorder, tmp_path: Path
) -> None:
    trace = tmp_path / "trace.jsonl"
    await supervisor.create(tui_spec(trace_file=str(trace)))
    long = await send(supervisor, "tui", "long work:30")
    await recorder.wait_for("delivery.delivered", where=lambda e: e.receipt.message_id == long.id)
    waiting = await send(supervisor, "tui", "waiting")
    steer = await send(supervisor, "tui", "steered", mode=DeliveryMode.STEER)
    await recorder.wait_for(
        "delivery.delivered", where=lambda e: e.receipt.message_id == waiting.id, timeout=20
    )
    submits = [t["text"] for t in read_trace(trace) if t["event"] == "submit"]
    assert submits == ["long work:30", "steered", "waiting"]
    ends = [t["status"] for t in read_trace(trace) if t["event"] == "turn_end"]
    assert ends[0] == "interrupted"
    assert recorder.receipt_statuses(steer.id) == ["accepted", "delivered"]
    assert recorder.receipt_statuses(waiting.id) == ["deferred", "delivered"]


async def test_immediate_goes_in_while_busy(
    supervisor: Supervisor, recorder: EventRecorder, tmp_path: Path
) -> None:
    trace = tmp_path / "trace.jsonl"
    await supervisor.create(tui_spec(trace_file=str(trace)))
    busy = await send(supervisor, "tui", "busy work:1.5")
    await recorder.wait_for("delivery.delivered", where=lambda e: e.receipt.message_id == busy.id)
    now = await send(supervisor, "tui", "right now", mode=DeliveryMode.IMMEDIATE)
    got = await recorder.wait_for(
        "delivery.delivered", where=lambda e: e.receipt.message_id == now.id
    )
    assert got.receipt.evidence.kind == "screen_change"  # the agent was busy
    events = [t["event"] for t in read_trace(trace)]
    submitted = [t["text"] for t in read_trace(trace) if t["event"] == "submit"]
    assert submitted == ["busy work:1.5", "right now"]
    # It went in while the first turn was still running.
    assert "turn_end" not in events[: events.index("submit", events.index("submit") + 1)]


async def test_escape_sequences_in_a_message_arrive_as_inert_text(
    supervisor: Supervisor, recorder: EventRecorder, tmp_path: Path
) -> None:
    trace = tmp_path / "trace.jsonl"
    session = await supervisor.create(tui_spec(trace_file=str(trace)))
    evil = "start \x1b[201~ now typed? \x03 \x04 \x1b[2J\x1bc end"
    message = await send(supervisor, "tui", evil)
    await recorder.wait_for(
        "delivery.delivered", where=lambda e: e.receipt.message_id == message.id
    )
    await recorder.wait_for("status.changed", where=lambda e: e.state == "idle")
    submits = [t["text"] for t in read_trace(trace) if t["event"] == "submit"]
    assert submits == [sanitize_for_terminal(evil)]
    assert "␛[201~" in submits[0] and "␃" in submits[0]
    assert not [t for t in read_trace(trace) if t["event"] in ("interrupt", "exit")]
    assert session.state == "idle"


async def test_a_mebibyte_of_output_arrives_without_loss(
    supervisor: Supervisor, recorder: EventRecorder
) -> None:
    session = await supervisor.create(tui_spec())
    size = 1 << 20
    await send(supervisor, "tui", f"print:{size}")
    await recorder.wait_for("status.changed", where=lambda e: e.state == "idle", timeout=30)
    raw = session.logs().replace(b"\r\n", b"\n")
    done = re.search(rb"print-done (\d+) ([0-9a-f]{64})\n", raw)
    assert done is not None and int(done.group(1)) == size
    start = raw.index(b"00000000 ")
    body = raw[start : start + size]
    assert hashlib.sha256(body).hexdigest() == done.group(2).decode()
    assert body.endswith(b"\n") and raw[start + size :].startswith(b"print-done")


async def test_a_crash_mid_turn_fails_the_session_and_queued_messages(
    supervisor: Supervisor, recorder: EventRecorder
) -> None:
    await supervisor.create(tui_spec())
    fatal = await send(supervisor, "tui", "work:0.5 crash")
    await recorder.wait_for("delivery.delivered", where=lambda e: e.receipt.message_id == fatal.id)
    queued = await send(supervisor, "tui", "never delivered")
    failed = await recorder.wait_for("session.failed")
    assert failed.exit_code == 3 and "exit code 3" in failed.reason
    receipt = await recorder.wait_for(
        "delivery.failed", where=lambda e: e.receipt.message_id == queued.id
    )
    assert receipt.receipt.retryable  # it was never typed
    assert recorder.receipt_statuses(queued.id) == ["deferred", "failed"]
    with pytest.raises(Exception, match="has ended"):
        supervisor.get("tui")


async def test_a_hung_agent_is_killed_on_release(
    supervisor: Supervisor, recorder: EventRecorder
) -> None:
    session = await supervisor.create(tui_spec())
    session.options.escalation = FAST_RELEASE
    await send(supervisor, "tui", "ignore-sigterm hang")
    await recorder.wait_for("status.changed", where=lambda e: e.state == "busy")
    info = await supervisor.release("tui")
    assert info.signals_sent == ["SIGTERM", "SIGKILL"]
    assert info.signal == 9 and not info.graceful and not info.survivors
    assert session.state == "exited"


async def test_a_child_that_escapes_the_group_is_swept(
    supervisor: Supervisor, recorder: EventRecorder, tmp_path: Path
) -> None:
    trace = tmp_path / "trace.jsonl"
    await supervisor.create(tui_spec(trace_file=str(trace)))
    await send(supervisor, "tui", "spawn-escapee")
    await recorder.wait_for("status.changed", where=lambda e: e.state == "idle")
    escapee = next(t["pid"] for t in read_trace(trace) if t["event"] == "escapee")
    assert psutil.Process(escapee).status() != psutil.STATUS_ZOMBIE  # it runs
    info = await supervisor.release("tui")
    assert escapee in info.swept and not info.survivors
    assert not psutil.pid_exists(escapee) or psutil.Process(escapee).status() == "zombie"


async def test_a_known_dialog_is_answered(supervisor: Supervisor) -> None:
    session = await supervisor.create(tui_spec(dialog_on_start=True))
    assert session.state == "ready"
    assert "Do you trust" not in session.screen().text  # type: ignore[union-attr]


async def test_an_unknown_dialog_blocks_instead_of_ready(
    supervisor: Supervisor, profiles: ProfileRegistry, recorder: EventRecorder
) -> None:
    user_profile(
        profiles,
        "fake-guarded",
        f'[command]\nexecutable = "{FAKE_TUI}"\n'
        "[screen]\nbottom_lines = 1\n"
        "[ready]\nmarkers = ['^\\\\? for shortcuts$']\n"
        "[idle]\nmarkers = ['^\\\\? for shortcuts$']\nquiet = 0.15\n"
        "[[blocked]]\npattern = 'Do you trust'\nreason = 'folder trust needs a person'\n",
    )
    spec = SessionSpec(harness="fake-guarded", name="g", env=script_env(dialog_on_start=True))
    session = await supervisor.create(spec, wait=False)
    blocked = await recorder.wait_for("session.blocked")
    assert blocked.reason == "folder trust needs a person"
    assert "Do you trust the files in this folder?" in blocked.screen
    assert session.state == "blocked"
    await supervisor.release("g")


async def test_an_unrecognised_screen_is_never_idle(
    supervisor: Supervisor, profiles: ProfileRegistry
) -> None:
    user_profile(profiles, "fake-tui", "[ready]\nmarkers = ['NEVER SHOWN']\n")
    spec = tui_spec().model_copy(update={"ready_timeout": 1.5})
    with pytest.raises(SessionStartFailed, match=r"not ready after 1\.5s; screen: .*shortcuts"):
        await supervisor.create(spec)
    assert supervisor.sessions() == []


async def test_a_stalled_turn_becomes_blocked(
    supervisor: Supervisor, profiles: ProfileRegistry, recorder: EventRecorder
) -> None:
    user_profile(profiles, "fake-tui", "[busy]\nstall_timeout = 1.0\n")
    await supervisor.create(tui_spec())
    await send(supervisor, "tui", "hang")
    blocked = await recorder.wait_for("session.blocked", timeout=10)
    assert blocked.reason == "no activity for 1s while busy"


async def test_the_generic_profile_uses_quiet_windows(
    supervisor: Supervisor, recorder: EventRecorder
) -> None:
    spec = SessionSpec(harness="generic", name="gen", command=str(FAKE_TUI), idle_after=0.3)
    session = await supervisor.create(spec)
    assert session.capabilities.delivery_modes == (DeliveryMode.WAIT, DeliveryMode.IMMEDIATE)
    message = await send(supervisor, "gen", "hello generic")
    got = await recorder.wait_for(
        "delivery.delivered", where=lambda e: e.receipt.message_id == message.id
    )
    assert got.receipt.evidence.kind == "screen_change"
    await recorder.wait_for(
        "status.changed", where=lambda e: e.state == "idle" and "quiet 0.3s" in e.reason
    )
    assert "you said: hello generic" in session.screen().text  # type: ignore[union-attr]


async def test_release_is_graceful_when_the_agent_cooperates(supervisor: Supervisor) -> None:
    session = await supervisor.create(tui_spec())
    info = await supervisor.release("tui", "done for today")
    assert info.graceful and info.signals_sent == [] and info.exit_code == 0
    assert info.reason == "released: done for today"
    assert session.identity.pid is not None and not psutil.pid_exists(session.identity.pid)


async def test_session_log_lines_carry_session_and_harness(supervisor: Supervisor) -> None:
    with structlog.testing.capture_logs() as logs:
        await supervisor.create(tui_spec("logged", dialog_on_start=True))
        await supervisor.release("logged")
    names = [entry["event"] for entry in logs]
    assert {"session_started", "dialog_answered", "session_exited"} <= set(names)
    for entry in logs:
        if entry["event"] in ("session_started", "dialog_answered", "session_exited"):
            assert entry["session"] == "logged" and entry["harness"] == "fake-tui"


async def test_an_unknown_dialog_at_start_blocks_with_the_screen(
    supervisor: Supervisor, profiles: ProfileRegistry, recorder: EventRecorder
) -> None:
    # The profile knows nothing of the trust dialog: it shows, settles, and the session is
    # blocked (not ready), with the screen in the event, until the dialog goes away.
    user_profile(profiles, "fake-tui", "dialogs = []\n[ready]\nunknown_after = 0.5\n")
    session = await supervisor.create(tui_spec(dialog_on_start=True), wait=False)
    blocked = await recorder.wait_for("session.blocked")
    assert blocked.reason.startswith("screen not recognised 0.5s into start-up")
    assert "Do you trust the files in this folder?" in blocked.screen
    await session.send_keys(b"y")  # a person answers
    await session.wait_ready(10)
    assert recorder.states("tui")[-2:] == ["blocked", "ready"]

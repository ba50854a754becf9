"""The state machine: legal moves only, signal authority, idle epochs."""

from __future__ import annotations

import pytest

from agent_relay_runtime.contract import SessionState, SignalSource
from agent_relay_runtime.session.state import StateMachine

S = SessionState


def machine(authority: SignalSource = SignalSource.SCREEN) -> tuple[StateMachine, list[tuple]]:
    seen: list[tuple] = []
    m = StateMachine(lambda a, b, reason, sig: seen.append((a, b, reason, sig)), authority)
    return m, seen


def test_the_first_idle_boundary_is_ready_and_later_ones_are_idle() -> None:
    m, seen = machine()
    assert m.set(S.IDLE, "quiet", SignalSource.SCREEN)
    assert m.state == S.READY and m.idle_epoch == 1
    assert m.set(S.BUSY, "output", SignalSource.SCREEN)
    assert m.set(S.READY, "quiet", SignalSource.SCREEN)
    assert m.state == S.IDLE and m.idle_epoch == 2
    assert [(a, b) for a, b, *_ in seen] == [
        (S.STARTING, S.READY),
        (S.READY, S.BUSY),
        (S.BUSY, S.IDLE),
    ]


def test_illegal_moves_are_refused() -> None:
    m, seen = machine()
    assert not m.set(S.BUSY, "x", SignalSource.SCREEN)  # starting cannot be busy
    assert m.set(S.RELEASING, "bye", SignalSource.RUNTIME)
    assert not m.set(S.IDLE, "late", SignalSource.PROTOCOL)
    assert m.set(S.EXITED, "gone", SignalSource.PROCESS)
    assert not m.set(S.FAILED, "twice", SignalSource.PROCESS)
    assert m.state == S.EXITED and len(seen) == 2


def test_a_weaker_signal_cannot_flip_busy_and_idle() -> None:
    m, _ = machine(SignalSource.PROTOCOL)
    m.set(S.READY, "initialized", SignalSource.PROTOCOL)
    m.set(S.BUSY, "turn", SignalSource.PROTOCOL)
    assert not m.set(S.IDLE, "screen looks idle", SignalSource.SCREEN)
    assert m.state == S.BUSY
    assert m.set(S.BLOCKED, "dialog", SignalSource.SCREEN)  # blocking is not a flip
    assert m.set(S.IDLE, "result", SignalSource.PROTOCOL)


@pytest.mark.anyio
async def test_wait_for_times_out_and_wakes_on_change() -> None:
    m, _ = machine()
    with pytest.raises(TimeoutError):
        await m.wait_for(lambda s: s == S.READY, 0.01)
    m.set(S.READY, "ok", SignalSource.SCREEN)
    assert await m.wait_for(lambda s: s.is_idle, 1) == S.READY

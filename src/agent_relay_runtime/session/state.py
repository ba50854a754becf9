"""The session state machine: legal transitions, signal authority, and waiting on change.

Idle is a verdict drawn from signals of different strength (protocol > hook > transcript
> screen). A session declares the strongest source it has; a busy/idle flip reported by a
weaker source is ignored, so a screen that happens to look idle cannot override a
protocol that says the turn is still running.
"""

from __future__ import annotations

from collections.abc import Callable
from time import monotonic

import anyio

from ..aio import Notifier
from ..contract import SessionState, SignalSource

__all__ = ["StateMachine", "Transition"]

S = SessionState

_ALLOWED: dict[SessionState, frozenset[SessionState]] = {
    S.STARTING: frozenset({S.READY, S.BLOCKED, S.RELEASING, S.EXITED, S.FAILED}),
    S.READY: frozenset({S.BUSY, S.BLOCKED, S.RELEASING, S.EXITED, S.FAILED}),
    S.BUSY: frozenset({S.IDLE, S.BLOCKED, S.RELEASING, S.EXITED, S.FAILED}),
    S.IDLE: frozenset({S.BUSY, S.BLOCKED, S.RELEASING, S.EXITED, S.FAILED}),
    S.BLOCKED: frozenset({S.READY, S.BUSY, S.IDLE, S.RELEASING, S.EXITED, S.FAILED}),
    S.RELEASING: frozenset({S.EXITED, S.FAILED}),
    S.EXITED: frozenset(),
    S.FAILED: frozenset(),
}

_FLIPS = frozenset({S.BUSY, S.IDLE})

Transition = Callable[[SessionState, SessionState, str, SignalSource], None]


class StateMachine:
    """Holds the state; `set` validates, filters by authority and reports transitions."""

    def __init__(self, on_transition: Transition, authority: SignalSource) -> None:
        self.state = SessionState.STARTING
        self.authority = authority
        self.entered_at = monotonic()
        self.idle_epoch = 0  # how many times an idle boundary was entered
        self.was_ready = False
        self._on_transition = on_transition
        self._changed = Notifier()

    def set(self, target: SessionState, reason: str, signal: SignalSource) -> bool:
        """Move to ``target`` if legal and the signal is strong enough; True if it moved."""
        current = self.state
        if target == S.IDLE and not self.was_ready:
            target = S.READY  # the first idle boundary is readiness
        elif target == S.READY and self.was_ready:
            target = S.IDLE
        if target == current or target not in _ALLOWED[current]:
            return False
        weak = signal.strength < self.authority.strength
        if weak and target in _FLIPS and current in _FLIPS | {S.READY}:
            return False
        self.state = target
        self.entered_at = monotonic()
        if target.is_idle:
            self.idle_epoch += 1
            self.was_ready = True
        self._on_transition(current, target, reason, signal)
        self._changed.notify()
        return True

    async def wait_for(
        self, predicate: Callable[[SessionState], bool], timeout: float | None = None
    ) -> SessionState:
        """Wait until ``predicate(state)`` holds; raise TimeoutError after ``timeout`` s."""
        with anyio.fail_after(timeout):
            while not predicate(self.state):
                await self._changed.wait()
        return self.state

    async def changed(self) -> None:
        """Return at the next transition."""
        await self._changed.wait()

"""The per-session delivery queue: idle-boundary injection with honest receipts.

`submit` answers at once — ``accepted`` (going in now), ``deferred`` (queued behind a
busy turn or a starting session) or ``failed`` — and one worker injects messages in
order, reporting ``delivered`` only with evidence from the driver, or ``failed`` with
whether a retry is safe.

Ordering: ``steer`` messages go first (the driver interrupts the turn), then
``immediate`` ones, then ``wait`` ones in FIFO order, each of those at an idle boundary
that came *after* the previous injection, so a message never lands in the turn its
predecessor started. A message whose id (or idempotency key) was seen before is not
queued again: its current receipt is returned.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio

from ..aio import Notifier
from ..contract import (
    Accepted,
    Deferred,
    Delivered,
    DeliveryMode,
    Evidence,
    Failed,
    MessageContext,
    MessageReceipt,
    RelayMessage,
    SessionState,
)
from ..exceptions import DeliveryFailed, RuntimeErrorBase
from .state import StateMachine

__all__ = ["DeliveryQueue", "Injector"]

Injector = Callable[[RelayMessage, DeliveryMode], Awaitable[Evidence]]

_R = TypeVar("_R", Accepted, Deferred, Delivered, Failed)
_LIVE = (SessionState.READY, SessionState.IDLE, SessionState.BUSY)


@dataclass
class _Item:
    message: RelayMessage
    ctx: MessageContext
    receipt: MessageReceipt

    @property
    def mode(self) -> DeliveryMode:
        return self.message.mode


class DeliveryQueue:
    """Queue and worker for one session; run `run` in the session's task group."""

    def __init__(
        self,
        *,
        session: str,
        state: StateMachine,
        inject: Injector,
        on_receipt: Callable[[MessageReceipt], None],
        maxlen: int = 1000,
        remember: int = 10_000,
    ) -> None:
        self.session = session
        self.maxlen = maxlen
        self._state = state
        self._inject = inject
        self._on_receipt = on_receipt
        self._remember = remember
        self._queues: dict[DeliveryMode, deque[_Item]] = {m: deque() for m in DeliveryMode}
        self._seen: OrderedDict[str, _Item] = OrderedDict()
        self._inflight: _Item | None = None
        self._last_epoch = 0
        self._wake = Notifier()
        self._closed: str | None = None

    @property
    def pending(self) -> int:
        return sum(len(q) for q in self._queues.values())

    def poke(self) -> None:
        """Re-check eligibility (the session calls this on every state change)."""
        self._wake.notify()

    def submit(self, message: RelayMessage, ctx: MessageContext) -> MessageReceipt:
        """Take a message; the answer is immediate and never blocks."""
        seen = self._seen.get(message.dedup_key)
        if seen is not None:
            return seen.receipt
        if self._closed is not None:
            closed = self._make(Failed, message, ctx, reason=self._closed, retryable=False)
            return self._report(None, closed)
        if self.pending >= self.maxlen:
            full = f"queue full ({self.maxlen} messages)"
            return self._report(None, self._make(Failed, message, ctx, reason=full, retryable=True))
        wait_reason = self._wait_reason(message.mode)
        receipt = (
            self._make(Deferred, message, ctx, reason=wait_reason)
            if wait_reason
            else self._make(Accepted, message, ctx)
        )
        item = _Item(message, ctx, receipt)
        self._remember_item(item)
        self._queues[message.mode].append(item)
        self._on_receipt(item.receipt)
        self._wake.notify()
        return item.receipt

    def close(self, reason: str) -> None:
        """Refuse new messages and fail every queued one (they were never injected)."""
        self._closed = reason
        for queue in self._queues.values():
            while queue:
                item = queue.popleft()
                self._finish(item, reason=reason, retryable=True)

    async def run(self) -> None:
        """Inject eligible messages one at a time, forever (cancel to stop)."""
        while True:
            item = await self._next()
            self._inflight = item
            # The next wait-mode message needs an idle boundary entered after this point.
            # (Taken now, not after the injection returns: the turn this message starts
            # may already have ended by then.)
            epoch = self._state.idle_epoch
            try:
                evidence = await self._inject(item.message, item.mode)
            except DeliveryFailed as exc:
                self._finish(item, reason=exc.message, retryable=exc.retryable)
            except RuntimeErrorBase as exc:
                self._finish(item, reason=exc.message, retryable=False)
            except anyio.get_cancelled_exc_class():
                self._finish(
                    item,
                    reason="session ended during delivery; the message may have reached the agent",
                    retryable=False,
                )
                raise
            else:
                self._finish(item, evidence=evidence)
            finally:
                self._inflight = None
                self._last_epoch = epoch

    def _wait_reason(self, mode: DeliveryMode) -> str | None:
        state = self._state.state
        if state == SessionState.STARTING:
            return "session is starting"
        if state == SessionState.BLOCKED:
            return "session is blocked"
        if mode != DeliveryMode.WAIT:
            return None
        ahead = len(self._queues[DeliveryMode.WAIT]) + (1 if self._inflight else 0)
        if ahead:
            return f"queued behind {ahead} message(s)"
        if not self._at_new_boundary():
            return "session is busy"
        return None

    def _at_new_boundary(self) -> bool:
        return self._state.state.is_idle and self._state.idle_epoch > self._last_epoch

    def _eligible(self) -> _Item | None:
        state = self._state.state
        if state not in _LIVE:
            return None
        for mode in (DeliveryMode.STEER, DeliveryMode.IMMEDIATE):
            if self._queues[mode]:
                return self._queues[mode].popleft()
        if self._queues[DeliveryMode.WAIT] and self._at_new_boundary():
            return self._queues[DeliveryMode.WAIT].popleft()
        return None

    async def _next(self) -> _Item:
        while (item := self._eligible()) is None:
            await self._wake.wait()
        return item

    def _finish(
        self,
        item: _Item,
        *,
        evidence: Evidence | None = None,
        reason: str = "",
        retryable: bool = False,
    ) -> None:
        receipt: MessageReceipt
        if evidence is not None:
            receipt = self._make(Delivered, item.message, item.ctx, evidence=evidence)
        else:
            receipt = self._make(Failed, item.message, item.ctx, reason=reason, retryable=retryable)
        self._report(item, receipt)

    def _make(self, cls: type[_R], message: RelayMessage, ctx: MessageContext, **fields: Any) -> _R:
        return cls(
            message_id=message.id, delivery_id=ctx.delivery_id, session=self.session, **fields
        )

    def _report(self, item: _Item | None, receipt: MessageReceipt) -> MessageReceipt:
        if item is not None:
            item.receipt = receipt
        self._on_receipt(receipt)
        return receipt

    def _remember_item(self, item: _Item) -> None:
        self._seen[item.message.dedup_key] = item
        while len(self._seen) > self._remember:
            self._seen.popitem(last=False)

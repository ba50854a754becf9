"""Helpers for testing code that runs sessions: record events, wait for them.

`EventRecorder` is a plain event handler (pass it to `Supervisor.subscribe` or
`AgentSession.on_event`) that keeps every event and lets a test wait for one that
matches, without sleeping: it wakes on each new event.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio

from .aio import Notifier
from .events import ReceiptEvent, SessionEvent, StatusChanged

__all__ = ["EventRecorder"]


class EventRecorder:
    def __init__(self) -> None:
        self.events: list[SessionEvent] = []
        self._new = Notifier()

    def __call__(self, event: SessionEvent) -> None:
        self.events.append(event)
        self._new.notify()

    def mark(self) -> int:
        """A position to wait from: `wait_for(..., after=mark)` ignores earlier events."""
        return len(self.events)

    def matching(
        self,
        type: str | None = None,
        *,
        session: str | None = None,
        where: Callable[[Any], bool] | None = None,
        after: int = 0,
    ) -> list[Any]:
        return [
            e
            for e in self.events[after:]
            if (type is None or e.type == type)
            and (session is None or e.session == session)
            and (where is None or where(e))
        ]

    async def wait_for(
        self,
        type: str | None = None,
        *,
        session: str | None = None,
        where: Callable[[Any], bool] | None = None,
        after: int = 0,
        timeout: float = 10.0,
    ) -> Any:
        """The first event (after position ``after``) that matches; TimeoutError if none."""
        with anyio.fail_after(timeout):
            while True:
                found = self.matching(type, session=session, where=where, after=after)
                if found:
                    return found[0]
                after = max(after, len(self.events))
                await self._new.wait()

    def receipt_statuses(self, message_id: str) -> list[str]:
        """The receipt statuses reported for one message, in order."""
        return [
            e.receipt.status
            for e in self.events
            if isinstance(e, ReceiptEvent) and e.receipt.message_id == message_id
        ]

    def states(self, session: str) -> list[str]:
        """The sequence of states a session went through."""
        return [
            e.state.value
            for e in self.events
            if isinstance(e, StatusChanged) and e.session == session
        ]

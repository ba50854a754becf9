"""The runtime's event log: every session event, numbered, bounded, followable.

Events get a monotonically increasing ``seq``. The log keeps the newest ``capacity``
events and counts what it dropped; a follower resumes from a cursor (the last ``seq`` it
saw) and, if it fell behind the window, continues from the oldest event still kept.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator

from .aio import Notifier
from .events import SessionEvent

__all__ = ["EventLog"]


class EventLog:
    def __init__(self, capacity: int = 10_000) -> None:
        self.capacity = capacity
        self._events: deque[SessionEvent] = deque(maxlen=capacity)
        self._seq = 0
        self.dropped = 0
        self._new = Notifier()
        self._closed = False

    @property
    def last_seq(self) -> int:
        return self._seq

    def append(self, event: SessionEvent) -> SessionEvent:
        self._seq += 1
        numbered = event.model_copy(update={"seq": self._seq})
        if len(self._events) == self.capacity:
            self.dropped += 1
        self._events.append(numbered)
        self._new.notify()
        return numbered

    def since(self, cursor: int, session: str | None = None) -> list[SessionEvent]:
        """Events after ``cursor`` (optionally of one session) still in the window."""
        return [
            e
            for e in self._events
            if (e.seq or 0) > cursor and (session is None or e.session == session)
        ]

    async def follow(self, cursor: int, session: str | None = None) -> AsyncIterator[SessionEvent]:
        """Yield events after ``cursor`` as they come, until the log is closed."""
        while True:
            batch = self.since(cursor, session)
            for event in batch:
                yield event
            if self._events:
                cursor = max(cursor, self._events[-1].seq or 0)
            if self._closed:
                return
            await self._new.wait()

    def close(self) -> None:
        """End every follower (at daemon shutdown)."""
        self._closed = True
        self._new.notify()

"""Server-sent events: the ``text/event-stream`` framing, over lines already split."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

__all__ = ["SseEvent", "iter_sse"]


@dataclass(frozen=True)
class SseEvent:
    event: str
    data: str
    id: str | None = None


async def iter_sse(lines: AsyncIterator[str]) -> AsyncIterator[SseEvent]:
    """Events from the lines of an event stream (as httpx's ``aiter_lines`` gives them).

    A blank line ends an event; ``data`` lines join with newlines; comments (``:``) are
    skipped; an event cut off by the end of the stream is dropped, as the spec says.
    """
    data: list[str] = []
    event: str | None = None
    event_id: str | None = None
    async for line in lines:
        if not line:
            if data:
                yield SseEvent(event or "message", "\n".join(data), event_id)
            data, event = [], None
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value
        elif name == "id":
            event_id = value

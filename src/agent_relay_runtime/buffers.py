"""Small bounded buffers shared by transports and observers."""

from __future__ import annotations

__all__ = ["BoundedTail"]


class BoundedTail:
    """Keeps the last ``limit`` bytes written to it, and counts everything written.

    Trimming happens only when the buffer reaches twice the limit, so appends stay
    amortized O(1) instead of moving the whole buffer on every write.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._buf = bytearray()
        self.total = 0

    def add(self, data: bytes) -> None:
        self.total += len(data)
        self._buf += data
        if len(self._buf) > 2 * self.limit:
            del self._buf[: len(self._buf) - self.limit]

    @property
    def dropped(self) -> int:
        """Bytes written but no longer kept."""
        return self.total - min(len(self._buf), self.limit)

    def bytes(self) -> bytes:
        return bytes(self._buf[-self.limit :])

    def text(self) -> str:
        return self.bytes().decode("utf-8", "replace")

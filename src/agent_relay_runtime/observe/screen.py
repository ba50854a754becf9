"""A terminal screen model for PTY sessions: pyte fed incrementally, plus raw scrollback.

pyte is a faithful but pure-Python emulator (well under 1 MB/s for plain text), while an
agent's tool can print tens of megabytes. Two things keep the screen model fast without
changing what it shows:

- it is *lazy*: output is buffered and fed to pyte only when someone looks at the
  screen, or when the buffer grows past a bound;
- before feeding, a long run of plain text (printable characters, CR/LF, tabs, colour
  codes) that will scroll off the screen anyway is cut. The cut is exact: it is made only
  after a CRLF that is followed by more newlines than the screen has rows, only when
  nothing before it could change terminal state beyond colours (the colour state that
  survives is carried over), and never under a scroll region.

Every byte still goes into the scrollback and the byte counters; only pyte's work is cut.
"""

from __future__ import annotations

import codecs
import re

import pyte
from pydantic import BaseModel

from ..buffers import BoundedTail

__all__ = ["ScreenModel", "ScreenSnapshot"]

# Skipped text may hold anything that changes no terminal state but colours. Deleting the
# bytes that are always harmless leaves the few that need a closer look: C0 controls other
# than BEL/BS/TAB/LF/CR, DEL, ESC (fine only as an SGR) and 0xC2 (the lead byte of C1s).
_SUSPECT = bytes([*range(0x00, 0x07), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F, 0xC2])
_HARMLESS = bytes(b for b in range(256) if b not in _SUSPECT)
_C1 = re.compile(rb"\xc2[\x80-\x9f]")
_SGR = re.compile(rb"\x1b\[([0-9;:]*)m")
_FLUSH_AT = 1 << 20


class ScreenSnapshot(BaseModel):
    """What the terminal shows now."""

    rows: int
    cols: int
    lines: list[str]
    cursor_x: int
    cursor_y: int
    total_bytes: int

    @property
    def text(self) -> str:
        return "\n".join(self.lines).rstrip("\n")


class ScreenModel:
    """The screen of one PTY session. Not thread-safe; owned by one event loop."""

    def __init__(self, cols: int = 120, rows: int = 40, scrollback_bytes: int = 4 << 20) -> None:
        self._screen = pyte.Screen(cols, rows)
        self._stream = pyte.Stream(self._screen)
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._pending = bytearray()
        self.scrollback = BoundedTail(scrollback_bytes)
        self.version = 0
        self.skipped_bytes = 0

    @property
    def total_bytes(self) -> int:
        return self.scrollback.total

    @property
    def rows(self) -> int:
        return int(self._screen.lines)

    @property
    def cols(self) -> int:
        return int(self._screen.columns)

    def feed(self, data: bytes) -> None:
        """Take raw output bytes (cheap: pyte sees them later)."""
        if not data:
            return
        self.scrollback.add(data)
        self._pending += data
        self.version += 1
        if len(self._pending) >= _FLUSH_AT:
            self._flush()

    def resize(self, cols: int, rows: int) -> None:
        self._flush()
        self._screen.resize(rows, cols)

    def lines(self) -> list[str]:
        self._flush()
        return [line.rstrip() for line in self._screen.display]

    def text(self) -> str:
        return "\n".join(self.lines()).rstrip("\n")

    def bottom(self, count: int) -> str:
        """The last ``count`` non-blank lines, top to bottom."""
        kept = [line for line in self.lines() if line.strip()]
        return "\n".join(kept[-count:])

    def snapshot(self) -> ScreenSnapshot:
        lines = self.lines()
        return ScreenSnapshot(
            rows=self.rows,
            cols=self.cols,
            lines=lines,
            cursor_x=int(self._screen.cursor.x),
            cursor_y=int(self._screen.cursor.y),
            total_bytes=self.total_bytes,
        )

    def _flush(self) -> None:
        if not self._pending:
            return
        data = bytes(self._pending)
        self._pending.clear()
        self._stream.feed(self._decoder.decode(self._cut(data)))

    def _cut(self, data: bytes) -> bytes:
        """Drop the plain-text prefix of ``data`` that would scroll off the screen."""
        rows = self.rows
        if len(data) < rows * 160 or self._screen.margins is not None:
            return data
        pos = len(data)
        for _ in range(rows + 2):
            pos = data.rfind(b"\n", 0, pos)
            if pos < 0:
                return data
        crlf = data.rfind(b"\r\n", 0, pos + 1)
        if crlf < 0:
            return data
        cut = crlf + 2
        if not _only_text_and_colours(data[:cut]):
            return data
        self.skipped_bytes += cut
        self._decoder.reset()
        return _surviving_sgr(data, cut) + data[cut:]


def _only_text_and_colours(head: bytes) -> bool:
    suspects = head.translate(None, _HARMLESS)
    if not suspects:
        return True
    if suspects.translate(None, b"\x1b\xc2"):
        return False
    if b"\xc2" in suspects and _C1.search(head):
        return False
    return head.count(b"\x1b") == len(_SGR.findall(head))


def _surviving_sgr(data: bytes, end: int) -> bytes:
    """The colour codes in ``data[:end]`` whose effect outlives it (from the last reset on)."""
    if data.find(b"\x1b", 0, end) < 0:
        return b""
    codes = list(_SGR.finditer(data, 0, end))
    start = 0
    for index, match in enumerate(codes):
        params = match.group(1)
        if not params or params.split(b";")[0] in (b"", b"0"):
            start = index
    return b"".join(m.group(0) for m in codes[start:])

"""A terminal screen model for PTY sessions: pyte fed incrementally, plus raw scrollback.

pyte is a faithful but pure-Python emulator (well under 1 MB/s for plain text), while an
agent's tool can print tens of megabytes. Two things keep the screen model fast without
changing what it shows:

- it is *lazy*: output is buffered and fed to pyte only when someone looks at the
  screen; a growing buffer is compacted (below), and fed only if it cannot be;
- a long run of plain text (printable characters, CR/LF, tabs, colour codes) that will
  scroll off the screen anyway is cut. The cut is exact: the run must be followed by
  enough plain line feeds to scroll every row off the screen wherever the cursor was,
  it must change no terminal state but colours (the colour state that survives is
  carried over), and it is never made under a scroll region. Escape sequences around
  the run (a TUI redrawing its box before and after a tool's output) are fed whole.

Every byte still goes into the scrollback and the byte counters; only pyte's work is cut.
"""

from __future__ import annotations

import codecs
import itertools
import re

import pyte
from pydantic import BaseModel
from wcwidth import wcwidth

from ..buffers import BoundedTail

__all__ = ["ScreenModel", "ScreenSnapshot", "render_lines"]

# Skipped text may hold anything that changes no terminal state but colours. Deleting the
# bytes that are always harmless leaves the few that need a closer look: C0 controls other
# than BEL/BS/TAB/LF/CR, DEL, ESC (fine only as an SGR) and 0xC2 (the lead byte of C1s).
_SUSPECT = bytes([*range(0x00, 0x07), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F, 0xC2])
_HARMLESS = bytes(b for b in range(256) if b not in _SUSPECT)
_C1 = re.compile(rb"\xc2[\x80-\x9f]")
_SCROLL_REGION = re.compile(rb"\x1b\[[0-9;]*r")
_CSI_FINAL = re.compile(rb"[\x40-\x7e]")
_STRING_END = re.compile(rb"\x07|\x1b\\")
_ESC_FINAL = re.compile(rb"[\x30-\x7e]")
_SGR = re.compile(rb"\x1b\[([0-9;:]*)m")
_COMPACT_AT = 256 * 1024


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
        self._stale_decoder = False
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
        if len(self._pending) >= _COMPACT_AT:
            self._compact()

    def resize(self, cols: int, rows: int) -> None:
        self._flush()
        self._screen.resize(rows, cols)

    def lines(self) -> list[str]:
        self._flush()
        return render_lines(self._screen)

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

    def _compact(self) -> None:
        """Bound the pending output: cut what will scroll off, or else feed it to pyte."""
        self._pending = bytearray(self._cut(bytes(self._pending)))
        if len(self._pending) >= _COMPACT_AT:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        data = self._cut(bytes(self._pending))
        self._pending.clear()
        if self._stale_decoder:
            self._decoder.reset()
            self._stale_decoder = False
        self._stream.feed(self._decoder.decode(data))

    def _cut(self, data: bytes) -> bytes:
        """Drop the stretches of ``data`` that would scroll off the screen anyway.

        ``data`` is split at its bytes that could change terminal state other than
        colours; each plain part in between may lose a stretch that is followed, within
        the same plain part, by at least twice as many line feeds as the screen has rows:
        wherever the cursor stood, they scroll every row it could have touched off the
        screen, in the emulator that saw the stretch and in the one that did not.
        """
        rows = self.rows
        if len(data) < rows * 320 or self._screen.margins is not None:
            return data
        if _SCROLL_REGION.search(data):
            return data
        spans = [(-1, 0), *_unsafe_spans(data), (len(data), len(data))]
        pieces: list[bytes] = []
        kept = 0
        for (last, after), (end, _) in itertools.pairwise(spans):
            start = 0 if last < 0 else data.find(b"\r\n", after, end) + 2
            if start < 2 and last >= 0:
                continue  # no line starts in this part
            cut = _cut_point(data, start, end, 2 * rows + 1)
            if cut is None:
                continue
            pieces += [data[kept:start], _surviving_sgr(data, start, cut)]
            kept = cut
            self.skipped_bytes += cut - start
            if start == 0:
                self._stale_decoder = True  # a character split before the cut is dropped
        if not pieces:
            return data
        return b"".join([*pieces, data[kept:]])


def _cut_point(data: bytes, start: int, end: int, feeds: int) -> int | None:
    """The position just after a CRLF in ``data[start:end]`` that ``feeds`` line feeds
    follow before ``end``; None if there is none worth cutting at."""
    if end - start < feeds * 8:
        return None
    pos = end
    for _ in range(feeds + 1):
        pos = data.rfind(b"\n", start, pos)
        if pos < 0:
            return None
    crlf = data.rfind(b"\r\n", start, pos + 1)
    return crlf + 2 if crlf >= start and crlf + 2 > start else None


def render_lines(screen: pyte.Screen) -> list[str]:
    """The screen's rows as text, right-stripped.

    Like pyte's ``display``, but a stub cell left behind when a wide character was
    partly overwritten renders as a space instead of failing.
    """
    lines = []
    for y in range(screen.lines):
        row = screen.buffer[y]
        cells = []
        skip = False
        for x in range(screen.columns):
            if skip:
                skip = False
                continue
            data = row[x].data
            cells.append(data or " ")
            skip = bool(data) and wcwidth(data[0]) == 2
        lines.append("".join(cells).rstrip())
    return lines


def _unsafe_spans(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of each stretch in ``data`` that could change terminal state other
    than colours, ascending: C0 controls but BEL/BS/TAB/LF/CR, DEL, UTF-8 encoded C1
    controls, and escape sequences other than SGR (a whole sequence, terminator and all,
    so that no cut can fall inside one)."""
    suspects = set(data.translate(None, _HARMLESS))
    found: list[tuple[int, int]] = []
    for byte in suspects - {0x1B, 0xC2}:
        needle = bytes([byte])
        pos = data.find(needle)
        while pos >= 0:
            found.append((pos, pos + 1))
            pos = data.find(needle, pos + 1)
    if 0xC2 in suspects:
        found += [(m.start(), m.end()) for m in _C1.finditer(data)]
    if 0x1B in suspects:
        pos = data.find(b"\x1b")
        while pos >= 0:
            if not _SGR.match(data, pos):
                found.append((pos, _sequence_end(data, pos)))
            pos = data.find(b"\x1b", pos + 1)
    found.sort()
    return found


def _sequence_end(data: bytes, pos: int) -> int:
    """Where the escape sequence that starts at ``pos`` ends (its length, if it runs past
    the end of ``data``)."""
    kind = data[pos + 1 : pos + 2]
    if kind == b"[":
        match = _CSI_FINAL.search(data, pos + 2)
        return match.end() if match else len(data)
    if kind in (b"]", b"P", b"_", b"^", b"X"):
        match = _STRING_END.search(data, pos + 2)
        return match.end() if match else len(data)
    match = _ESC_FINAL.search(data, pos + 1)
    return match.end() if match else len(data)


def _surviving_sgr(data: bytes, start: int, end: int) -> bytes:
    """The colour codes in ``data[start:end]`` whose effect outlives it (from the last reset
    on)."""
    if data.find(b"\x1b", start, end) < 0:
        return b""
    codes = list(_SGR.finditer(data, start, end))
    start = 0
    for index, match in enumerate(codes):
        params = match.group(1)
        if not params or params.split(b";")[0] in (b"", b"0"):
            start = index
    return b"".join(m.group(0) for m in codes[start:])

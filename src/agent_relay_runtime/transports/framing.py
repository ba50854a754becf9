"""Newline-delimited JSON framing that survives what real agent CLIs print.

Tool outputs make lines of many megabytes, so the limit is generous (64 MiB by default,
at least 16 MiB by contract). A line over the limit is not buffered further: it is
skipped up to its newline and reported once, with its size. A line that is not a JSON
object is reported with a preview. Neither stops the stream.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

__all__ = ["DEFAULT_MAX_LINE", "FramingError", "JsonLinesDecoder", "encode_line"]

DEFAULT_MAX_LINE = 64 * 1024 * 1024
_PREVIEW = 200


@dataclass(frozen=True)
class FramingError:
    """A line the decoder could not turn into a JSON object."""

    reason: str
    size: int
    preview: str


def encode_line(obj: dict[str, Any]) -> bytes:
    """One JSON object as one line. ``ensure_ascii`` keeps U+2028 and friends escaped."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=True).encode() + b"\n"


class JsonLinesDecoder:
    """Incremental decoder: `feed` bytes, get JSON objects and `FramingError`s in order."""

    def __init__(self, max_line: int = DEFAULT_MAX_LINE) -> None:
        self.max_line = max_line
        self._buf = bytearray()
        self._scanned = 0  # bytes of _buf already known to hold no newline
        self._skipping: int | None = None  # bytes dropped of an over-long line, if in one

    def feed(self, data: bytes) -> list[dict[str, Any] | FramingError]:
        out: list[dict[str, Any] | FramingError] = []
        if self._skipping is not None:
            data = self._skip(data, out)
        self._buf += data
        start = 0
        while True:
            nl = self._buf.find(b"\n", max(start, self._scanned))
            if nl < 0:
                break
            if nl - start > self.max_line:
                out.append(self._too_long(nl - start))
            else:
                self._decode(bytes(self._buf[start:nl]), out)
            start = nl + 1
            self._scanned = start
        del self._buf[:start]
        self._scanned = len(self._buf)
        if len(self._buf) > self.max_line:
            self._skipping = len(self._buf)
            self._buf.clear()
            self._scanned = 0
        return out

    def finish(self) -> list[dict[str, Any] | FramingError]:
        """At end of stream: decode a last line that had no newline."""
        out: list[dict[str, Any] | FramingError] = []
        if self._skipping is not None:
            out.append(self._too_long(self._skipping))
            self._skipping = None
        elif self._buf.strip():
            self._decode(bytes(self._buf), out)
        self._buf.clear()
        self._scanned = 0
        return out

    def _skip(self, data: bytes, out: list[dict[str, Any] | FramingError]) -> bytes:
        assert self._skipping is not None
        nl = data.find(b"\n")
        if nl < 0:
            self._skipping += len(data)
            return b""
        out.append(self._too_long(self._skipping + nl))
        self._skipping = None
        return data[nl + 1 :]

    def _too_long(self, size: int) -> FramingError:
        return FramingError(f"line longer than {self.max_line} bytes skipped", size, "")

    def _decode(self, line: bytes, out: list[dict[str, Any] | FramingError]) -> None:
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line.strip():
            return
        try:
            obj = json.loads(line)
        except ValueError as exc:
            out.append(FramingError(f"not JSON: {exc.args[0]}", len(line), _preview(line)))
            return
        if not isinstance(obj, dict):
            out.append(FramingError("JSON line is not an object", len(line), _preview(line)))
            return
        out.append(obj)


def _preview(line: bytes) -> str:
    return line[:_PREVIEW].decode("utf-8", "replace")

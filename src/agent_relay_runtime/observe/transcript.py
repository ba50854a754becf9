"""Reading a JSONL transcript file as it grows (Claude's session file, Codex's rollout).

`JsonlTail.read_new` returns the complete lines appended since the last call, decoded;
a line still being written stays for the next call. Nothing watches the file: callers
read when a hook or the screen says something happened, so an idle session costs nothing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["JsonlTail"]

_MAX_READ = 16 << 20


class JsonlTail:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._offset = 0
        self._rest = b""

    def follow(self, path: Path) -> None:
        """Switch to ``path`` (from its start) unless it is the file already followed."""
        if path != self.path:
            self.path, self._offset, self._rest = path, 0, b""

    def read_new(self) -> list[dict[str, Any]]:
        if self.path is None:
            return []
        try:
            with self.path.open("rb") as handle:
                handle.seek(self._offset)
                data = handle.read(_MAX_READ)
        except OSError:
            return []
        self._offset += len(data)
        *lines, self._rest = (self._rest + data).split(b"\n")
        records = []
        for line in lines:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                records.append(record)
        return records

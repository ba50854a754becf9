"""The daemon's files in its data dir: token, endpoint record, lock.

``token``        bearer token of the control API (0600, created once)
``daemon.json``  where the running daemon listens and its pid (0600, removed at exit)
``daemon.lock``  held (flock) for the daemon's life: one daemon per data dir
``runtime.sock`` the default control socket (0600)

The data dir is ``--data-dir``, else ``$AGENT_RELAY_HOME``, else
``$XDG_DATA_HOME/agent-relay-runtime`` (``~/.local/share/agent-relay-runtime``).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..exceptions import DaemonError, DaemonNotRunning
from ..fsutil import write_private

__all__ = ["DataDir", "resolve_data_dir"]


def resolve_data_dir(explicit: str | Path | None = None) -> Path:
    if explicit:
        return Path(explicit).expanduser().resolve()
    env = os.environ.get("AGENT_RELAY_HOME")
    if env:
        return Path(env).expanduser().resolve()
    xdg = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(xdg).expanduser().resolve() / "agent-relay-runtime"


@dataclass
class DataDir:
    root: Path

    @property
    def token_file(self) -> Path:
        return self.root / "token"

    @property
    def state_file(self) -> Path:
        return self.root / "daemon.json"

    @property
    def lock_file(self) -> Path:
        return self.root / "daemon.lock"

    @property
    def socket_path(self) -> Path:
        return self.root / "runtime.sock"

    def ensure(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)

    def token(self) -> str:
        """The control API token, created (0600) on first use."""
        if not self.token_file.exists():
            write_private(self.token_file, secrets.token_urlsafe(32) + "\n")
        self.token_file.chmod(0o600)
        return self.token_file.read_text().strip()

    def read_token(self) -> str:
        try:
            return self.token_file.read_text().strip()
        except FileNotFoundError:
            raise DaemonNotRunning(
                f"no daemon token in {self.root}: start one with `agent-relay-runtime serve`"
            ) from None

    def lock(self) -> int:
        """Take the one-daemon-per-data-dir lock; the fd must stay open while serving."""
        fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            running = self.read_state() or {}
            raise DaemonError(
                f"a daemon is already running for {self.root} (pid {running.get('pid', '?')})"
            ) from None
        return fd

    def write_state(self, state: dict[str, Any]) -> None:
        write_private(self.state_file, json.dumps(state, indent=2) + "\n")

    def read_state(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.state_file.read_text())
        except (FileNotFoundError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def clear_state(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.state_file.unlink()

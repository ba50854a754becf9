"""uvicorn as this runtime runs it: one owner of signals, and a readiness event."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator

import anyio
import uvicorn

__all__ = ["ReadyServer"]


class ReadyServer(uvicorn.Server):
    """uvicorn without its signal handlers (the daemon owns signals), with ``ready`` set
    once it accepts connections."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = anyio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.ready.set()

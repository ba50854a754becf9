"""uvicorn as this runtime runs it: one owner of signals, and a readiness event."""

from __future__ import annotations

import contextlib
import ipaddress
import socket
from collections.abc import Iterator

import anyio
import uvicorn

from .exceptions import ConfigError

__all__ = ["ReadyServer", "listen_tcp"]


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


def listen_tcp(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int, what: str, backlog: int
) -> socket.socket:
    """A listening TCP socket on ``address:port`` (port 0: any free one); a bind that
    fails is a `ConfigError` starting with ``what``."""
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on accepted connections only for a
    # socket made so, and without it every answer waits ~40 ms for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((str(address), port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"{what}: {exc.strerror}") from None
    sock.listen(backlog)
    return sock

"""The node's side of ``/v1/node/ws``: one connection to the relay, kept up.

`RelayLink` connects with the workspace key, registers (``node.register``), then reads
frames and hands them to the node's handler; `request` sends a frame with an ``id`` and
waits for its ``reply``/``error``. A socket silent for `DEAD_AFTER` s is dead. After a
drop it reconnects with backoff (1 s doubling to 30 s, with jitter), registers again
and calls ``on_connected`` so the node re-registers its agents and the relay resends
what they have not acknowledged. ``connected`` is set while a registered socket is up.
"""

from __future__ import annotations

import contextlib
import itertools
import random
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

import anyio
import anyio.abc
from anyio.streams.memory import MemoryObjectSendStream
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from .. import __version__
from ..aio import collapse_single
from ..logs import get_logger
from ..relay.wire import (
    Capability,
    Error,
    Frame,
    NodeHeartbeat,
    NodeRegister,
    Ping,
    Pong,
    Reply,
    WireError,
    decode,
    encode,
)

__all__ = ["DEAD_AFTER", "LinkClosed", "RelayLink", "RelayRefused"]

DEAD_AFTER = 48.0
HEARTBEAT_EVERY = 15.0
BACKOFF_FIRST, BACKOFF_MAX = 1.0, 30.0
REQUEST_TIMEOUT = 30.0


class LinkClosed(Exception):
    """The connection dropped before the answer came."""


class RelayRefused(Exception):
    """The relay answered a request with an ``error`` frame."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message


Handler = Callable[[Frame], Awaitable[None]]


def node_socket_url(base_url: str, token: str) -> str:
    ws = base_url.rstrip("/").replace("https://", "wss://", 1).replace("http://", "ws://", 1)
    return f"{ws}/v1/node/ws?token={quote(token, safe='')}"


class RelayLink:
    def __init__(
        self,
        base_url: str,
        key: str,
        name: str,
        *,
        handler: Handler,
        capabilities: Callable[[], list[Capability]] = list,
        on_connected: Callable[[], Awaitable[None]] | None = None,
        max_agents: int | None = None,
    ) -> None:
        self.url = node_socket_url(base_url, key)
        self.name = name
        self._handler = handler
        self._capabilities = capabilities
        self._on_connected = on_connected
        self._max_agents = max_agents
        self._ws: ClientConnection | None = None
        self._pending: dict[str, MemoryObjectSendStream[Frame]] = {}
        self._ids = itertools.count(1)
        self.connected = anyio.Event()
        self.registration: dict[str, Any] = {}
        self.connects = 0
        self.log = get_logger(node=name)

    # -- sending ---------------------------------------------------------------------------

    async def send(self, frame: Frame) -> None:
        """Send now; `LinkClosed` when no socket is up (the caller decides what to keep)."""
        ws = self._ws
        if ws is None:
            raise LinkClosed("not connected to the relay")
        try:
            await ws.send(encode(frame))
        except ConnectionClosed as exc:
            raise LinkClosed(f"the relay connection dropped: {exc}") from None

    async def request(self, frame: Frame, timeout: float = REQUEST_TIMEOUT) -> Any:
        """Send ``frame`` as a request; the ``data`` of its reply."""
        request_id = f"n{next(self._ids)}"
        frame = frame.model_copy(update={"id": request_id})
        answer_in, answer_out = anyio.create_memory_object_stream[Frame](1)
        self._pending[request_id] = answer_in
        try:
            await self.send(frame)
            with anyio.fail_after(timeout):
                try:
                    answer = await answer_out.receive()
                except anyio.EndOfStream:
                    raise LinkClosed("the relay connection dropped before the reply") from None
        finally:
            self._pending.pop(request_id, None)
            answer_out.close()
        if isinstance(answer, Error):
            raise RelayRefused(answer.code, answer.message)
        return answer.data if isinstance(answer, Reply) else None

    # -- the connection ----------------------------------------------------------------------

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Stay connected until cancelled; reports started at the first registration.
        A refused key (HTTP 401/403) or a refused registration is fatal: it raises."""
        failures = 0
        self._task_status: anyio.abc.TaskStatus[None] | None = task_status
        while True:
            try:
                async with connect(
                    self.url, max_size=16 << 20, open_timeout=10, ping_interval=None
                ) as ws:
                    self._ws = ws
                    await self._session(ws)
                    failures = 0
            except InvalidStatus as exc:
                raise RelayRefused(
                    "unauthorized",
                    f"the relay refused the workspace key (HTTP {exc.response.status_code})",
                ) from None
            except (OSError, ConnectionClosed, LinkClosed, TimeoutError) as exc:
                self.log.info("relay_link_down", reason=str(exc) or type(exc).__name__)
            finally:
                self._drop()
            failures += 1
            delay = min(BACKOFF_FIRST * 2 ** (failures - 1), BACKOFF_MAX)
            await anyio.sleep(delay * random.uniform(0.5, 1.0))  # backoff, not synchronization

    async def _session(self, ws: ClientConnection) -> None:
        with collapse_single():
            await self._registered(ws)

    async def _registered(self, ws: ClientConnection) -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._read, ws, tg.cancel_scope)
            register = NodeRegister(
                name=self.name, capabilities=self._capabilities(), max_agents=self._max_agents,
                version=f"agent-relay-runtime/{__version__}",
            )  # fmt: skip
            self.registration = await self.request(register) or {}
            self.connects += 1
            if self._on_connected is not None:
                await self._on_connected()
            self.connected.set()
            self.log.info("relay_link_up", url=self.url.split("?")[0], connects=self.connects)
            if self._task_status is not None:
                self._task_status.started()
                self._task_status = None
            while True:
                await anyio.sleep(HEARTBEAT_EVERY)  # the heartbeat period
                await self.send(NodeHeartbeat(name=self.name))

    async def _read(self, ws: ClientConnection, scope: anyio.CancelScope) -> None:
        try:
            while True:
                with anyio.fail_after(DEAD_AFTER):
                    raw = await ws.recv()
                try:
                    frame = decode(raw)
                except WireError as exc:
                    self.log.warning("relay_frame_refused", code=exc.code, reason=exc.message)
                    continue
                if isinstance(frame, (Reply, Error)) and frame.id in self._pending:
                    await self._pending[frame.id].send(frame)
                elif isinstance(frame, Ping):
                    await self.send(Pong(id=frame.id))
                elif isinstance(frame, Error):
                    self.log.warning("relay_error", code=frame.code, reason=frame.message)
                elif not isinstance(frame, (Reply, Pong)):
                    await self._handler(frame)
        except (ConnectionClosed, TimeoutError) as exc:
            self.log.info("relay_link_lost", reason=str(exc) or "no frame for 48 s")
        finally:
            scope.cancel()

    def _drop(self) -> None:
        self._ws = None
        self.connected = anyio.Event()
        for stream in self._pending.values():
            with contextlib.suppress(Exception):
                stream.close()
        self._pending.clear()

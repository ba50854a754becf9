"""OpenCode headless: ``opencode serve`` on a loopback port, driven over HTTP and SSE
(see `OpenCodeChannel`).

- The driver starts ``opencode serve --port P --hostname 127.0.0.1`` with a random
  server password (Basic auth), or attaches to a server that already runs (endpoint +
  password) without owning it: release then only aborts and detaches.
- Readiness: ``/global/health`` answers, a session is open (``POST /session``, or the one
  to resume), and the ``/event`` stream is connected.
- Delivery: ``POST /session/:id/prompt_async``; the evidence is the server's ``204``.
  Steer aborts the running turn first (``/abort``).
- Busy/idle: ``session.status`` busy/idle (protocol signal).
- Events: text and reasoning parts → transcript, tool parts → tool.* (bash also
  command.*), ``file.edited`` → file.changed, ``step-finish`` → usage,
  ``permission.asked`` → the session's approval policy.
- The event stream can drop or stall: it is reconnected with backoff and the session is
  reconciled (status and message list) so that nothing is missed or reported twice.
"""

from __future__ import annotations

import contextlib
import secrets
import signal
import socket
from pathlib import Path

import anyio
import httpx
from anyio.abc import TaskGroup, TaskStatus

from ..aio import CallbackStatus, wait_any
from ..contract import (
    Capabilities,
    DeliveryMode,
    Evidence,
    Fidelity,
    RelayMessage,
    SessionMode,
    SessionState,
    SignalSource,
)
from ..events import (
    ProtocolError,
)
from ..exceptions import TransportClosed
from ..logs import get_logger
from ..transports.process import ProcessHandle
from ..transports.stdio import StdioTransport
from .base import Driver, SessionPort
from .opencode_channel import OpenCodeChannel

__all__ = ["OpenCodeServerDriver", "free_loopback_port"]

P = SignalSource.PROTOCOL
S = SessionState
_EXACT_EVENTS = (
    "transcript.chunk",
    "tool.called",
    "tool.completed",
    "tool.failed",
    "tool.approval.requested",
    "file.changed",
    "command.started",
    "command.completed",
    "usage.updated",
    "turn.started",
    "turn.completed",
)
_LOST_AFTER = 30.0  # an attached server unreachable this long ends the session


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class OpenCodeServerDriver(Driver):
    harness = "opencode"
    mode = SessionMode.HEADLESS
    capabilities = Capabilities(
        delivery_modes=(DeliveryMode.WAIT, DeliveryMode.STEER, DeliveryMode.IMMEDIATE),
        events=dict.fromkeys(_EXACT_EVENTS, Fidelity.EXACT),
        idle_signal=SignalSource.PROTOCOL,
        resumable=True,
    )

    def __init__(
        self,
        *,
        cwd: Path,
        env: dict[str, str],
        executable: str | None = None,
        endpoint: str | None = None,
        password: str | None = None,
        username: str = "opencode",
        model: str | None = None,
        resume: str | None = None,
        args: list[str] | None = None,
    ) -> None:
        self.owned = endpoint is None
        self.resume = resume
        self.model = model
        self.username = username
        self._transport: StdioTransport | None = None
        if self.owned:
            assert executable is not None
            port = free_loopback_port()
            password = password or secrets.token_urlsafe(24)
            self.base_url = f"http://127.0.0.1:{port}"
            self.argv = [executable, "serve", "--port", str(port), "--hostname", "127.0.0.1"]
            self.argv += list(args or [])
            env = {
                **env,
                "OPENCODE_SERVER_PASSWORD": password,
                "OPENCODE_SERVER_USERNAME": username,
            }
            self._transport = StdioTransport(self.argv, cwd=cwd, env=env, on_message=None)
        else:
            assert endpoint is not None
            self.base_url = endpoint.rstrip("/")
            self.argv = []
        self.password = password
        self._channel: OpenCodeChannel | None = None
        self._detached = anyio.Event()
        self._log = get_logger(harness=self.harness)

    @property
    def process(self) -> ProcessHandle | None:
        return self._transport.handle if self._transport else None

    @property
    def session_id(self) -> str | None:
        return self._channel.session_id if self._channel else None

    def logs(self) -> bytes:
        if self._transport is None:
            return b""
        return self._transport.stdout.bytes() + self._transport.stderr.bytes()

    def failure_detail(self) -> str | None:
        if self._channel and self._channel.lost_reason:
            return self._channel.lost_reason
        return self.logs().decode("utf-8", "replace").strip()[-2000:] or None

    # -- life ------------------------------------------------------------------------------

    async def run(
        self, port: SessionPort, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        self._log = self._log.bind(session=port.name)
        channel = OpenCodeChannel(
            base_url=self.base_url,
            password=self.password,
            username=self.username,
            port=port,
            log=self._log,
            give_up_after=None if self.owned else _LOST_AFTER,
        )
        self._channel = channel
        try:
            async with anyio.create_task_group() as tg:
                if self._transport is not None:

                    def spawned() -> None:
                        task_status.started()
                        tg.start_soon(self._open, channel, tg)

                    await self._transport.run(task_status=CallbackStatus(spawned))
                else:
                    task_status.started()
                    tg.start_soon(self._open, channel, tg)
                    await wait_any(self._detached, channel.lost)
                tg.cancel_scope.cancel()
            if channel.lost_reason and not self.owned:
                raise TransportClosed(channel.lost_reason)
        finally:
            with anyio.CancelScope(shield=True):
                await channel.aclose()

    async def _open(self, channel: OpenCodeChannel, tg: TaskGroup) -> None:
        port = channel.port
        await channel.wait_healthy()
        try:
            session_id = await channel.open_session(self.resume)
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            port.emit(ProtocolError, reason=f"opencode: cannot open a session: {exc}")
            return  # the ready timeout ends the session with this on record
        tg.start_soon(channel.follow, tg)
        await channel.connected.wait()
        await channel.reconcile()
        port.set_state(S.READY, f"session {session_id} open", P)

    async def graceful_exit(self) -> None:
        channel = self._require_channel()
        if channel.session_id and channel.port.state in (S.BUSY, S.BLOCKED):
            await channel.abort()  # a tool must not be orphaned by the signal below
        if self._transport is not None and self._transport.handle is not None:
            # `opencode serve` has no goodbye of its own: SIGTERM (after the abort) is it.
            self._transport.handle.signal(signal.SIGTERM)
        else:
            self._detached.set()

    # -- delivery ------------------------------------------------------------------------------

    async def inject(self, message: RelayMessage, mode: DeliveryMode) -> Evidence:
        channel = self._require_channel()
        port = channel.port
        if mode == DeliveryMode.STEER and port.state == S.BUSY:
            await channel.abort()
            with contextlib.suppress(TimeoutError):
                # Still busy after that: the prompt waits behind the turn (OpenCode queues).
                await port.wait_state(lambda s: s != S.BUSY, 10.0)
        return await channel.prompt(message.render(), self.model)

    def _require_channel(self) -> OpenCodeChannel:
        assert self._channel is not None, "driver not running"
        return self._channel

"""A client of the OpenClaw gateway's WebSocket protocol (version 4).

Frames are JSON text: requests ``{type: "req", id, method, params}``, responses ``{type:
"res", id, ok, payload | error}``, events ``{type: "event", event, payload, seq}``. The
server opens with a ``connect.challenge`` event; the first request must be ``connect``
(token auth over loopback needs no device identity). Some requests are answered twice:
``agent`` gets "accepted" at once and its result when the run ends, under the same id;
a second answer goes to ``on_late_response``. Facts: fixtures/fake_agents/OPENCLAW.md.
"""

from __future__ import annotations

import itertools
import json
import platform
from collections.abc import Callable
from typing import Any

import anyio
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from .. import __version__

__all__ = ["GatewayClient", "GatewayClosed", "GatewayError", "GatewayRefused"]

# The gateway sends an exec approval only to a client that both declares it answers them
# (cap exec-approvals) and may see the approval record, which for a run another
# connection started takes operator.admin. Without such a client (or a Control UI or a
# phone app) it has no route for the approval and denies the command at once ("Headless
# runs cannot wait for interactive exec approval"). tool-events: a run's tool stream.
OPERATOR_SCOPES = ("operator.read", "operator.write", "operator.approvals", "operator.admin")
OPERATOR_CAPS = ("tool-events", "exec-approvals")
PROTOCOL = 4
_MAX_FRAME = 32 * 1024 * 1024  # the gateway's own maxPayload is 25 MiB


class GatewayError(Exception):
    """The gateway answered a request with ``ok: false``."""

    def __init__(self, method: str, error: dict[str, Any]) -> None:
        self.code = str(error.get("code", "ERROR"))
        self.details = error.get("details") or {}
        self.message = str(error.get("message", "no message"))
        super().__init__(f"{method}: {self.code} {self.message}")


class GatewayClosed(Exception):
    """The connection is gone (or never opened); ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class GatewayRefused(GatewayClosed):
    """The gateway refused the handshake (a wrong token, a protocol it does not speak)."""


class _Pending:
    def __init__(self, method: str) -> None:
        self.method = method
        self.done = anyio.Event()
        self.frame: dict[str, Any] | None = None


class GatewayClient:
    """One operator connection. `connect`, then run `read` in a task until it returns."""

    def __init__(
        self,
        url: str,
        token: str | None,
        *,
        on_event: Callable[[str, dict[str, Any]], None],
        on_late_response: Callable[[str, dict[str, Any]], None],
        on_bad_frame: Callable[[str], None],
        caps: tuple[str, ...] = OPERATOR_CAPS,
        scopes: tuple[str, ...] = OPERATOR_SCOPES,
    ) -> None:
        self.url = url
        self.token = token
        self.caps = caps
        self.scopes = scopes
        self.hello: dict[str, Any] = {}
        self._on_event = on_event
        self._on_late_response = on_late_response
        self._on_bad_frame = on_bad_frame
        self._ws: ClientConnection | None = None
        self._ids = (f"r{n}" for n in itertools.count(1))
        self._pending: dict[str, _Pending] = {}
        self._closed: GatewayClosed | None = None

    async def connect(self, timeout: float = 30.0) -> dict[str, Any]:
        """Open the socket and shake hands; return ``hello-ok``.

        Raises `GatewayRefused` when the gateway says no, else `GatewayClosed`.
        """
        try:
            with anyio.fail_after(timeout):
                self._ws = await connect(
                    self.url, max_size=_MAX_FRAME, open_timeout=None, compression=None
                )
                challenge = await self._receive_frame()
                if challenge.get("event") != "connect.challenge":
                    raise GatewayClosed(f"openclaw gateway opened without a challenge: {challenge}")
                request_id = next(self._ids)
                await self._send(
                    {"type": "req", "id": request_id, "method": "connect", "params": self._hello()}
                )
                answer = await self._receive_frame()
        except TimeoutError:
            await self.aclose()
            raise GatewayClosed(f"openclaw gateway at {self.url} did not shake hands") from None
        except (OSError, ValueError, InvalidHandshake, InvalidURI, ConnectionClosed) as exc:
            await self.aclose()
            reason = f"cannot connect to the openclaw gateway at {self.url}: {exc}"
            raise GatewayClosed(reason) from exc
        if not answer.get("ok"):
            await self.aclose()
            error = GatewayError("connect", answer.get("error") or {})
            raise GatewayRefused(f"the openclaw gateway refused the connection: {error.message}")
        self.hello = dict(answer.get("payload") or {})
        return self.hello

    def _hello(self) -> dict[str, Any]:
        client = {"id": "gateway-client", "version": __version__, "mode": "backend",
                  "platform": platform.system().lower()}  # fmt: skip
        auth = {"token": self.token} if self.token else {}
        return {"minProtocol": PROTOCOL, "maxProtocol": PROTOCOL, "client": client,
                "role": "operator", "scopes": list(self.scopes), "caps": list(self.caps),
                "auth": auth}  # fmt: skip

    async def read(self) -> GatewayClosed:
        """Dispatch frames until the connection closes; return why it closed."""
        ws = self._require()
        try:
            async for raw in ws:
                self._dispatch(raw)
            reason = f"the openclaw gateway closed the connection ({_close_reason(ws)})"
        except ConnectionClosed as exc:
            reason = f"the openclaw gateway connection dropped ({exc})"
        self._closed = GatewayClosed(reason)
        for pending in self._pending.values():
            pending.done.set()  # their requests raise GatewayClosed
        return self._closed

    async def request(self, method: str, params: dict[str, Any], timeout: float) -> Any:
        """Send a request and return its (first) answer's payload.

        Raises `GatewayError` (refused), `GatewayClosed`, or TimeoutError.
        """
        request_id = next(self._ids)
        pending = _Pending(method)
        self._pending[request_id] = pending
        try:
            await self._send({"type": "req", "id": request_id, "method": method, "params": params})
            with anyio.fail_after(timeout):
                await pending.done.wait()
        finally:
            self._pending.pop(request_id, None)
        if pending.frame is None:
            raise self._closed or GatewayClosed("the openclaw gateway connection closed")
        if not pending.frame.get("ok"):
            raise GatewayError(method, pending.frame.get("error") or {})
        return pending.frame.get("payload")

    async def aclose(self) -> None:
        if self._ws is not None:
            await self._ws.close()

    # -- frames ----------------------------------------------------------------------------

    def _dispatch(self, raw: str | bytes) -> None:
        try:
            frame = json.loads(raw)
        except ValueError:
            self._on_bad_frame(f"openclaw sent a frame that is not JSON: {str(raw)[:200]}")
            return
        if not isinstance(frame, dict):
            self._on_bad_frame(f"openclaw sent a frame that is not an object: {str(raw)[:200]}")
            return
        kind = frame.get("type")
        if kind == "event":
            payload = frame.get("payload")
            self._on_event(str(frame.get("event")), payload if isinstance(payload, dict) else {})
        elif kind == "res":
            request_id = str(frame.get("id"))
            pending = self._pending.get(request_id)
            if pending is not None and pending.frame is None:
                pending.frame = frame
                pending.done.set()
            else:
                self._on_late_response(request_id, frame)
        else:
            self._on_bad_frame(f"openclaw sent a frame of unknown type {kind!r}")

    async def _send(self, frame: dict[str, Any]) -> None:
        if self._closed is not None:
            raise self._closed
        try:
            await self._require().send(json.dumps(frame))
        except ConnectionClosed as exc:
            raise GatewayClosed(f"the openclaw gateway connection closed ({exc})") from exc

    async def _receive_frame(self) -> dict[str, Any]:
        raw = await self._require().recv()
        frame = json.loads(raw)
        if not isinstance(frame, dict):
            raise GatewayClosed(f"openclaw sent a frame that is not an object: {str(raw)[:200]}")
        return frame

    def _require(self) -> ClientConnection:
        if self._ws is None:
            raise GatewayClosed("not connected to the openclaw gateway")
        return self._ws


def _close_reason(ws: ClientConnection) -> str:
    if ws.close_code is None:
        return "no close frame"
    return f"code {ws.close_code}" + (f", {ws.close_reason}" if ws.close_reason else "")

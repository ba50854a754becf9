"""JSON-RPC 2.0 over any message transport (one JSON object per message).

Codex's app-server omits the ``"jsonrpc": "2.0"`` field; ACP includes it: ``version``
chooses. Responses are matched to requests by id; notifications go to a synchronous
callback (it must not block); requests from the peer run as tasks whose return value
(or `JsonRpcError`) becomes the response.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from anyio.abc import TaskGroup

from ..exceptions import TransportError

__all__ = ["JsonRpcError", "JsonRpcPeer"]

Send = Callable[[dict[str, Any]], Awaitable[None]]
OnNotification = Callable[[str, dict[str, Any]], None]
OnRequest = Callable[[str, dict[str, Any]], Awaitable[Any]]

METHOD_NOT_FOUND = -32601
INTERNAL_ERROR = -32603


class JsonRpcError(TransportError):
    """An error response (from the peer, or for the peer)."""

    code = "jsonrpc_error"

    def __init__(self, rpc_code: int, message: str, data: Any = None) -> None:
        super().__init__(f"{message} (JSON-RPC {rpc_code})")
        self.rpc_code = rpc_code
        self.rpc_message = message
        self.data = data


class JsonRpcPeer:
    def __init__(
        self,
        send: Send,
        *,
        on_notification: OnNotification,
        on_request: OnRequest,
        version: str | None = None,
    ) -> None:
        self._send = send
        self._on_notification = on_notification
        self._on_request = on_request
        self._version = version
        self._ids = itertools.count(1)
        self._waiting: dict[int | str, tuple[anyio.Event, list[dict[str, Any]]]] = {}
        self._tg: TaskGroup | None = None

    def bind(self, tg: TaskGroup) -> None:
        """The task group that runs handlers of the peer's requests."""
        self._tg = tg

    def _frame(self, **fields: Any) -> dict[str, Any]:
        return {"jsonrpc": self._version, **fields} if self._version else fields

    async def request(
        self, method: str, params: dict[str, Any] | None = None, timeout: float | None = None
    ) -> Any:
        """Call ``method``; its result, or `JsonRpcError`; TimeoutError after ``timeout``."""
        request_id = next(self._ids)
        done = anyio.Event()
        box: list[dict[str, Any]] = []
        self._waiting[request_id] = (done, box)
        try:
            await self._send(self._frame(id=request_id, method=method, params=params or {}))
            with anyio.fail_after(timeout):
                await done.wait()
        finally:
            self._waiting.pop(request_id, None)
        reply = box[0]
        if "error" in reply:
            error = reply["error"] or {}
            raise JsonRpcError(
                int(error.get("code", INTERNAL_ERROR)),
                str(error.get("message", "error")),
                error.get("data"),
            )
        return reply.get("result")

    async def notify(self, method: str, params: dict[str, Any] | None = None) -> None:
        frame = self._frame(method=method)
        if params is not None:
            frame["params"] = params
        await self._send(frame)

    def feed(self, message: dict[str, Any]) -> None:
        """Take one incoming message (call from the transport's reader)."""
        method = message.get("method")
        if method is None:
            waiting = self._waiting.get(message.get("id"))  # type: ignore[arg-type]
            if waiting is not None:
                waiting[1].append(message)
                waiting[0].set()
            return
        params = message.get("params") or {}
        if "id" not in message:
            self._on_notification(str(method), params)
            return
        assert self._tg is not None, "JsonRpcPeer.bind() was not called"
        self._tg.start_soon(self._answer, message["id"], str(method), params)

    async def _answer(self, request_id: Any, method: str, params: dict[str, Any]) -> None:
        try:
            result = await self._on_request(method, params)
            reply = self._frame(id=request_id, result=result)
        except JsonRpcError as exc:
            reply = self._frame(
                id=request_id, error={"code": exc.rpc_code, "message": exc.rpc_message}
            )
        except Exception as exc:
            reply = self._frame(id=request_id, error={"code": INTERNAL_ERROR, "message": str(exc)})
        with contextlib.suppress(TransportError):  # the peer is gone; nobody waits
            await self._send(reply)

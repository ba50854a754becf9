"""A loopback HTTP endpoint where agent CLIs report to the runtime (Claude Code's http
hooks, notifier commands).

Each registration gets its own unguessable URL (the token in the path is the only
credential a CLI can carry in a hook definition); a POST to it with a JSON body calls
the registered handler, whose return value (a JSON object, or None for ``{}``) is the
HTTP response. The server starts on first use and lives in the runtime's task group.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import socket
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import anyio
import uvicorn
from anyio.abc import TaskGroup
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..logs import get_logger

__all__ = ["CallbackHandler", "CallbackServer"]

CallbackHandler = Callable[[dict[str, Any]], Awaitable[dict[str, Any] | None]]


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = anyio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # the daemon owns signals

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.ready.set()


class CallbackServer:
    def __init__(self) -> None:
        self._handlers: dict[str, CallbackHandler] = {}
        self._server: _Server | None = None
        self._lock = anyio.Lock()
        self.url: str | None = None
        self._log = get_logger()

    async def register(
        self, tg: TaskGroup, handler: CallbackHandler
    ) -> tuple[str, Callable[[], None]]:
        """A URL that calls ``handler``, and a function that retires it."""
        await self._ensure_started(tg)
        token = secrets.token_urlsafe(24)
        self._handlers[token] = handler

        def unregister() -> None:
            self._handlers.pop(token, None)

        return f"{self.url}/cb/{token}", unregister

    def close(self) -> None:
        if self._server is not None:
            self._server.should_exit = True

    async def _ensure_started(self, tg: TaskGroup) -> None:
        async with self._lock:
            if self._server is not None:
                return
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
            sock.bind(("127.0.0.1", 0))
            sock.listen(128)
            app = Starlette(routes=[Route("/cb/{token}", self._receive, methods=["POST"])])
            config = uvicorn.Config(
                app, log_config=None, access_log=False, lifespan="off", timeout_graceful_shutdown=1
            )
            self._server = _Server(config)
            tg.start_soon(self._server.serve, [sock])
            await self._server.ready.wait()
            self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"

    async def _receive(self, request: Request) -> Response:
        handler = self._handlers.get(request.path_params["token"])
        if handler is None:
            return JSONResponse({"error": "unknown callback"}, status_code=404)
        try:
            payload = json.loads(await request.body() or b"{}")
        except ValueError:
            return JSONResponse({"error": "body is not JSON"}, status_code=400)
        if not isinstance(payload, dict):
            return JSONResponse({"error": "body is not a JSON object"}, status_code=400)
        try:
            answer = await handler(payload)
        except Exception:
            self._log.exception("callback_handler_failed")
            return JSONResponse({}, status_code=500)
        return JSONResponse(answer or {})

"""The workspace's event log: read a page, follow it as Server-Sent Events, or over a
WebSocket; every way resumes from a cursor (the ``seq`` of the last event seen).

Filters: ``types`` (comma-separated; ``action.*`` is a prefix), ``agent`` (a name),
``action``. A reader waits on the store's commit notifier, never polls: no gap (events
are read from the log, in seq order, after the cursor) and no duplicate (the cursor only
moves forward).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import anyio
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from ..store import EventRecord, Store
from .kit import Api, ApiError, Caller, failure, ok

__all__ = ["routes"]

KEEPALIVE = 15.0
PAGE = 500


class Subscription:
    """Where a reader is in the log, and what it wants of it."""

    def __init__(self, store: Store, workspace_id: str, connection: HTTPConnection) -> None:
        query = connection.query_params
        raw = connection.headers.get("last-event-id") or query.get("cursor") or "0"
        if not raw.isdigit():
            raise ApiError(400, "invalid_request", f"cursor: a number, not {raw!r}")
        self.store, self.workspace_id, self.cursor = store, workspace_id, int(raw)
        self.types = [t.strip() for t in (query.get("types") or "").split(",") if t.strip()]
        self.agent, self.action = query.get("agent"), query.get("action")

    async def page(self) -> list[EventRecord]:
        found, self.cursor = await self.store.events_after(
            self.workspace_id, self.cursor, PAGE, types=self.types, agent=self.agent,
            action=self.action,
        )  # fmt: skip
        return found

    async def follow(self) -> AsyncIterator[list[EventRecord]]:
        """Pages as they come; an empty page every `KEEPALIVE` s of silence."""
        while True:
            waiter = self.store.committed.waiter()  # before reading: no commit is missed
            found = await self.page()
            if found:
                yield found
                continue
            with anyio.move_on_after(KEEPALIVE):
                await waiter.wait()
                continue
            yield []


def routes(api: Api) -> list[Route | WebSocketRoute]:
    async def events(request: Request) -> Response:
        try:
            caller = await _caller(api, request)
            subscription = Subscription(api.store, caller.workspace.id, request)
        except ApiError as exc:
            return failure(exc.status, exc.code, exc.message)
        wants_stream = "text/event-stream" in request.headers.get("accept", "")
        if not wants_stream and request.query_params.get("follow") not in ("1", "true"):
            found = await subscription.page()
            data = {"events": [e.model_dump() for e in found], "cursor": subscription.cursor}
            return ok(data)
        return StreamingResponse(
            _sse(subscription),
            media_type="text/event-stream",
            headers={"cache-control": "no-store", "x-accel-buffering": "no"},
        )

    async def socket(websocket: WebSocket) -> None:
        try:
            caller = await _caller(api, websocket)
            subscription = Subscription(api.store, caller.workspace.id, websocket)
        except ApiError:
            await websocket.close(code=1008)
            return
        await websocket.accept()
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(_drain, websocket, tg.cancel_scope)
                async for found in subscription.follow():
                    for event in found:
                        await websocket.send_text(json.dumps(event.model_dump()))
                    if not found:
                        await websocket.send_text('{"type":"keepalive"}')
        except WebSocketDisconnect:
            return

    return [
        Route("/v1/events", events, methods=["GET"]),
        WebSocketRoute("/v1/events/ws", socket),
    ]


async def _caller(api: Api, connection: HTTPConnection) -> Caller:
    scheme, _, bearer = connection.headers.get("authorization", "").partition(" ")
    token = bearer if scheme.lower() == "bearer" else connection.query_params.get("token")
    return await api.caller_of(token)


async def _sse(subscription: Subscription) -> AsyncIterator[str]:
    async for found in subscription.follow():
        if not found:
            yield ": keepalive\n\n"
        for event in found:
            data = json.dumps(event.model_dump())
            yield f"id: {event.seq}\nevent: {event.type}\ndata: {data}\n\n"


async def _drain(websocket: WebSocket, scope: anyio.CancelScope) -> None:
    """Read (and ignore) what the client sends, to notice when it goes."""
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
    finally:
        scope.cancel()

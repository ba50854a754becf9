"""Watches: ask to be told once when an agent is idle or takes a delivery (see
`relay.watches` for when one fires and what the notice is).

- ``POST /v1/watches`` ``{"agent", "on": "idle"|"delivered", "message_id"?}`` → 201, the
  watch. An agent's watch notifies that agent; a workspace-key caller names the agent to
  notify in ``notify`` (which an agent may not give). 404 for an unknown agent, or a
  message the agent has no delivery of.
- ``GET /v1/watches``: the caller's pending watches (a workspace-key caller: all of the
  workspace's).
- ``DELETE /v1/watches/{id}``: cancel a pending watch (404 if it fired or is not the
  caller's).

A watch as answered: ``{watch_id, agent, on, message_id?, notify, created_at}``.
"""

from __future__ import annotations

from typing import Any, Literal

from starlette.requests import Request
from starlette.routing import Route

from ..store import Agent, Watch
from ..watches import WatchService
from .kit import Api, ApiError, Body, Caller

__all__ = ["routes", "watch_view"]


class NewWatch(Body):
    agent: str
    on: Literal["idle", "delivered"]
    message_id: str | None = None
    notify: str | None = None


def watch_view(watch: Watch) -> dict[str, Any]:
    view: dict[str, Any] = {"watch_id": watch.id, "agent": watch.agent_name, "on": watch.on}
    if watch.message_id is not None:
        view["message_id"] = watch.message_id
    return {**view, "notify": watch.watcher_name, "created_at": watch.created_at}


def routes(api: Api, service: WatchService) -> list[Route]:
    store = api.store

    async def watcher_of(caller: Caller, notify: str | None) -> Agent:
        """Who the watch notifies: the calling agent, or the one a workspace key names."""
        if caller.agent is not None:
            if notify is not None:
                raise ApiError(
                    400, "invalid_request",
                    "notify: only a workspace-key caller names who is notified; an agent's"
                    " watch notifies that agent",
                )  # fmt: skip
            return caller.agent
        if notify is None:
            raise ApiError(
                400, "invalid_request", "notify: a workspace-key caller names the agent to notify"
            )
        return await api.agent_named(caller, notify)

    async def create(request: Request, caller: Caller) -> Any:
        body = await api.body_of(request, NewWatch)
        if body.message_id is not None and body.on != "delivered":
            raise ApiError(400, "invalid_request", 'message_id: only with "on": "delivered"')
        watcher = await watcher_of(caller, body.notify)
        agent = await api.agent_named(caller, body.agent)
        if body.message_id is not None:
            message = await api.message_named(caller, body.message_id)
            if await store.delivery_of(agent.id, message.id) is None:
                raise ApiError(
                    404, "delivery_not_found", f"{agent.name} has no delivery of {message.id!r}"
                )
        watch = await service.watch(
            caller.workspace.id, watcher.id, agent.id, body.on, body.message_id
        )
        return watch_view(watch)

    async def pending(request: Request, caller: Caller) -> Any:
        watcher_id = caller.agent.id if caller.agent is not None else None
        return [watch_view(w) for w in await store.list_watches(caller.workspace.id, watcher_id)]

    async def cancel(request: Request, caller: Caller) -> Any:
        watch_id = request.path_params["id"]
        watch = await store.watch_by_id(watch_id)
        mine = watch is not None and watch.workspace_id == caller.workspace.id
        if caller.agent is not None:
            mine = mine and watch is not None and watch.watcher_id == caller.agent.id
        # Fired meanwhile counts as gone too.
        if not mine or not await store.cancel_watch(watch_id):
            raise ApiError(404, "watch_not_found", f"no pending watch {watch_id!r}")
        return {"watch_id": watch_id, "cancelled": True}

    endpoint = api.endpoint
    return [
        Route("/v1/watches", endpoint(create, 201), methods=["POST"]),
        Route("/v1/watches", endpoint(pending), methods=["GET"]),
        Route("/v1/watches/{id}", endpoint(cancel), methods=["DELETE"]),
    ]

"""Channels: create, list, get, join, members."""

from __future__ import annotations

import re
from typing import Any

from starlette.requests import Request
from starlette.routing import Route

from .kit import Api, ApiError, Body, Caller, channel_view, member_view

__all__ = ["routes"]

CHANNEL_NAME = re.compile(r"[A-Za-z0-9][\w.-]{0,79}")


class CreateChannel(Body):
    name: str
    topic: str | None = None
    metadata: dict[str, Any] | None = None


def routes(api: Api) -> list[Route]:
    store = api.store

    async def create_channel(request: Request, caller: Caller) -> Any:
        agent = api.as_agent(caller)
        body = await api.body_of(request, CreateChannel)
        name = body.name.removeprefix("#")
        if not CHANNEL_NAME.fullmatch(name):
            raise ApiError(400, "invalid_request", f"channel name {name!r}: letters, digits, _ . -")
        channel = await store.create_channel(
            caller.workspace.id, name, topic=body.topic, members=[agent.id], created_by=agent.id
        )
        return channel_view(channel)

    async def list_channels(request: Request, caller: Caller) -> Any:
        archived = request.query_params.get("include_archived") == "true"
        found = await store.list_channels(caller.workspace.id, include_archived=archived)
        return [channel_view(c) for c in found]

    async def get_channel(request: Request, caller: Caller) -> Any:
        channel = await api.channel_named(caller, request.path_params["name"])
        members = await store.channel_members(channel.id)
        return {**channel_view(channel), "members": [member_view(channel, m) for m in members]}

    async def join_channel(request: Request, caller: Caller) -> Any:
        agent = api.as_agent(caller)
        channel = await api.channel_named(caller, request.path_params["name"])
        joined = await store.join_channel(channel.id, agent.id)
        return {"channel": channel.name, "agent_name": agent.name, "joined": joined}

    async def channel_members(request: Request, caller: Caller) -> Any:
        channel = await api.channel_named(caller, request.path_params["name"])
        return [member_view(channel, m) for m in await store.channel_members(channel.id)]

    return [
        Route("/v1/channels", api.endpoint(create_channel, 201), methods=["POST"]),
        Route("/v1/channels", api.endpoint(list_channels), methods=["GET"]),
        Route("/v1/channels/{name}", api.endpoint(get_channel), methods=["GET"]),
        Route("/v1/channels/{name}/join", api.endpoint(join_channel), methods=["POST"]),
        Route("/v1/channels/{name}/members", api.endpoint(channel_members), methods=["GET"]),
    ]

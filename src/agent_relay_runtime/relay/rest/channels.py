"""Channels: create, list, get, join, leave, invite, members, topic and metadata, archive,
mute.

Who may do what: anyone in the workspace reads a channel and joins it; a member invites,
sets the topic or metadata; the channel's creator archives it (any member, if it has no
recorded creator). An archived channel is read-only: no messages, joins, invitations or
changes (409 ``channel_archived``). Muting is per agent, needs no membership and outlives
leaving: a muted channel is left out of the agent's unread channels in the inbox, though
a mention in it still shows (see `sqlite.read_state`). Only conversations of kind
'channel' are reached by name here: DMs are the business of `rest.dms`.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import Field
from starlette.requests import Request
from starlette.routing import Route

from ..store import Agent, Channel, Conflict
from .kit import Api, ApiError, Body, Caller, channel_view, member_view

__all__ = ["MAX_TOPIC", "channel_of", "routes"]

CHANNEL_NAME = re.compile(r"[A-Za-z0-9][\w.-]{0,79}")
MAX_TOPIC = 1000


class CreateChannel(Body):
    name: str
    topic: Annotated[str, Field(max_length=MAX_TOPIC)] | None = None
    metadata: dict[str, Any] | None = None


class Invite(Body):
    agent_name: str


class SetTopic(Body):
    topic: Annotated[str, Field(max_length=MAX_TOPIC)]


class UpdateChannel(Body):
    topic: Annotated[str, Field(max_length=MAX_TOPIC)] | None = None
    metadata: dict[str, Any] | None = None


class Empty(Body):
    """No fields: an empty body, or ``{}``."""


async def channel_of(api: Api, caller: Caller, name: str) -> Channel:
    """The channel (kind 'channel') named ``name``; 404 for anything else."""
    channel = await api.channel_named(caller, name)
    if channel.kind != "channel":
        raise ApiError(404, "channel_not_found", f"no channel named {name!r}")
    return channel


def routes(api: Api) -> list[Route]:
    store = api.store

    async def open_channel(caller: Caller, name: str) -> Channel:
        channel = await channel_of(api, caller, name)
        if channel.archived:
            raise ApiError(409, "channel_archived", f"#{channel.name} is archived")
        return channel

    async def require_member(channel: Channel, agent: Agent) -> None:
        if agent.id not in {m.agent_id for m in await store.channel_members(channel.id)}:
            raise ApiError(403, "not_a_member", f"you are not a member of #{channel.name}")

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
        channel = await channel_of(api, caller, request.path_params["name"])
        members = await store.channel_members(channel.id)
        return {**channel_view(channel), "members": [member_view(channel, m) for m in members]}

    async def join_channel(request: Request, caller: Caller) -> Any:
        agent = api.as_agent(caller)
        await api.body_of(request, Empty)
        channel = await open_channel(caller, request.path_params["name"])
        joined = await store.join_channel(channel.id, agent.id)
        return {"channel": channel.name, "agent_name": agent.name, "joined": joined}

    async def leave_channel(request: Request, caller: Caller) -> Any:
        agent = api.as_agent(caller)
        await api.body_of(request, Empty)
        channel = await channel_of(api, caller, request.path_params["name"])
        left = await store.leave_channel(channel.id, agent.id)
        return {"channel": channel.name, "agent_name": agent.name, "left": left}

    async def invite(request: Request, caller: Caller) -> Any:
        agent = api.as_agent(caller)
        body = await api.body_of(request, Invite)
        channel = await open_channel(caller, request.path_params["name"])
        await require_member(channel, agent)
        invited = await api.agent_named(caller, body.agent_name)
        added = await store.join_channel(channel.id, invited.id)
        return {"channel": channel.name, "agent_name": invited.name, "invited": added}

    async def change(
        caller: Caller, name: str, topic: str | None, metadata: dict[str, Any] | None
    ) -> Any:
        agent = api.as_agent(caller)
        channel = await open_channel(caller, name)
        await require_member(channel, agent)
        try:
            updated = await store.update_channel(channel.id, topic=topic, metadata=metadata)
        except Conflict as exc:  # archived meanwhile
            raise ApiError(409, "channel_archived", str(exc)) from None
        return channel_view(updated)

    async def set_topic(request: Request, caller: Caller) -> Any:
        body = await api.body_of(request, SetTopic)
        return await change(caller, request.path_params["name"], body.topic, None)

    async def update_channel(request: Request, caller: Caller) -> Any:
        body = await api.body_of(request, UpdateChannel)
        return await change(caller, request.path_params["name"], body.topic, body.metadata)

    async def archive(request: Request, caller: Caller) -> Any:
        agent = api.as_agent(caller)
        channel = await channel_of(api, caller, request.path_params["name"])
        if channel.created_by is None:
            await require_member(channel, agent)
        elif channel.created_by != agent.id:
            raise ApiError(
                403, "not_channel_owner", f"only the creator of #{channel.name} archives it"
            )
        archived = await store.archive_channel(channel.id)
        return {"channel": channel.name, "archived": archived}

    async def mute(request: Request, caller: Caller) -> Any:
        return await set_muted(request, caller, True)

    async def unmute(request: Request, caller: Caller) -> Any:
        return await set_muted(request, caller, False)

    async def set_muted(request: Request, caller: Caller, muted: bool) -> Any:
        agent = api.as_agent(caller)
        await api.body_of(request, Empty)
        channel = await channel_of(api, caller, request.path_params["name"])
        changed = await store.set_muted(channel.id, agent.id, muted)
        return {"channel": channel.name, "muted": muted, "changed": changed}

    async def channel_members(request: Request, caller: Caller) -> Any:
        channel = await channel_of(api, caller, request.path_params["name"])
        return [member_view(channel, m) for m in await store.channel_members(channel.id)]

    endpoint = api.endpoint
    return [
        Route("/v1/channels", endpoint(create_channel, 201), methods=["POST"]),
        Route("/v1/channels", endpoint(list_channels), methods=["GET"]),
        Route("/v1/channels/{name}", endpoint(get_channel), methods=["GET"]),
        Route("/v1/channels/{name}", endpoint(update_channel), methods=["PATCH"]),
        Route("/v1/channels/{name}", endpoint(archive), methods=["DELETE"]),
        Route("/v1/channels/{name}/join", endpoint(join_channel), methods=["POST"]),
        Route("/v1/channels/{name}/leave", endpoint(leave_channel), methods=["POST"]),
        Route("/v1/channels/{name}/invite", endpoint(invite), methods=["POST"]),
        Route("/v1/channels/{name}/topic", endpoint(set_topic), methods=["PATCH"]),
        Route("/v1/channels/{name}/mute", endpoint(mute), methods=["POST"]),
        Route("/v1/channels/{name}/unmute", endpoint(unmute), methods=["POST"]),
        Route("/v1/channels/{name}/members", endpoint(channel_members), methods=["GET"]),
    ]

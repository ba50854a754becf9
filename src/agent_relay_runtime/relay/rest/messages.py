"""Messages: post (with durable deliveries), list, get, threads, reactions, read state."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Literal

from starlette.requests import Request
from starlette.routing import Route

from ..store import Conflict
from .files import attachments_of
from .kit import Api, ApiError, Body, Caller

__all__ = ["MAX_TEXT", "PostMessage", "post", "routes"]

MAX_TEXT = 64 * 1024
_MENTION = re.compile(r"(?<![\w@])@([A-Za-z0-9][\w.-]*)")


class PostMessage(Body):
    text: str
    mode: Literal["wait", "steer"] = "wait"
    attachments: list[str] | None = None
    data: dict[str, Any] | None = None


class Reply(Body):
    text: str
    mode: Literal["wait", "steer"] = "wait"
    data: dict[str, Any] | None = None


class React(Body):
    emoji: str


async def post(
    api: Api,
    caller: Caller,
    channel_id: str,
    body: PostMessage | Reply,
    thread_id: str | None = None,
) -> dict[str, Any]:
    """Write a message with one delivery to each member of the conversation and each
    @mentioned agent (never the sender), and answer it as the client sees it.

    An archived conversation takes no message (409). A DM or group DM takes messages from
    its participants only (403) and stays between them: a mention of anyone else is not
    recorded and delivers nothing. Attachments are files the sender can see, complete."""
    store = api.store
    agent = api.as_agent(caller)
    if len(body.text.encode()) > MAX_TEXT:
        raise ApiError(413, "message_too_large", f"text over {MAX_TEXT} bytes")
    channel = await store.channel_by_id(channel_id)
    if channel is None:
        raise ApiError(404, "channel_not_found", f"no channel {channel_id!r}")
    if channel.archived:
        raise ApiError(409, "channel_archived", f"#{channel.name} is archived: no new messages")
    attached = await attachments_of(
        api, caller, body.attachments if isinstance(body, PostMessage) else None
    )
    mentioned: list[str] = []
    for name in dict.fromkeys(_MENTION.findall(body.text)):
        found = await store.agent_by_name(caller.workspace.id, name)
        if found is not None:
            mentioned.append(found.id)
    members = [m.agent_id for m in await store.channel_members(channel_id)]
    if channel.kind != "channel":
        if agent.id not in members:
            raise ApiError(403, "not_a_participant", "you are not in this conversation")
        mentioned = [m for m in mentioned if m in members]
    targets: Sequence[str] = [a for a in dict.fromkeys([*members, *mentioned]) if a != agent.id]
    try:
        # The attachments go in with the message (and in what its deliveries push).
        message, _ = await store.post_message(
            workspace_id=caller.workspace.id, channel_id=channel_id, sender_id=agent.id,
            text=body.text, targets=targets, mode=body.mode, mentions=mentioned,
            metadata=body.data, thread_id=thread_id, attachments=[f.id for f in attached],
        )  # fmt: skip
    except Conflict as exc:  # a file deleted since it was checked
        raise ApiError(409, "file_not_complete", str(exc)) from None
    return await api.message_view(message, body.mode, sender=agent, attachments=attached)


def routes(api: Api) -> list[Route]:
    store = api.store

    async def post_message(request: Request, caller: Caller) -> Any:
        channel = await api.channel_named(caller, request.path_params["name"])
        return await post(api, caller, channel.id, await api.body_of(request, PostMessage))

    async def channel_messages(request: Request, caller: Caller) -> Any:
        channel = await api.channel_named(caller, request.path_params["name"])
        limit, before, after = api.page_of(request)
        found = await store.channel_messages(channel.id, limit=limit, before=before, after=after)
        return [await api.message_view(m) for m in found]

    async def get_message(request: Request, caller: Caller) -> Any:
        return await api.message_view(await api.message_named(caller, request.path_params["id"]))

    async def reply(request: Request, caller: Caller) -> Any:
        parent = await api.message_named(caller, request.path_params["id"])
        body = await api.body_of(request, Reply)
        # A reply to a reply joins the same thread: threads are one level deep.
        return await post(api, caller, parent.channel_id, body, parent.thread_id or parent.id)

    async def thread(request: Request, caller: Caller) -> Any:
        parent = await api.message_named(caller, request.path_params["id"])
        limit, before, after = api.page_of(request)
        replies = await store.thread_replies(parent.id, limit=limit, before=before, after=after)
        return {
            "parent": await api.message_view(parent),
            "replies": [await api.message_view(m) for m in replies],
        }

    async def react(request: Request, caller: Caller) -> Any:
        agent = api.as_agent(caller)
        message = await api.message_named(caller, request.path_params["id"])
        body = await api.body_of(request, React)
        if not 0 < len(body.emoji) <= 64:
            raise ApiError(400, "invalid_request", "emoji: 1 to 64 characters")
        added = await store.react(message.id, agent.id, body.emoji, on=True)
        return {"message_id": message.id, "emoji": body.emoji, "added": added}

    async def unreact(request: Request, caller: Caller) -> Any:
        agent = api.as_agent(caller)
        message = await api.message_named(caller, request.path_params["id"])
        await store.react(message.id, agent.id, request.path_params["emoji"], on=False)

    async def reactions(request: Request, caller: Caller) -> Any:
        message = await api.message_named(caller, request.path_params["id"])
        return [g.model_dump() for g in (await store.message_stats(message.id)).reactions]

    async def mark_read(request: Request, caller: Caller) -> Any:
        agent = api.as_agent(caller)
        message = await api.message_named(caller, request.path_params["id"])
        return {"message_id": message.id, "read_at": await store.mark_read(message.id, agent.id)}

    async def readers(request: Request, caller: Caller) -> Any:
        message = await api.message_named(caller, request.path_params["id"])
        return [r.model_dump() for r in await store.readers(message.id)]

    endpoint = api.endpoint
    return [
        Route("/v1/channels/{name}/messages", endpoint(post_message, 201), methods=["POST"]),
        Route("/v1/channels/{name}/messages", endpoint(channel_messages), methods=["GET"]),
        Route("/v1/messages/{id}", endpoint(get_message), methods=["GET"]),
        Route("/v1/messages/{id}/replies", endpoint(reply, 201), methods=["POST"]),
        Route("/v1/messages/{id}/replies", endpoint(thread), methods=["GET"]),
        Route("/v1/messages/{id}/reactions", endpoint(react, 201), methods=["POST"]),
        Route("/v1/messages/{id}/reactions", endpoint(reactions), methods=["GET"]),
        Route("/v1/messages/{id}/reactions/{emoji}", endpoint(unreact), methods=["DELETE"]),
        Route("/v1/messages/{id}/read", endpoint(mark_read), methods=["POST"]),
        Route("/v1/messages/{id}/readers", endpoint(readers), methods=["GET"]),
    ]

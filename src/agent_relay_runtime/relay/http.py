"""The relay's REST API (relaycast-compatible), as a Starlette app over a `Store`.

Shapes follow what the official client, relaycast-sdk, sends and reads
(docs/relaycast-rest.md): every answer is ``{"ok": true, "data": …}`` or
``{"ok": false, "error": {"code", "message"}}``; a bearer token is either the workspace
key or an agent token (``at_…``), told apart by the token itself; ids and times are
strings. Never a 5xx after a write committed: the SDK retries a 5xx, POSTs included.

Covered so far: the workspace, agent registration and listing, channels (create, list,
get, join, members), channel messages (post with durable deliveries, list, get), threads
(replies), reactions and read state.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .store import (
    Agent,
    Channel,
    Conflict,
    Message,
    MessageStats,
    NotFound,
    Store,
    StoreError,
    Workspace,
)

__all__ = ["ApiError", "relay_app"]

MAX_BODY = 1 << 20
MAX_TEXT = 64 * 1024
_MENTION = re.compile(r"(?<![\w@])@([A-Za-z0-9][\w.-]*)")


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RegisterAgent(_Body):
    name: str
    type: Literal["agent", "human", "system"] = "agent"
    persona: str | None = None
    metadata: dict[str, Any] | None = None


class CreateChannel(_Body):
    name: str
    topic: str | None = None
    metadata: dict[str, Any] | None = None


class PostMessage(_Body):
    text: str
    mode: Literal["wait", "steer"] = "wait"
    attachments: list[str] | None = None
    data: dict[str, Any] | None = None


class Reply(_Body):
    text: str
    mode: Literal["wait", "steer"] = "wait"
    data: dict[str, Any] | None = None


class React(_Body):
    emoji: str


class Caller(BaseModel):
    """Who is asking: the workspace (its key) or one agent (its token)."""

    workspace: Workspace
    agent: Agent | None = None


Handler = Callable[[Request, Caller], Awaitable[Any]]
B = TypeVar("B", bound=_Body)


def ok(data: Any, status: int = 200) -> JSONResponse:
    return JSONResponse({"ok": True, "data": data}, status_code=status)


def failure(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse(
        {"ok": False, "error": {"code": code, "message": message}}, status_code=status
    )


def relay_app(store: Store) -> Starlette:
    """The REST API over ``store``."""

    async def caller_of(request: Request) -> Caller:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "bearer" and token:
            if token.startswith("at_"):
                agent = await store.agent_by_token(token)
                if agent is not None:
                    workspace = await store.workspace_by_id(agent.workspace_id)
                    if workspace is not None:
                        return Caller(workspace=workspace, agent=agent)
            else:
                workspace = await store.workspace_by_key(token)
                if workspace is not None:
                    return Caller(workspace=workspace)
        # The same answer for a missing, malformed, unknown or revoked credential.
        raise ApiError(401, "unauthorized", "a valid workspace key or agent token is required")

    def endpoint(handler: Handler, status: int = 200) -> Callable[[Request], Awaitable[Any]]:
        async def serve(request: Request) -> JSONResponse:
            try:
                caller = await caller_of(request)
                return ok(await handler(request, caller), status)
            except ApiError as exc:
                return failure(exc.status, exc.code, exc.message)
            except NotFound as exc:
                return failure(404, "not_found", str(exc))
            except Conflict as exc:
                return failure(409, "name_conflict", str(exc))
            except StoreError as exc:
                return failure(409, "conflict", str(exc))

        return serve

    # -- helpers --------------------------------------------------------------------------------

    async def body_of(request: Request, model: type[B]) -> B:
        raw = await request.body()
        if len(raw) > MAX_BODY:
            raise ApiError(413, "payload_too_large", f"body of {len(raw)} bytes (limit {MAX_BODY})")
        try:
            data = json.loads(raw) if raw.strip() else {}
        except ValueError as exc:
            raise ApiError(400, "invalid_json", f"the body is not JSON: {exc}") from None
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()
            )
            raise ApiError(400, "invalid_request", problems) from None

    def as_agent(caller: Caller) -> Agent:
        if caller.agent is None:
            raise ApiError(
                403, "agent_token_required", "this endpoint acts as an agent: use its token"
            )
        return caller.agent

    async def channel_named(caller: Caller, name: str) -> Channel:
        channel = await store.channel_by_name(caller.workspace.id, name.removeprefix("#"))
        if channel is None:
            raise ApiError(404, "channel_not_found", f"no channel named {name!r}")
        return channel

    async def message_view(
        message: Message, mode: str | None = None, sender: Agent | None = None
    ) -> dict[str, Any]:
        """The message as clients see it. ``sender`` given means it was just written by
        that agent: nothing to look up (no replies, reactions or readers yet)."""
        stats = MessageStats()
        if sender is None:
            sender = await store.agent_by_id(message.agent_id)
            stats = await store.message_stats(message.id)
        return {
            "id": message.id,
            "channel_id": message.channel_id,
            "agent_id": message.agent_id,
            "agent_name": sender.name if sender else "",
            "text": message.text,
            "blocks": message.blocks,
            "metadata": message.metadata,
            "thread_id": message.thread_id,
            "created_at": message.created_at,
            "attachments": [],
            "reply_count": stats.reply_count,
            "reactions": [group.model_dump() for group in stats.reactions],
            "read_by_count": stats.read_by_count,
            "injection_mode": mode,
        }

    # -- workspace and agents -------------------------------------------------------------------

    async def workspace_info(request: Request, caller: Caller) -> Any:
        return {**workspace_view(caller.workspace)}

    async def register_agent(request: Request, caller: Caller) -> Any:
        if caller.agent is not None:
            raise ApiError(
                403, "workspace_key_required", "registering an agent needs the workspace key"
            )
        body = await body_of(request, RegisterAgent)
        try:
            agent, token = await store.register_agent(
                caller.workspace.id, body.name, kind=body.type, persona=body.persona,
                metadata=body.metadata,
            )  # fmt: skip
        except Conflict as exc:
            raise ApiError(409, "agent_already_exists", str(exc)) from None
        return {
            "id": agent.id, "name": agent.name, "token": token, "status": agent.status,
            "created_at": agent.created_at,
        }  # fmt: skip

    async def list_agents(request: Request, caller: Caller) -> Any:
        return [agent_view(a) for a in await store.list_agents(caller.workspace.id)]

    async def get_agent(request: Request, caller: Caller) -> Any:
        name = request.path_params["name"]
        agent = await store.agent_by_name(caller.workspace.id, name)
        if agent is None:
            raise ApiError(404, "agent_not_found", f"no agent named {name!r}")
        return agent_view(agent)

    async def me(request: Request, caller: Caller) -> Any:
        return agent_view(as_agent(caller))

    # -- channels and messages ----------------------------------------------------------------

    async def create_channel(request: Request, caller: Caller) -> Any:
        agent = as_agent(caller)
        body = await body_of(request, CreateChannel)
        name = body.name.removeprefix("#")
        if not re.fullmatch(r"[A-Za-z0-9][\w.-]{0,79}", name):
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
        channel = await channel_named(caller, request.path_params["name"])
        members = await store.channel_members(channel.id)
        return {**channel_view(channel), "members": [member_view(channel, m) for m in members]}

    async def join_channel(request: Request, caller: Caller) -> Any:
        agent = as_agent(caller)
        channel = await channel_named(caller, request.path_params["name"])
        joined = await store.join_channel(channel.id, agent.id)
        return {"channel": channel.name, "agent_name": agent.name, "joined": joined}

    async def channel_members(request: Request, caller: Caller) -> Any:
        channel = await channel_named(caller, request.path_params["name"])
        return [member_view(channel, m) for m in await store.channel_members(channel.id)]

    async def send(
        caller: Caller,
        channel_id: str,
        body: PostMessage | Reply,
        thread_id: str | None = None,
    ) -> dict[str, Any]:
        """Write a message with one delivery to each member and each @mentioned agent
        (not the sender), and answer it as the client sees it."""
        agent = as_agent(caller)
        if len(body.text.encode()) > MAX_TEXT:
            raise ApiError(413, "message_too_large", f"text over {MAX_TEXT} bytes")
        if isinstance(body, PostMessage) and body.attachments:
            raise ApiError(400, "invalid_request", "attachments are not supported yet")
        mentioned = []
        for name in dict.fromkeys(_MENTION.findall(body.text)):
            found = await store.agent_by_name(caller.workspace.id, name)
            if found is not None:
                mentioned.append(found.id)
        members = [m.agent_id for m in await store.channel_members(channel_id)]
        targets = [a for a in dict.fromkeys([*members, *mentioned]) if a != agent.id]
        message, _ = await store.post_message(
            workspace_id=caller.workspace.id, channel_id=channel_id, sender_id=agent.id,
            text=body.text, targets=targets, mode=body.mode, mentions=mentioned,
            metadata=body.data, thread_id=thread_id,
        )  # fmt: skip
        return await message_view(message, body.mode, sender=agent)

    async def post_message(request: Request, caller: Caller) -> Any:
        channel = await channel_named(caller, request.path_params["name"])
        return await send(caller, channel.id, await body_of(request, PostMessage))

    async def message_named(caller: Caller, message_id: str) -> Message:
        message = await store.message(message_id)
        if message is None or message.workspace_id != caller.workspace.id:
            raise ApiError(404, "message_not_found", f"no message {message_id!r}")
        return message

    async def reply(request: Request, caller: Caller) -> Any:
        parent = await message_named(caller, request.path_params["id"])
        body = await body_of(request, Reply)
        # A reply to a reply joins the same thread: threads are one level deep.
        return await send(caller, parent.channel_id, body, parent.thread_id or parent.id)

    async def thread(request: Request, caller: Caller) -> Any:
        parent = await message_named(caller, request.path_params["id"])
        limit, before, after = page_of(request)
        replies = await store.thread_replies(parent.id, limit=limit, before=before, after=after)
        return {
            "parent": await message_view(parent),
            "replies": [await message_view(m) for m in replies],
        }

    async def react(request: Request, caller: Caller) -> Any:
        agent = as_agent(caller)
        message = await message_named(caller, request.path_params["id"])
        body = await body_of(request, React)
        if not 0 < len(body.emoji) <= 64:
            raise ApiError(400, "invalid_request", "emoji: 1 to 64 characters")
        added = await store.react(message.id, agent.id, body.emoji, on=True)
        return {"message_id": message.id, "emoji": body.emoji, "added": added}

    async def unreact(request: Request, caller: Caller) -> Any:
        agent = as_agent(caller)
        message = await message_named(caller, request.path_params["id"])
        await store.react(message.id, agent.id, request.path_params["emoji"], on=False)

    async def reactions(request: Request, caller: Caller) -> Any:
        message = await message_named(caller, request.path_params["id"])
        return [g.model_dump() for g in (await store.message_stats(message.id)).reactions]

    async def mark_read(request: Request, caller: Caller) -> Any:
        agent = as_agent(caller)
        message = await message_named(caller, request.path_params["id"])
        return {"message_id": message.id, "read_at": await store.mark_read(message.id, agent.id)}

    async def readers(request: Request, caller: Caller) -> Any:
        message = await message_named(caller, request.path_params["id"])
        return [r.model_dump() for r in await store.readers(message.id)]

    def page_of(request: Request) -> tuple[int, str | None, str | None]:
        query = request.query_params
        try:
            limit = min(max(int(query.get("limit") or 50), 1), 500)
        except ValueError:
            raise ApiError(400, "invalid_request", "limit: not a number") from None
        return limit, query.get("before"), query.get("after")

    async def channel_messages(request: Request, caller: Caller) -> Any:
        channel = await channel_named(caller, request.path_params["name"])
        limit, before, after = page_of(request)
        found = await store.channel_messages(channel.id, limit=limit, before=before, after=after)
        return [await message_view(m) for m in found]

    async def get_message(request: Request, caller: Caller) -> Any:
        return await message_view(await message_named(caller, request.path_params["id"]))

    routes = [
        Route("/v1/workspace", endpoint(workspace_info), methods=["GET"]),
        Route("/v1/agents", endpoint(register_agent, 201), methods=["POST"]),
        Route("/v1/agents", endpoint(list_agents), methods=["GET"]),
        Route("/v1/agent", endpoint(me), methods=["GET"]),
        Route("/v1/agents/{name}", endpoint(get_agent), methods=["GET"]),
        Route("/v1/channels", endpoint(create_channel, 201), methods=["POST"]),
        Route("/v1/channels", endpoint(list_channels), methods=["GET"]),
        Route("/v1/channels/{name}", endpoint(get_channel), methods=["GET"]),
        Route("/v1/channels/{name}/join", endpoint(join_channel), methods=["POST"]),
        Route("/v1/channels/{name}/members", endpoint(channel_members), methods=["GET"]),
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
    return Starlette(routes=routes)


def workspace_view(workspace: Workspace) -> dict[str, Any]:
    # The SDK's model wants api_key_hash; the hash is not the client's business.
    return {**workspace.model_dump(), "api_key_hash": "", "metadata": {}}


def agent_view(agent: Agent) -> dict[str, Any]:
    return {
        "id": agent.id, "workspace_id": agent.workspace_id, "name": agent.name,
        "type": agent.kind, "token_hash": "", "status": agent.status, "persona": agent.persona,
        "metadata": agent.metadata, "created_at": agent.created_at,
        "last_seen": agent.last_seen or agent.created_at,
    }  # fmt: skip


def channel_view(channel: Channel) -> dict[str, Any]:
    return {
        "id": channel.id, "workspace_id": channel.workspace_id, "name": channel.name,
        "channel_type": 0, "topic": channel.topic, "metadata": channel.metadata,
        "created_by": channel.created_by, "is_archived": channel.archived,
        "created_at": channel.created_at,
    }  # fmt: skip


def member_view(channel: Channel, member: Any) -> dict[str, Any]:
    role = "owner" if member.agent_id == channel.created_by else "member"
    return {**member.model_dump(), "role": role}

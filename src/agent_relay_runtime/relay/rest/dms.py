"""DMs and group DMs: send, list conversations, read and write one, create a group, add
and remove participants.

A conversation's id is its channel's id; its messages go through `messages.post`, so they
get a durable delivery to every other participant, as a channel message does to every
member. Only participants read or write a conversation (403 ``not_a_participant``); an id
that is not a DM of this workspace is a 404 ``conversation_not_found``. A 1:1 DM keeps its
two participants (409 ``not_a_group_dm`` to add or remove one); in a group DM any
participant adds or removes participants, itself included. Nothing is created for a
message that would be refused: the text and attachments are checked before the
conversation is opened.

Answers the SDK passes through untouched (`dm`, `dms.send_message`, `dms.create_group`,
`dms.add_participant`): a sent message is the message as `MessageWithMeta` plus its
``conversation_id``; a new group is its `DmConversationSummary` plus the first
``message``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field
from starlette.requests import Request
from starlette.routing import Route

from ..store import Agent, Channel, Conversation
from .files import attachments_of
from .kit import Api, ApiError, Body, Caller
from .messages import MAX_TEXT, PostMessage, post

__all__ = ["MAX_GROUP", "routes"]

MAX_GROUP = 50  # participants of a group DM, its creator included


class SendDm(Body):
    to: str
    text: str
    mode: Literal["wait", "steer"] = "wait"
    attachments: list[str] | None = None
    data: dict[str, Any] | None = None


class CreateGroup(Body):
    participants: list[str]
    text: str
    name: Annotated[str, Field(min_length=1, max_length=80)] | None = None


class AddParticipant(Body):
    agent: str


def conversation_view(conversation: Conversation) -> dict[str, Any]:
    """A conversation as relaycast's `DmConversationSummary`."""
    channel = conversation.channel
    return {
        "id": channel.id,
        "type": "1:1" if channel.kind == "dm" else "group",
        "name": channel.metadata.get("name"),
        "participants": conversation.participants,
        "last_message": conversation.last_text,
        "unread_count": conversation.unread_count,
    }


def routes(api: Api) -> list[Route]:
    store = api.store

    async def check(caller: Caller, text: str, attachments: list[str] | None) -> None:
        """Refuse what `post` would refuse, before anything is created for it."""
        if len(text.encode()) > MAX_TEXT:
            raise ApiError(413, "message_too_large", f"text over {MAX_TEXT} bytes")
        await attachments_of(api, caller, attachments)

    async def conversation_of(caller: Caller, agent: Agent, conversation_id: str) -> Channel:
        channel = await store.channel_by_id(conversation_id)
        if (
            channel is None
            or channel.workspace_id != caller.workspace.id
            or channel.kind not in ("dm", "group_dm")
        ):
            raise ApiError(404, "conversation_not_found", f"no conversation {conversation_id!r}")
        if agent.id not in {m.agent_id for m in await store.channel_members(channel.id)}:
            raise ApiError(403, "not_a_participant", "you are not in this conversation")
        return channel

    def group_of(channel: Channel) -> Channel:
        if channel.kind != "group_dm":
            raise ApiError(
                409, "not_a_group_dm", "a 1:1 DM keeps its two participants: create a group DM"
            )
        return channel

    async def dm(request: Request, caller: Caller) -> Any:
        agent = api.as_agent(caller)
        body = await api.body_of(request, SendDm)
        other = await api.agent_named(caller, body.to)
        if other.id == agent.id:
            raise ApiError(400, "invalid_request", "to: a DM is with another agent")
        await check(caller, body.text, body.attachments)
        channel = await store.open_dm(caller.workspace.id, agent.id, other.id)
        message = PostMessage(
            text=body.text, mode=body.mode, attachments=body.attachments, data=body.data
        )
        return {**await post(api, caller, channel.id, message), "conversation_id": channel.id}

    async def conversations(request: Request, caller: Caller) -> Any:
        agent = api.as_agent(caller)
        return [conversation_view(c) for c in await store.dm_conversations(agent.id)]

    async def messages(request: Request, caller: Caller) -> Any:
        agent = api.as_agent(caller)
        channel = await conversation_of(caller, agent, request.path_params["id"])
        limit, before, after = api.page_of(request)
        found = await store.channel_messages(channel.id, limit=limit, before=before, after=after)
        return [await api.message_view(m) for m in found]

    async def send(request: Request, caller: Caller) -> Any:
        agent = api.as_agent(caller)
        channel = await conversation_of(caller, agent, request.path_params["id"])
        body = await api.body_of(request, PostMessage)
        return {**await post(api, caller, channel.id, body), "conversation_id": channel.id}

    async def create_group(request: Request, caller: Caller) -> Any:
        agent = api.as_agent(caller)
        body = await api.body_of(request, CreateGroup)
        members = {agent.id: agent}
        for name in body.participants:
            found = await api.agent_named(caller, name)
            members[found.id] = found
        if len(members) < 2:
            raise ApiError(400, "invalid_request", "participants: name at least one other agent")
        if len(members) > MAX_GROUP:
            raise ApiError(400, "invalid_request", f"participants: at most {MAX_GROUP}, you too")
        await check(caller, body.text, None)
        channel = await store.create_group_dm(
            caller.workspace.id, agent.id, list(members), body.name
        )
        message = await post(api, caller, channel.id, PostMessage(text=body.text))
        summary = Conversation(
            channel=channel, participants=sorted(m.name for m in members.values()),
            last_text=body.text,
        )  # fmt: skip
        return {**conversation_view(summary), "message": message}

    async def add_participant(request: Request, caller: Caller) -> Any:
        agent = api.as_agent(caller)
        channel = group_of(await conversation_of(caller, agent, request.path_params["id"]))
        body = await api.body_of(request, AddParticipant)
        added = await api.agent_named(caller, body.agent)
        joined = await store.join_channel(channel.id, added.id)
        return {"conversation_id": channel.id, "agent_name": added.name, "added": joined}

    async def remove_participant(request: Request, caller: Caller) -> Any:
        agent = api.as_agent(caller)
        channel = group_of(await conversation_of(caller, agent, request.path_params["id"]))
        removed = await api.agent_named(caller, request.path_params["agent"])
        if not await store.leave_channel(channel.id, removed.id):
            raise ApiError(
                404, "participant_not_found", f"{removed.name} is not in this conversation"
            )
        return {"conversation_id": channel.id, "agent_name": removed.name, "removed": True}

    endpoint = api.endpoint
    return [
        Route("/v1/dm", endpoint(dm, 201), methods=["POST"]),
        Route("/v1/dm/conversations", endpoint(conversations), methods=["GET"]),
        Route("/v1/dm/group", endpoint(create_group, 201), methods=["POST"]),
        Route("/v1/dm/{id}/messages", endpoint(messages), methods=["GET"]),
        Route("/v1/dm/{id}/messages", endpoint(send, 201), methods=["POST"]),
        Route("/v1/dm/{id}/participants", endpoint(add_participant), methods=["POST"]),
        Route("/v1/dm/{id}/participants/{agent}", endpoint(remove_participant), methods=["DELETE"]),
    ]

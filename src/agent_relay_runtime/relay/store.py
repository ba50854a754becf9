"""What the relay keeps, and the interface of the place it keeps it.

`Store` is the whole contract between the relay and its storage, small enough that a
PostgreSQL backend could follow the SQLite one (`relay.sqlite.SqliteStore`). Every
method that changes something commits before it returns: the relay acknowledges only
what is on disk.

Secrets: a workspace key and an agent token are returned once, when created; the store
keeps only their SHA-256 (they are 192-bit random strings, so a fast hash is enough).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Sequence
from typing import Any, Literal, Protocol

from pydantic import BaseModel

__all__ = [
    "AckOutOfRange",
    "Agent",
    "Channel",
    "Conflict",
    "Delivery",
    "EventRecord",
    "Member",
    "Message",
    "MessageStats",
    "NotFound",
    "ReactionGroup",
    "Reader",
    "Store",
    "StoreError",
    "Workspace",
    "hash_secret",
    "new_secret",
    "ordered_id",
]

AgentKind = Literal["agent", "human", "system"]
ChannelKind = Literal["channel", "dm", "group_dm"]
DeliveryStatus = Literal["pending", "accepted", "delivered", "deferred", "failed"]


class StoreError(Exception):
    """A request the store refuses; the message names the problem."""


class NotFound(StoreError):
    pass


class Conflict(StoreError):
    """A name already taken, or a change that contradicts what is stored."""


class AckOutOfRange(StoreError):
    """An acknowledgement of nothing new (a replay) or of deliveries never sent."""


_last_id_ms = 0
_id_count = 0


def ordered_id(prefix: str) -> str:
    """An id that sorts by creation, in this process: milliseconds, a counter within the
    millisecond, then random bits. Rows keyed by it are appended to their index rather
    than inserted all over it (cheap fan-out writes), and ids page like timestamps."""
    global _last_id_ms, _id_count
    now = max(time.time_ns() // 1_000_000, _last_id_ms)
    _id_count = _id_count + 1 if now == _last_id_ms else 0
    _last_id_ms = now
    return f"{prefix}_{now:012x}{_id_count:04x}{secrets.token_hex(4)}"


def new_secret(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(24)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class Workspace(BaseModel):
    id: str
    name: str
    created_at: str


class Agent(BaseModel):
    id: str
    workspace_id: str
    name: str
    kind: AgentKind
    node_id: str | None = None
    metadata: dict[str, Any] = {}
    persona: str | None = None
    status: Literal["online", "offline", "away"] = "offline"
    last_seen: str | None = None
    created_at: str


class Channel(BaseModel):
    id: str
    workspace_id: str
    name: str
    kind: ChannelKind
    topic: str | None = None
    archived: bool = False
    created_by: str | None = None
    metadata: dict[str, Any] = {}
    created_at: str


class Member(BaseModel):
    agent_id: str
    agent_name: str
    joined_at: str


class Message(BaseModel):
    id: str
    workspace_id: str
    channel_id: str
    agent_id: str
    text: str
    blocks: Any = None
    metadata: dict[str, Any] = {}
    thread_id: str | None = None
    mentions: list[str] = []
    created_at: str


class ReactionGroup(BaseModel):
    emoji: str
    count: int
    agents: list[str]  # names


class Reader(BaseModel):
    agent_id: str
    agent_name: str
    read_at: str


class MessageStats(BaseModel):
    reply_count: int = 0
    reactions: list[ReactionGroup] = []
    read_by_count: int = 0


class Delivery(BaseModel):
    id: str
    agent_id: str
    message_id: str
    seq: int
    mode: Literal["wait", "steer"]
    status: DeliveryStatus
    acked: bool
    available_at: str | None = None
    reason: str | None = None
    retryable: bool | None = None
    updated_at: str


class EventRecord(BaseModel):
    seq: int
    type: str
    agent: str | None = None
    action: str | None = None
    data: dict[str, Any]
    created_at: str


class Store(Protocol):
    async def create_workspace(self, name: str) -> tuple[Workspace, str]:
        """A new workspace and its key (shown once)."""
        ...

    async def workspace_by_key(self, key: str) -> Workspace | None: ...

    async def workspace_by_id(self, workspace_id: str) -> Workspace | None: ...

    async def register_agent(
        self,
        workspace_id: str,
        name: str,
        *,
        kind: AgentKind = "agent",
        node_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        persona: str | None = None,
    ) -> tuple[Agent, str]:
        """A new participant and its token (shown once); `Conflict` if the name is taken."""
        ...

    async def agent_by_token(self, token: str) -> Agent | None: ...

    async def agent_by_name(self, workspace_id: str, name: str) -> Agent | None: ...

    async def agent_by_id(self, agent_id: str) -> Agent | None: ...

    async def list_agents(self, workspace_id: str) -> list[Agent]: ...

    async def channel_by_name(self, workspace_id: str, name: str) -> Channel | None: ...

    async def list_channels(
        self, workspace_id: str, *, include_archived: bool = False
    ) -> list[Channel]: ...

    async def join_channel(self, channel_id: str, agent_id: str) -> bool:
        """Add a member; False if it was one already."""
        ...

    async def channel_members(self, channel_id: str) -> list[Member]: ...

    async def channel_messages(
        self,
        channel_id: str,
        *,
        limit: int = 50,
        before: str | None = None,
        after: str | None = None,
    ) -> list[Message]:
        """The channel's top-level messages (not thread replies), oldest first: the
        newest ``limit`` before ``before``, or the first ``limit`` after ``after``."""
        ...

    async def create_channel(
        self,
        workspace_id: str,
        name: str,
        *,
        kind: ChannelKind = "channel",
        members: Sequence[str] = (),
        topic: str | None = None,
        created_by: str | None = None,
    ) -> Channel: ...

    async def post_message(
        self,
        *,
        workspace_id: str,
        channel_id: str,
        sender_id: str,
        text: str,
        targets: Sequence[str],
        mode: Literal["wait", "steer"] = "wait",
        thread_id: str | None = None,
        mentions: Sequence[str] = (),
        blocks: Any = None,
        metadata: dict[str, Any] | None = None,
    ) -> tuple[Message, list[Delivery]]:
        """Write the message, its mentions and one delivery per target agent (each with
        the agent's next seq), and its ``message.created`` event, in one transaction."""
        ...

    async def thread_replies(
        self,
        parent_id: str,
        *,
        limit: int = 50,
        before: str | None = None,
        after: str | None = None,
    ) -> list[Message]:
        """Replies to ``parent_id``, oldest first (paged as `channel_messages`)."""
        ...

    async def message_stats(self, message_id: str) -> MessageStats: ...

    async def react(self, message_id: str, agent_id: str, emoji: str, *, on: bool) -> bool:
        """Add (``on``) or remove a reaction; False if nothing changed."""
        ...

    async def mark_read(self, message_id: str, agent_id: str) -> str:
        """Record that the agent read the message; when it first did."""
        ...

    async def readers(self, message_id: str) -> list[Reader]: ...

    async def unacked_deliveries(self, agent_id: str, limit: int = 500) -> list[Delivery]:
        """The agent's deliveries not acknowledged yet, in seq order."""
        ...

    async def ack(self, agent_id: str, up_to_seq: int) -> int:
        """Acknowledge every delivery of the agent up to ``up_to_seq``; the number newly
        acknowledged. `AckOutOfRange` for a replay (nothing new) or a seq never sent."""
        ...

    async def set_receipt(
        self,
        delivery_id: str,
        status: DeliveryStatus,
        *,
        reason: str | None = None,
        retryable: bool | None = None,
        available_at: str | None = None,
    ) -> Delivery: ...

    async def message(self, message_id: str) -> Message | None: ...

    async def append_event(
        self,
        workspace_id: str,
        type: str,
        data: dict[str, Any],
        *,
        agent: str | None = None,
        action: str | None = None,
    ) -> EventRecord: ...

    async def events_after(
        self, workspace_id: str, cursor: int, limit: int = 1000
    ) -> list[EventRecord]:
        """The workspace's events with ``seq > cursor``, in order."""
        ...

    async def aclose(self) -> None: ...

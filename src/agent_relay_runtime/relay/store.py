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
import os
import secrets
import time
from collections.abc import Callable, Sequence
from typing import Any, Literal, Protocol, overload

from pydantic import BaseModel

from ..aio import Notifier

__all__ = [
    "AckOutOfRange",
    "Action",
    "Agent",
    "Channel",
    "Conflict",
    "Conversation",
    "Delivery",
    "DeliveryFinal",
    "EventRecord",
    "FileRecord",
    "Inbox",
    "Invocation",
    "Member",
    "Mention",
    "Message",
    "MessageStats",
    "NewDeliveries",
    "Node",
    "NotFound",
    "PendingDeliveries",
    "ReactionGroup",
    "ReactionNote",
    "ReadMarker",
    "Reader",
    "Receipt",
    "Store",
    "StoreError",
    "Unread",
    "Workspace",
    "delivery_id",
    "hash_secret",
    "new_secret",
    "ordered_id",
    "parse_delivery_id",
]

AgentKind = Literal["agent", "human", "system"]
ChannelKind = Literal["channel", "dm", "group_dm"]
DeliveryStatus = Literal["pending", "accepted", "delivered", "deferred", "failed"]
FileStatus = Literal["pending", "complete", "deleted"]
AgentStatus = Literal["online", "offline", "away"]


class StoreError(Exception):
    """A request the store refuses; the message names the problem."""


class NotFound(StoreError):
    pass


class Conflict(StoreError):
    """A name already taken, or a change that contradicts what is stored."""


class AckOutOfRange(StoreError):
    """An acknowledgement of nothing new (a replay) or of deliveries never sent."""


class DeliveryFinal(Conflict):
    """A change to a delivery that is settled already: ``state`` says how (``acked``: by
    the agent, or cumulatively by its node; ``failed``; ``delivered``: a node's final
    receipt, not acknowledged yet, which a failure or deferral cannot replace)."""

    def __init__(self, delivery_id: str, state: Literal["acked", "failed", "delivered"]) -> None:
        super().__init__(f"delivery {delivery_id!r} is {state} already")
        self.delivery_id = delivery_id
        self.state = state

    def __reduce__(self) -> tuple[type[DeliveryFinal], tuple[str, str]]:
        # Pickled as its arguments (it crosses from the database's writer process): the
        # default would call __init__ with the message alone.
        return type(self), (self.delivery_id, self.state)


_last_id_ms = 0
_id_count = 0
# Random bytes for ids, from os.urandom 4 KiB at a time: one syscall for a thousand ids
# instead of one each (0.15 µs against 1 µs an id; a post makes several).
_pool = b""
_pool_at = 0


def ordered_id(prefix: str) -> str:
    """An id that sorts by creation, in this process: milliseconds, a counter within the
    millisecond, then random bits. Rows keyed by it are appended to their index rather
    than inserted all over it (cheap fan-out writes), and ids page like timestamps."""
    global _last_id_ms, _id_count, _pool, _pool_at
    now = max(time.time_ns() // 1_000_000, _last_id_ms)
    _id_count = _id_count + 1 if now == _last_id_ms else 0
    _last_id_ms = now
    if _pool_at + 4 > len(_pool):
        _pool, _pool_at = os.urandom(4096), 0
    random4 = _pool[_pool_at : _pool_at + 4].hex()
    _pool_at += 4
    return f"{prefix}_{now:012x}{_id_count:04x}{random4}"


def _new_pool_after_fork() -> None:
    global _pool, _pool_at
    _pool, _pool_at = b"", 0  # a child must not hand out its parent's random bits again


os.register_at_fork(after_in_child=_new_pool_after_fork)


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
    evidence: str | None = None
    updated_at: str


def delivery_id(agent_id: str, seq: int) -> str:
    """A delivery's id, made of its key: ``del_<agent id without agt_>_<seq>``."""
    return f"del_{agent_id.removeprefix('agt_')}_{seq}"


def parse_delivery_id(value: str) -> tuple[str, int] | None:
    """The key (agent id, seq) a delivery id is made of; None if it is not one."""
    agent, _, seq = value.removeprefix("del_").rpartition("_")
    if not value.startswith("del_") or not agent or not seq.isdigit():
        return None
    return f"agt_{agent}", int(seq)


class NewDeliveries(Sequence[Delivery]):
    """A message's deliveries just committed, as ``on_deliveries`` listeners get them:
    their keys (``rows``: agent id and seq, in target order), made into models only when
    looked at. The hub pushes from the keys alone: ten models a message cost more than
    pushing them (~10% of the relay's loop with a node online)."""

    def __init__(
        self, rows: list[tuple[str, int]], message_id: str, mode: Literal["wait", "steer"], at: str
    ) -> None:
        self.rows, self.message_id, self.mode, self.at = rows, message_id, mode, at

    @classmethod
    def of(cls, delivery: Delivery) -> NewDeliveries:
        """One delivery just written (a pending one: what a new delivery is)."""
        return cls([(delivery.agent_id, delivery.seq)], delivery.message_id, delivery.mode,
                   delivery.updated_at)  # fmt: skip

    def __len__(self) -> int:
        return len(self.rows)

    @overload
    def __getitem__(self, index: int) -> Delivery: ...

    @overload
    def __getitem__(self, index: slice) -> list[Delivery]: ...

    def __getitem__(self, index: int | slice) -> Delivery | list[Delivery]:
        if isinstance(index, slice):
            return [self._made(*row) for row in self.rows[index]]
        return self._made(*self.rows[index])

    def _made(self, agent_id: str, seq: int) -> Delivery:
        return Delivery(
            id=delivery_id(agent_id, seq), agent_id=agent_id, message_id=self.message_id,
            seq=seq, mode=self.mode, status="pending", acked=False, updated_at=self.at,
        )  # fmt: skip


SettleOutcome = Literal["ack", "fail", "defer"]


class PendingDeliveries(BaseModel):
    """An agent's deliveries waiting for it, oldest first, each with its push payload; and
    when the soonest of those held back by a deferral comes due (None: none is)."""

    items: list[tuple[Delivery, dict[str, Any]]]
    next_due: str | None = None


class Node(BaseModel):
    """A runtime connected (or once connected) to the workspace."""

    id: str
    workspace_id: str
    name: str
    capabilities: list[dict[str, Any]] = []
    version: str | None = None
    status: Literal["online", "offline"] = "offline"
    last_seen: str | None = None
    created_at: str


class Action(BaseModel):
    """A typed action a node handles. ``available_to`` lists selectors (``{"name": …}``,
    ``{"type": "agent"|"human"|"system"}``); None lets every participant invoke it."""

    id: str
    workspace_id: str
    name: str
    description: str = ""
    input_schema: dict[str, Any] = {}
    available_to: list[dict[str, Any]] | None = None
    owner: str  # the node that handles it
    when_offline: Literal["fail", "queue"] = "fail"
    timeout_s: float | None = None
    registered_at: str


InvocationStatus = Literal["invoked", "completed", "failed", "denied"]


class Invocation(BaseModel):
    """One invocation of an action, kept as its audit record."""

    id: str
    workspace_id: str
    action: str
    caller_agent_id: str | None = None
    caller_name: str | None = None
    input: Any = None
    status: InvocationStatus
    output: Any = None
    error: str | None = None
    handler_node: str | None = None
    created_at: str
    dispatched_at: str | None = None
    finished_at: str | None = None


class Receipt(BaseModel):
    """Where one target's delivery of a message stands."""

    agent_name: str
    delivery: Delivery


class EventRecord(BaseModel):
    seq: int
    type: str
    agent: str | None = None
    action: str | None = None
    data: dict[str, Any]
    created_at: str


class FileRecord(BaseModel):
    """A file: declared (``pending``), its bytes received, then ``complete``; ``deleted``
    keeps the record (attachments refer to it) but not the bytes."""

    id: str
    workspace_id: str
    uploaded_by: str  # agent id
    uploader_name: str
    filename: str
    content_type: str
    size: int  # declared at upload
    received: int | None = None  # bytes stored so far (None: none)
    status: FileStatus
    expires_at: str  # of the upload URL
    created_at: str
    completed_at: str | None = None


class Conversation(BaseModel):
    """A DM or group DM as one of its participants sees it."""

    channel: Channel
    participants: list[str]  # names, in joining order
    last_text: str | None = None
    unread_count: int = 0


class Unread(BaseModel):
    """A conversation holding top-level messages an agent has not read: how many, and the
    newest of them."""

    channel_id: str
    channel_name: str
    kind: ChannelKind
    count: int
    latest_id: str
    latest_text: str
    latest_at: str
    latest_sender: str  # name


class Mention(BaseModel):
    message_id: str
    channel_name: str
    sender: str  # name
    text: str
    created_at: str


class ReactionNote(BaseModel):
    """Someone else's reaction to one of the agent's messages."""

    message_id: str
    channel_name: str
    emoji: str
    agent_name: str
    created_at: str


class Inbox(BaseModel):
    channels: list[Unread]
    mentions: list[Mention]
    dms: list[Unread]
    reactions: list[ReactionNote]


class ReadMarker(BaseModel):
    """The newest message of a channel a member has read (its own messages count)."""

    agent_id: str
    agent_name: str
    last_read_id: str | None = None
    last_read_at: str | None = None


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
        attachments: Sequence[str] = (),
    ) -> tuple[Message, Sequence[Delivery]]:
        """Write the message, its mentions, its attachments (ids of complete files, in
        order; `Conflict` if one is not), one delivery per target agent (each with the
        agent's next seq), and its ``message.created`` event, in one transaction. The
        push payload handed to ``on_deliveries`` carries the attachments."""
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

    async def ack_many(self, acks: Sequence[tuple[str, int]]) -> list[int | StoreError]:
        """Several acks ``(agent id, up to seq)`` in one commit, in order, each judged as
        `ack` would alone: what it acknowledged, or the error it would raise."""
        ...

    async def set_receipt(
        self,
        delivery_id: str,
        status: DeliveryStatus,
        *,
        reason: str | None = None,
        retryable: bool | None = None,
        available_at: str | None = None,
        evidence: str | None = None,
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
        self,
        workspace_id: str,
        cursor: int,
        limit: int = 1000,
        *,
        types: Sequence[str] = (),
        agent: str | None = None,
        action: str | None = None,
    ) -> tuple[list[EventRecord], int]:
        """The workspace's events with ``seq > cursor`` that pass the filters (a type
        ending in ``*`` is a prefix), in order, and the cursor to continue from."""
        ...

    async def append_events(
        self, workspace_id: str, agent: str, events: list[dict[str, Any]]
    ) -> None: ...

    # -- real time: what the relay's hub listens to --------------------------------------------

    committed: Notifier
    """Notified after every commit (the event log's readers wait on it)."""

    on_deliveries: list[Callable[[NewDeliveries, dict[str, Any]], None]]
    """Called after a message's commit with its deliveries and their push payload, in
    commit order (so each agent's in seq order). Read their keys (``rows``): the models
    are made as they are looked at."""

    async def deliveries_after(
        self, agent_id: str, after_seq: int, limit: int = 500
    ) -> list[tuple[Delivery, dict[str, Any]]]:
        """The agent's deliveries with ``seq > after_seq``, each with its push payload."""
        ...

    async def acked_seq(self, agent_id: str) -> int: ...

    async def receipts(self, message_id: str) -> list[Receipt]: ...

    # -- polling: an agent without a node takes its deliveries over REST ------------------

    async def pending_deliveries(self, agent_id: str, limit: int = 50) -> PendingDeliveries:
        """The agent's deliveries after its acknowledged seq that are neither settled
        (acknowledged, failed) nor deferred to a time still to come, oldest first."""
        ...

    async def deliveries_in_state(
        self, agent_id: str, state: Literal["queued", "delivered", "acked", "failed"], limit: int
    ) -> list[tuple[Delivery, dict[str, Any]]]:
        """The agent's deliveries as relaycast names their state, oldest first: ``queued``
        (not settled, deferred ones included), ``delivered`` (a final receipt, not
        acknowledged), ``acked``, ``failed``."""
        ...

    async def settle_delivery(
        self,
        agent_id: str,
        delivery_id: str,
        outcome: SettleOutcome,
        *,
        reason: str | None = None,
        retryable: bool | None = None,
        available_at: str | None = None,
    ) -> tuple[Delivery, dict[str, Any]]:
        """What the agent did with one of its deliveries, with its receipt and event, in one
        transaction: ``ack`` (delivered, and acknowledged), ``fail`` (failed and settled:
        it does not come back), ``defer`` (it comes back at ``available_at``). The agent's
        acknowledged seq moves over every settled delivery that follows it, as a node's
        cumulative ack would. `NotFound` for an id that is not one of the agent's;
        `DeliveryFinal` for one settled already."""
        ...

    # -- nodes ------------------------------------------------------------------------------

    async def node_online(
        self,
        workspace_id: str,
        name: str,
        *,
        capabilities: list[dict[str, Any]],
        version: str | None = None,
    ) -> Node: ...

    async def node_offline(self, node_id: str) -> None: ...

    async def list_nodes(self, workspace_id: str) -> list[Node]: ...

    async def bind_agent(
        self, workspace_id: str, name: str, node_id: str
    ) -> tuple[Agent, str, int]:
        """The agent hosted by the node (registered if new), a fresh token, its acked seq."""
        ...

    async def unbind_agent(self, agent_id: str, *, forget: bool = False) -> None:
        """The node no longer hosts the agent: offline, its node tokens revoked, and gone
        (`AGENT_DEREGISTERED` logged) until a node registers it again; with ``forget``,
        removed if nothing refers to it."""
        ...

    # -- actions ----------------------------------------------------------------------------

    async def put_action(self, action: Action) -> None: ...

    async def drop_actions(self, workspace_id: str, owner: str, keep: list[str]) -> list[str]: ...

    async def action_named(self, workspace_id: str, name: str) -> Action | None: ...

    async def list_actions(self, workspace_id: str) -> list[Action]: ...

    async def record_invocation(
        self,
        workspace_id: str,
        action: str,
        *,
        caller_agent_id: str | None,
        caller_name: str | None,
        input: Any,
        status: InvocationStatus = "invoked",
        error: str | None = None,
    ) -> Invocation: ...

    async def mark_dispatched(self, invocation_id: str, node_id: str) -> None: ...

    async def finish_invocation(
        self, invocation_id: str, *, output: Any = None, error: str | None = None
    ) -> tuple[Invocation, bool]: ...

    async def invocation(self, invocation_id: str) -> Invocation | None: ...

    async def waiting_invocations(self, workspace_id: str, action: str) -> list[Invocation]: ...

    async def aclose(self) -> None: ...

    # Conversations: channel state, DMs, read state.

    async def channel_by_id(self, channel_id: str) -> Channel | None: ...

    async def leave_channel(self, channel_id: str, agent_id: str) -> bool:
        """Remove a member; False if it was not one."""
        ...

    async def update_channel(
        self,
        channel_id: str,
        *,
        topic: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Channel:
        """Set what is given (None: unchanged); `Conflict` if the channel is archived."""
        ...

    async def archive_channel(self, channel_id: str) -> bool:
        """Archive (no new messages from then on); False if it was already."""
        ...

    async def set_muted(self, channel_id: str, agent_id: str, muted: bool) -> bool:
        """Mute or unmute the channel for the agent; False if nothing changed."""
        ...

    async def open_dm(self, workspace_id: str, agent_id: str, other_id: str) -> Channel:
        """The 1:1 DM of the two agents, created the first time."""
        ...

    async def create_group_dm(
        self, workspace_id: str, created_by: str, members: Sequence[str], name: str | None
    ) -> Channel:
        """A new group DM of ``members`` (the creator among them)."""
        ...

    async def dm_conversations(self, agent_id: str) -> list[Conversation]:
        """The agent's DMs and group DMs, the most recently active first."""
        ...

    async def inbox(self, agent_id: str, limit: int = 50) -> Inbox:
        """What the agent has not read, at most ``limit`` of each kind; see the SQLite
        store for the rules."""
        ...

    async def read_status(self, channel_id: str) -> list[ReadMarker]:
        """Each member's newest read message of the channel."""
        ...

    # Files and attachments.

    async def create_file(
        self,
        workspace_id: str,
        uploaded_by: str,
        filename: str,
        content_type: str,
        size: int,
        expires_at: str,
    ) -> FileRecord: ...

    async def file_by_id(self, file_id: str) -> FileRecord | None: ...

    async def file_visible(self, file_id: str, agent_id: str) -> bool:
        """Whether the agent may see the file: it uploaded it, or the file is attached to
        a message of a channel, or of a DM it takes part in."""
        ...

    async def list_files(
        self,
        workspace_id: str,
        *,
        viewer: str | None = None,
        uploaded_by: str | None = None,
        limit: int = 50,
    ) -> list[FileRecord]:
        """The workspace's files not deleted, newest first; only those ``viewer`` (an agent
        id) may see, if given."""
        ...

    async def file_received(self, file_id: str, received: int) -> FileRecord:
        """Record that the bytes are stored; `Conflict` unless the file is pending."""
        ...

    async def complete_file(self, file_id: str) -> FileRecord:
        """Mark a pending file with its bytes complete (again: no change); `Conflict` if
        the bytes are missing or the file is deleted."""
        ...

    async def delete_file(self, file_id: str) -> FileRecord:
        """Mark the file deleted; `NotFound` if unknown or deleted already."""
        ...

    async def abandon_uploads(self, declared_before: str) -> list[FileRecord]:
        """Mark deleted every file still pending that was declared (``created_at``) before
        ``declared_before``, an ISO timestamp; those files. Their bytes are the caller's
        to drop."""
        ...

    async def attach_files(self, message_id: str, file_ids: Sequence[str]) -> None: ...

    async def message_attachments(self, message_id: str) -> list[FileRecord]:
        """The message's attachments not deleted, in the order given."""
        ...

    # Presence.

    async def set_presence(self, agent_id: str, status: AgentStatus) -> Agent:
        """Set the agent's status, and its last_seen to now."""
        ...

    async def expire_presence(self, seen_before: str, live_nodes: Sequence[str]) -> list[Agent]:
        """Mark offline every agent online whose last_seen is before ``seen_before`` (an ISO
        timestamp), except those hosted by a node of ``live_nodes`` (connected now: the
        connection keeps them online); those agents. Their last_seen is left as it was."""
        ...

    # Watches: one-shot notices, to a watcher, that an agent went idle or took a delivery.

    async def add_watch(
        self,
        workspace_id: str,
        watcher_id: str,
        agent_id: str,
        on: WatchOn,
        message_id: str | None = None,
    ) -> Watch:
        """A pending watch; its ``after_seq`` is the log's head as it is written, so only
        later events fire it. `Conflict` if the name of the system participant that sends
        the notices (``relay``) is another participant's."""
        ...

    async def watch_by_id(self, watch_id: str) -> Watch | None: ...

    async def list_watches(
        self, workspace_id: str | None, watcher_id: str | None = None
    ) -> list[Watch]:
        """The pending watches of the workspace (None: of every workspace), of
        ``watcher_id`` only if given, oldest first."""
        ...

    async def cancel_watch(self, watch_id: str) -> bool:
        """Drop a pending watch; False if there is none (fired or cancelled already)."""
        ...

    async def watches_on(self, workspace_id: str, agent_name: str) -> list[Watch]:
        """The pending watches of the agent named ``agent_name``, oldest first."""
        ...

    async def watched_events(
        self, cursor: int, limit: int = 500
    ) -> tuple[list[tuple[str, EventRecord]], int, bool]:
        """(workspace id, event) of every workspace with ``seq > cursor`` of the types
        that fire watches, in order, the cursor to continue from, and whether any watch is
        pending; none while no watch is pending (the cursor moves to the head)."""
        ...

    async def last_status(
        self, workspace_id: str, agent_name: str, up_to_seq: int
    ) -> EventRecord | None:
        """The agent's newest ``status.changed`` event with ``seq <= up_to_seq``."""
        ...

    async def delivery_of(self, agent_id: str, message_id: str) -> Delivery | None:
        """The agent's delivery of the message, as it stands."""
        ...

    async def gone_event(self, agent_id: str) -> EventRecord | None:
        """The agent's `AGENT_DEREGISTERED` event if it is gone now (deregistered, and no
        node registered it again since); None otherwise (offline is not gone)."""
        ...

    async def fire_watch(
        self, watch_id: str, text: str, data: dict[str, Any]
    ) -> tuple[Message, EventRecord] | None:
        """In one transaction: drop the pending watch, DM its watcher ``text`` (``data`` as
        the message's metadata) from the workspace's system participant ``relay`` (made on
        first use), with a durable delivery, and append ``watch.fired`` with ``data``.
        None if the watch is gone (fired or cancelled already): it fires once."""
        ...

    async def watch_cursor(self) -> int:
        """How far the watch service has read the log (0 at first)."""
        ...

    async def save_watch_cursor(self, seq: int) -> None:
        """Move the watch service's cursor forward to ``seq`` (never back)."""
        ...

    # Nodes enrolled over REST (relaycast's ``/v1/nodes``): node tokens, the roster, and
    # the agents bound to a node.

    async def enroll_node(
        self,
        workspace_id: str,
        name: str,
        *,
        node_id: str | None = None,
        role: NodeRole | None = None,
        capabilities: list[dict[str, Any]] | None = None,
        max_agents: int | None = None,
        tags: list[str] | None = None,
        version: str | None = None,
    ) -> tuple[NodeEntry, str]:
        """The node ``node_id`` if given, else the one named ``name`` (created if new),
        with what is given (None: unchanged, or the default), and a new node token for it
        (shown once; the token it had before stops working). `Conflict` if ``node_id`` is
        another workspace's node, or ``name`` another node's."""
        ...

    async def node_entry(self, workspace_id: str, name: str) -> NodeEntry | None: ...

    async def node_entry_by_id(self, node_id: str) -> NodeEntry | None: ...

    async def node_entries(self, workspace_id: str) -> list[NodeEntry]:
        """The workspace's nodes, enrolled or not, by name."""
        ...

    async def node_by_token(self, token: str) -> NodeEntry | None:
        """The node a node token was given for, if it is still its token."""
        ...

    async def bind_node_agent(
        self,
        node_id: str,
        agent_id: str,
        *,
        session_ref: str | None = None,
        priority: int = 0,
        hosted: bool = False,
    ) -> NodeBinding:
        """Bind the agent to the node (from any node it was bound to before; again: the
        binding updated). `Conflict` if the node has ``max_agents`` agents already, counting
        its bindings and, with ``hosted``, the agents it hosts over its socket."""
        ...

    async def node_bindings(self, node_id: str, *, hosted: bool = False) -> list[NodeBinding]:
        """The agents bound to the node, oldest binding first; with ``hosted``, then the
        agents it hosts over its socket that are not bound to it."""
        ...

    async def unbind_node_agent(self, node_id: str, agent_id: str) -> bool:
        """Drop the agent's binding to the node; False if there was none."""
        ...

    # Agents' implicit direct nodes (relaycast's ``POST /v1/agent/node-token``).

    async def direct_node_token(self, agent_id: str) -> tuple[NodeEntry, str]:
        """The agent's direct node (made on first use: role ``direct``, ``max_agents`` 1,
        named ``direct-<agent name>``) and a new node token for it (shown once; the token
        it had before stops working). `NotFound` for an unknown agent."""
        ...

    async def host_direct_agent(self, node_id: str) -> tuple[str, int]:
        """The direct node's agent online and hosted by it (as `bind_agent` does for an
        agent a node registers, but no token is made: the agent has its own); the agent's
        id and acknowledged seq. `Conflict` if the node is no agent's direct node."""
        ...


WatchOn = Literal["idle", "delivered"]
# Logged when a node deregisters an agent (``agent.deregister``, or an ``inventory.sync``
# without it), data ``{agent_id, node_id, node}``: the agent is gone, and its watches fire.
AGENT_DEREGISTERED = "agent.deregistered"


class Watch(BaseModel):
    """A pending watch: ``watcher`` is told once when ``agent`` is idle, or takes a
    delivery (of ``message_id`` only, if given)."""

    id: str
    workspace_id: str
    watcher_id: str
    watcher_name: str
    agent_id: str
    agent_name: str
    on: WatchOn
    message_id: str | None = None
    after_seq: int
    created_at: str


__all__ += ["AGENT_DEREGISTERED", "Watch", "WatchOn"]


NodeRole = Literal["direct", "broker"]


class NodeEntry(Node):
    """A node as the roster shows it: `Node`, and what it was enrolled with over REST. A
    node that only ever connected with the workspace key has the defaults and no token."""

    role: NodeRole = "broker"
    max_agents: int = 0  # 0: no limit
    tags: list[str] = []
    enrolled: bool = False  # it holds a node token
    direct_agent_id: str | None = None  # an agent's implicit direct node: that agent's id


class NodeBinding(BaseModel):
    """An agent on a node: bound to it over REST (``id`` set: the binding's), and/or hosted
    by it over its socket now (``hosted``: it registered the agent and is connected)."""

    id: str | None = None
    node_id: str
    agent_id: str
    agent_name: str
    session_ref: str | None = None
    priority: int = 0
    hosted: bool = False
    created_at: str
    updated_at: str | None = None


__all__ += ["NodeBinding", "NodeEntry", "NodeRole"]

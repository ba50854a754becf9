"""The relay's store on SQLite: WAL mode, versioned migrations, one connection.

The connection lives in worker threads, one call at a time (a capacity limiter of one):
SQLite has one writer anyway, and a single connection keeps each transaction whole.
Changes are group-committed: the changes that arrive while a commit is under way go
together into the next transaction, each in a savepoint of its own (one that fails is
rolled back alone), and every caller returns only after the commit that holds its
change. A commit is what costs (with fan-out, five times the work of the change itself),
so this is what lets many writers through. With WAL and ``synchronous=NORMAL`` a commit
survives the process being killed (a power loss may lose the last commits, which
``synchronous="full"`` prevents at a cost).

Migrations are the ``migrations/NNNN_*.sql`` files of this package, applied in order
inside a transaction each, the schema version kept in ``PRAGMA user_version``.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import partial
from importlib.resources import files
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

import anyio

from .store import (
    AckOutOfRange,
    Agent,
    AgentKind,
    Channel,
    ChannelKind,
    Conflict,
    Delivery,
    DeliveryStatus,
    EventRecord,
    Member,
    Message,
    MessageStats,
    NotFound,
    ReactionGroup,
    Reader,
    StoreError,
    Workspace,
    hash_secret,
    new_secret,
    ordered_id,
)

__all__ = ["SqliteStore", "migrations"]

T = TypeVar("T")


def migrations() -> list[tuple[int, str]]:
    """(version, SQL) of every migration shipped, in order."""
    found = []
    for entry in files(__package__).joinpath("migrations").iterdir():
        if entry.name.endswith(".sql"):
            found.append((int(entry.name.split("_", 1)[0]), entry.read_text()))
    return sorted(found)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class SqliteStore:
    """`Store` on one SQLite file. Open with `SqliteStore.open`."""

    def __init__(self, conn: sqlite3.Connection, path: Path, synchronous: str) -> None:
        self._conn = conn
        self.path = path
        self.synchronous = synchronous
        self._limiter = anyio.CapacityLimiter(1)
        self._queued: list[_Change[Any]] = []
        self._committing = False

    @classmethod
    async def open(cls, path: Path, *, synchronous: str = "normal") -> SqliteStore:
        def connect() -> sqlite3.Connection:
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(f"PRAGMA synchronous = {synchronous}")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA busy_timeout = 5000")
            conn.execute("PRAGMA cache_size = -65536")  # 64 MiB: fan-out touches many index pages
            _migrate(conn)
            return conn

        path.parent.mkdir(parents=True, exist_ok=True)
        conn = await anyio.to_thread.run_sync(connect)
        return cls(conn, path, synchronous)

    async def aclose(self) -> None:
        await self._run(self._conn.close)

    async def _run(self, fn: Callable[[], T]) -> T:
        return await anyio.to_thread.run_sync(fn, limiter=self._limiter)

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in a transaction (its own savepoint), committed before this returns."""
        change: _Change[T] = _Change(fn)
        self._queued.append(change)
        if self._committing:
            await change.done.wait()
        else:
            # This caller commits, for itself and for whoever queues meanwhile; a change
            # once queued is committed even if its caller is cancelled.
            self._committing = True
            try:
                with anyio.CancelScope(shield=True):
                    while self._queued:
                        batch, self._queued = self._queued, []
                        await self._run(partial(_commit, self._conn, batch))
                        for each in batch:
                            each.done.set()
            finally:
                self._committing = False
        return change.outcome()

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self._run(lambda: fn(self._conn))

    async def _rows(self, sql: str, *args: Any) -> list[sqlite3.Row]:
        return await self._read(lambda c: c.execute(sql, args).fetchall())

    # -- workspaces and participants ------------------------------------------------------------

    async def create_workspace(self, name: str) -> tuple[Workspace, str]:
        key = new_secret("relay_ws_")
        workspace = Workspace(id=ordered_id("ws"), name=name, created_at=_now())

        def insert(conn: sqlite3.Connection) -> None:
            try:
                conn.execute(
                    "INSERT INTO workspaces (id, name, key_hash, created_at) VALUES (?, ?, ?, ?)",
                    (workspace.id, name, hash_secret(key), workspace.created_at),
                )
            except sqlite3.IntegrityError:
                raise Conflict(f"a workspace named {name!r} exists") from None

        await self._write(insert)
        return workspace, key

    async def workspace_by_key(self, key: str) -> Workspace | None:
        return await self._workspace_where("key_hash = ?", hash_secret(key))

    async def workspace_by_id(self, workspace_id: str) -> Workspace | None:
        return await self._workspace_where("id = ?", workspace_id)

    async def _workspace_where(self, where: str, value: str) -> Workspace | None:
        sql = f"SELECT id, name, created_at FROM workspaces WHERE {where}"
        rows = await self._rows(sql, value)
        return Workspace(**dict(rows[0])) if rows else None

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
        token = new_secret("at_live_")
        agent = Agent(
            id=ordered_id("agt"), workspace_id=workspace_id, name=name, kind=kind,
            node_id=node_id, metadata=metadata or {}, persona=persona, created_at=_now(),
        )  # fmt: skip

        def insert(conn: sqlite3.Connection) -> None:
            try:
                conn.execute(
                    "INSERT INTO agents (id, workspace_id, name, kind, token_hash, node_id,"
                    " metadata, persona, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (agent.id, workspace_id, name, kind, hash_secret(token), node_id,
                     json.dumps(agent.metadata), persona, agent.created_at),
                )  # fmt: skip
            except sqlite3.IntegrityError:
                raise Conflict(f"an agent named {name!r} exists in this workspace") from None
            conn.execute("INSERT INTO agent_cursors (agent_id) VALUES (?)", (agent.id,))

        await self._write(insert)
        return agent, token

    async def agent_by_token(self, token: str) -> Agent | None:
        return await self._agent_where("token_hash = ?", hash_secret(token))

    async def agent_by_name(self, workspace_id: str, name: str) -> Agent | None:
        return await self._agent_where("workspace_id = ? AND name = ?", workspace_id, name)

    async def agent_by_id(self, agent_id: str) -> Agent | None:
        return await self._agent_where("id = ?", agent_id)

    async def list_agents(self, workspace_id: str) -> list[Agent]:
        return await self._agents_where("workspace_id = ? ORDER BY created_at", workspace_id)

    async def _agent_where(self, where: str, *args: Any) -> Agent | None:
        found = await self._agents_where(where, *args)
        return found[0] if found else None

    async def _agents_where(self, where: str, *args: Any) -> list[Agent]:
        sql = (
            "SELECT id, workspace_id, name, kind, node_id, metadata, persona, status, last_seen,"
            f" created_at FROM agents WHERE {where}"
        )
        rows = await self._rows(sql, *args)
        return [Agent(**{**dict(row), "metadata": json.loads(row["metadata"])}) for row in rows]

    # -- conversations and messages ---------------------------------------------------------------

    async def create_channel(
        self,
        workspace_id: str,
        name: str,
        *,
        kind: ChannelKind = "channel",
        members: Sequence[str] = (),
        topic: str | None = None,
        created_by: str | None = None,
    ) -> Channel:
        channel = Channel(
            id=ordered_id("chn"), workspace_id=workspace_id, name=name, kind=kind, topic=topic,
            created_by=created_by, created_at=_now(),
        )  # fmt: skip

        def insert(conn: sqlite3.Connection) -> None:
            try:
                conn.execute(
                    "INSERT INTO channels (id, workspace_id, name, kind, topic, created_by,"
                    " created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (channel.id, workspace_id, name, kind, topic, created_by, channel.created_at),
                )
            except sqlite3.IntegrityError:
                raise Conflict(f"a channel named {name!r} exists in this workspace") from None
            conn.executemany(
                "INSERT INTO channel_members (channel_id, agent_id, joined_at) VALUES (?, ?, ?)",
                [(channel.id, member, channel.created_at) for member in members],
            )

        await self._write(insert)
        return channel

    async def channel_by_name(self, workspace_id: str, name: str) -> Channel | None:
        found = await self._channels_where("workspace_id = ? AND name = ?", workspace_id, name)
        return found[0] if found else None

    async def list_channels(
        self, workspace_id: str, *, include_archived: bool = False
    ) -> list[Channel]:
        where = "workspace_id = ? AND kind = 'channel'"
        if not include_archived:
            where += " AND archived = 0"
        return await self._channels_where(where + " ORDER BY created_at", workspace_id)

    async def _channels_where(self, where: str, *args: Any) -> list[Channel]:
        sql = (
            "SELECT id, workspace_id, name, kind, topic, archived, created_by, metadata,"
            f" created_at FROM channels WHERE {where}"
        )
        rows = await self._rows(sql, *args)
        return [
            Channel(
                **{
                    **dict(r),
                    "archived": bool(r["archived"]),
                    "metadata": json.loads(r["metadata"]),
                }
            )
            for r in rows
        ]

    async def join_channel(self, channel_id: str, agent_id: str) -> bool:
        def insert(conn: sqlite3.Connection) -> bool:
            try:
                done = conn.execute(
                    "INSERT OR IGNORE INTO channel_members (channel_id, agent_id, joined_at)"
                    " VALUES (?, ?, ?)",
                    (channel_id, agent_id, _now()),
                )
            except sqlite3.IntegrityError:
                raise NotFound("unknown channel or agent") from None
            return done.rowcount == 1

        return await self._write(insert)

    async def channel_members(self, channel_id: str) -> list[Member]:
        rows = await self._rows(
            "SELECT m.agent_id, a.name AS agent_name, m.joined_at FROM channel_members m"
            " JOIN agents a ON a.id = m.agent_id WHERE m.channel_id = ? ORDER BY m.joined_at",
            channel_id,
        )
        return [Member(**dict(row)) for row in rows]

    async def channel_messages(
        self,
        channel_id: str,
        *,
        limit: int = 50,
        before: str | None = None,
        after: str | None = None,
    ) -> list[Message]:
        where = "channel_id = ? AND thread_id IS NULL"
        return await self._messages_page(where, channel_id, limit, before, after)

    async def thread_replies(
        self,
        parent_id: str,
        *,
        limit: int = 50,
        before: str | None = None,
        after: str | None = None,
    ) -> list[Message]:
        return await self._messages_page("thread_id = ?", parent_id, limit, before, after)

    async def _messages_page(
        self, where: str, key: str, limit: int, before: str | None, after: str | None
    ) -> list[Message]:
        # Ids are time-ordered, so they page as well as timestamps do.
        args = [key]
        if before:
            where, args = where + " AND id < ?", [*args, before]
        if after:
            where, args = where + " AND id > ?", [*args, after]
        order = "ASC" if after else "DESC"
        sql = f"SELECT id FROM messages WHERE {where} ORDER BY id {order} LIMIT ?"
        rows = await self._rows(sql, *args, limit)
        ids = sorted(row["id"] for row in rows)
        found = [await self.message(message_id) for message_id in ids]
        return [m for m in found if m is not None]

    async def message_stats(self, message_id: str) -> MessageStats:
        def read(conn: sqlite3.Connection) -> MessageStats:
            replies = conn.execute(
                "SELECT count(*) FROM messages WHERE thread_id = ?", (message_id,)
            ).fetchone()[0]
            readers = conn.execute(
                "SELECT count(*) FROM reads WHERE message_id = ?", (message_id,)
            ).fetchone()[0]
            groups: dict[str, list[str]] = {}
            for row in conn.execute(
                "SELECT r.emoji, a.name FROM reactions r JOIN agents a ON a.id = r.agent_id"
                " WHERE r.message_id = ? ORDER BY r.created_at",
                (message_id,),
            ):
                groups.setdefault(row["emoji"], []).append(row["name"])
            reactions = [
                ReactionGroup(emoji=emoji, count=len(names), agents=names)
                for emoji, names in groups.items()
            ]
            return MessageStats(reply_count=replies, reactions=reactions, read_by_count=readers)

        return await self._read(read)

    async def react(self, message_id: str, agent_id: str, emoji: str, *, on: bool) -> bool:
        def change(conn: sqlite3.Connection) -> bool:
            if not on:
                return (
                    conn.execute(
                        "DELETE FROM reactions WHERE message_id = ? AND agent_id = ? AND emoji = ?",
                        (message_id, agent_id, emoji),
                    ).rowcount
                    == 1
                )
            try:
                done = conn.execute(
                    "INSERT OR IGNORE INTO reactions (message_id, agent_id, emoji, created_at)"
                    " VALUES (?, ?, ?, ?)",
                    (message_id, agent_id, emoji, _now()),
                )
            except sqlite3.IntegrityError:
                raise NotFound(f"unknown message {message_id!r}") from None
            return done.rowcount == 1

        return await self._write(change)

    async def mark_read(self, message_id: str, agent_id: str) -> str:
        def change(conn: sqlite3.Connection) -> str:
            try:
                conn.execute(
                    "INSERT OR IGNORE INTO reads (message_id, agent_id, read_at) VALUES (?, ?, ?)",
                    (message_id, agent_id, _now()),
                )
            except sqlite3.IntegrityError:
                raise NotFound(f"unknown message {message_id!r}") from None
            row = conn.execute(
                "SELECT read_at FROM reads WHERE message_id = ? AND agent_id = ?",
                (message_id, agent_id),
            ).fetchone()
            return str(row["read_at"])

        return await self._write(change)

    async def readers(self, message_id: str) -> list[Reader]:
        rows = await self._rows(
            "SELECT r.agent_id, a.name AS agent_name, r.read_at FROM reads r"
            " JOIN agents a ON a.id = r.agent_id WHERE r.message_id = ? ORDER BY r.read_at",
            message_id,
        )
        return [Reader(**dict(row)) for row in rows]

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
        now = _now()
        message = Message(
            id=ordered_id("msg"), workspace_id=workspace_id, channel_id=channel_id,
            agent_id=sender_id, text=text, blocks=blocks, metadata=metadata or {},
            thread_id=thread_id, mentions=list(mentions), created_at=now,
        )  # fmt: skip

        def insert(conn: sqlite3.Connection) -> list[Delivery]:
            try:
                conn.execute(
                    "INSERT INTO messages (id, workspace_id, channel_id, agent_id, text, blocks,"
                    " metadata, thread_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (message.id, workspace_id, channel_id, sender_id, text,
                     None if blocks is None else json.dumps(blocks),
                     json.dumps(message.metadata), thread_id, now),
                )  # fmt: skip
                conn.executemany(
                    "INSERT INTO mentions (message_id, agent_id) VALUES (?, ?)",
                    [(message.id, agent) for agent in message.mentions],
                )
            except sqlite3.IntegrityError as exc:
                raise NotFound(f"unknown channel, sender, thread or mention ({exc})") from None
            # Every target's next seq in one statement, then the rows in one more.
            wanted = list(dict.fromkeys(targets))
            marks = ", ".join("?" * len(wanted))
            seqs = dict(
                conn.execute(
                    "UPDATE agent_cursors SET last_seq = last_seq + 1"
                    f" WHERE agent_id IN ({marks}) RETURNING agent_id, last_seq",
                    wanted,
                ).fetchall()
                if wanted
                else []
            )
            if len(seqs) < len(wanted):
                unknown = next(agent for agent in wanted if agent not in seqs)
                raise NotFound(f"unknown target agent {unknown!r}")
            deliveries = [
                Delivery(
                    id=delivery_id(agent_id, seqs[agent_id]),
                    agent_id=agent_id,
                    message_id=message.id,
                    seq=seqs[agent_id],
                    mode=mode,
                    status="pending",
                    acked=False,
                    updated_at=now,
                )
                for agent_id in wanted
            ]
            conn.executemany(
                "INSERT INTO deliveries (agent_id, seq, workspace_id, message_id, mode,"
                " status, updated_at) VALUES (?, ?, ?, ?, ?, 'pending', ?)",
                [(d.agent_id, d.seq, workspace_id, message.id, mode, now) for d in deliveries],
            )
            _insert_event(
                conn, workspace_id, "message.created", message.model_dump(mode="json"),
                agent=sender_id,
            )  # fmt: skip
            return deliveries

        return message, await self._write(insert)

    async def message(self, message_id: str) -> Message | None:
        def read(conn: sqlite3.Connection) -> Message | None:
            row = conn.execute("SELECT * FROM messages WHERE id = ?", (message_id,)).fetchone()
            if row is None:
                return None
            mentioned = conn.execute(
                "SELECT agent_id FROM mentions WHERE message_id = ?", (message_id,)
            ).fetchall()
            fields = dict(row)
            fields["blocks"] = None if row["blocks"] is None else json.loads(row["blocks"])
            fields["metadata"] = json.loads(row["metadata"])
            return Message(**fields, mentions=[m["agent_id"] for m in mentioned])

        return await self._read(read)

    # -- deliveries ---------------------------------------------------------------------------

    async def unacked_deliveries(self, agent_id: str, limit: int = 500) -> list[Delivery]:
        rows = await self._rows(
            "SELECT d.* FROM deliveries d JOIN agent_cursors c ON c.agent_id = d.agent_id"
            " WHERE d.agent_id = ? AND d.seq > c.acked_seq ORDER BY d.seq LIMIT ?",
            agent_id,
            limit,
        )
        return [_delivery(row) for row in rows]

    async def ack(self, agent_id: str, up_to_seq: int) -> int:
        def update(conn: sqlite3.Connection) -> int:
            cursor = conn.execute(
                "SELECT last_seq, acked_seq FROM agent_cursors WHERE agent_id = ?", (agent_id,)
            ).fetchone()
            if cursor is None:
                raise NotFound(f"unknown agent {agent_id!r}")
            if up_to_seq > cursor["last_seq"]:
                raise AckOutOfRange(
                    f"ack up to seq {up_to_seq}, but the last delivery sent is seq"
                    f" {cursor['last_seq']}"
                )
            if up_to_seq <= cursor["acked_seq"]:
                raise AckOutOfRange(
                    f"ack up to seq {up_to_seq} is a replay: seq {cursor['acked_seq']}"
                    " was acknowledged already"
                )
            conn.execute(
                "UPDATE agent_cursors SET acked_seq = ? WHERE agent_id = ?", (up_to_seq, agent_id)
            )
            done = conn.execute(
                "UPDATE deliveries SET acked = 1, updated_at = ?"
                " WHERE agent_id = ? AND seq > ? AND seq <= ?",
                (_now(), agent_id, cursor["acked_seq"], up_to_seq),
            )
            return done.rowcount

        return await self._write(update)

    async def set_receipt(
        self,
        delivery_id: str,
        status: DeliveryStatus,
        *,
        reason: str | None = None,
        retryable: bool | None = None,
        available_at: str | None = None,
    ) -> Delivery:
        key = parse_delivery_id(delivery_id)

        def update(conn: sqlite3.Connection) -> Delivery:
            row = (
                key
                and conn.execute(
                    "UPDATE deliveries SET status = ?, reason = ?, retryable = ?, available_at = ?,"
                    " updated_at = ? WHERE agent_id = ? AND seq = ? RETURNING *",
                    (status, reason, retryable, available_at, _now(), *key),
                ).fetchone()
            )
            if not row:
                raise NotFound(f"unknown delivery {delivery_id!r}")
            return _delivery(row)

        return await self._write(update)

    # -- events -----------------------------------------------------------------------------------

    async def append_event(
        self,
        workspace_id: str,
        type: str,
        data: dict[str, Any],
        *,
        agent: str | None = None,
        action: str | None = None,
    ) -> EventRecord:
        return await self._write(
            lambda c: _insert_event(c, workspace_id, type, data, agent=agent, action=action)
        )

    async def events_after(
        self, workspace_id: str, cursor: int, limit: int = 1000
    ) -> list[EventRecord]:
        rows = await self._rows(
            "SELECT seq, type, agent, action, data, created_at FROM events"
            " WHERE workspace_id = ? AND seq > ? ORDER BY seq LIMIT ?",
            workspace_id,
            cursor,
            limit,
        )
        return [EventRecord(**{**dict(row), "data": json.loads(row["data"])}) for row in rows]


class _Change(Generic[T]):
    """A change waiting for its commit, and how it went."""

    def __init__(self, fn: Callable[[sqlite3.Connection], T]) -> None:
        self.fn = fn
        self.done = anyio.Event()
        self.result: T | None = None
        self.error: BaseException | None = None

    def outcome(self) -> T:
        if self.error is not None:
            raise self.error
        return self.result  # type: ignore[return-value]


def _commit(conn: sqlite3.Connection, batch: list[_Change[Any]]) -> None:
    """One transaction for the batch; a change that raises is undone alone."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        for change in batch:
            conn.execute("SAVEPOINT change")
            try:
                change.result = change.fn(conn)
            except Exception as exc:  # the caller gets it; the others go on
                conn.execute("ROLLBACK TO change")
                change.error = exc
            conn.execute("RELEASE change")
        conn.execute("COMMIT")
    except BaseException as exc:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        for change in batch:
            change.error = change.error or exc
            change.result = None


def _insert_event(
    conn: sqlite3.Connection,
    workspace_id: str,
    type: str,
    data: dict[str, Any],
    *,
    agent: str | None = None,
    action: str | None = None,
) -> EventRecord:
    now = _now()
    row = conn.execute(
        "INSERT INTO events (workspace_id, type, agent, action, data, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?) RETURNING seq",
        (workspace_id, type, agent, action, json.dumps(data), now),
    ).fetchone()
    return EventRecord(
        seq=row["seq"], type=type, agent=agent, action=action, data=data, created_at=now
    )


def delivery_id(agent_id: str, seq: int) -> str:
    """A delivery's id, made of its key: ``del_<agent id without agt_>_<seq>``."""
    return f"del_{agent_id.removeprefix('agt_')}_{seq}"


def parse_delivery_id(value: str) -> tuple[str, int] | None:
    agent, _, seq = value.removeprefix("del_").rpartition("_")
    if not value.startswith("del_") or not agent or not seq.isdigit():
        return None
    return f"agt_{agent}", int(seq)


def _delivery(row: sqlite3.Row) -> Delivery:
    fields = dict(row)
    fields.pop("workspace_id", None)
    fields["id"] = delivery_id(row["agent_id"], row["seq"])
    fields["acked"] = bool(row["acked"])
    fields["retryable"] = None if row["retryable"] is None else bool(row["retryable"])
    return Delivery(**fields)


def _migrate(conn: sqlite3.Connection) -> None:
    """Apply the migrations newer than the file's ``user_version``, each atomically."""
    current = conn.execute("PRAGMA user_version").fetchone()[0]
    shipped = migrations()
    newest = shipped[-1][0] if shipped else 0
    if current > newest:
        raise StoreError(
            f"the relay database is at schema version {current}, newer than this"
            f" agent-relay-runtime knows ({newest}); upgrade it"
        )
    for version, sql in shipped:
        if version > current:
            try:
                conn.executescript(
                    f"BEGIN IMMEDIATE;\n{sql}\nPRAGMA user_version = {version};\nCOMMIT;"
                )
            except sqlite3.Error:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

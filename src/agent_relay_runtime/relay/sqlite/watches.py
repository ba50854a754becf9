"""Watches: pending one-shot notices, and firing one.

Firing is one transaction: the watch's row is deleted, the DM to its watcher is written
with its durable delivery (and ``message.created``), and ``watch.fired`` is appended. A
watch whose row is gone does not fire, so a watch fires once however often the events
that fire it are read again (after a restart, say). That is why firing writes the
message itself rather than through `post_message`, which commits on its own: the
message rows are the same, and its deliveries are handed to ``on_deliveries`` the same
way after the commit.
"""

from __future__ import annotations

import json
import sqlite3
from functools import partial
from typing import Any, NamedTuple

from ..store import (
    AGENT_DEREGISTERED,
    Conflict,
    Delivery,
    EventRecord,
    Message,
    NewDeliveries,
    NotFound,
    Watch,
    WatchOn,
    delivery_id,
    hash_secret,
    new_secret,
    ordered_id,
)
from .base import SqliteBase, timestamp
from .delivery_rows import (
    delivery_from,
    insert_message,
    keyed_rows,
    next_seqs,
    push_payload,
)
from .dms import dm_name
from .events import insert_event

__all__ = ["SYSTEM_NAME", "WATCHED_TYPES", "Watches"]

SYSTEM_NAME = "relay"  # the system participant that sends the notices
WATCHED_TYPES = ("status.changed", "delivery.delivered", "delivery.failed", AGENT_DEREGISTERED)

_SELECT = (
    "SELECT w.id, w.workspace_id, w.watcher_id, watcher.name AS watcher_name, w.agent_id,"
    ' agent.name AS agent_name, w.on_event AS "on", w.message_id, w.after_seq, w.created_at'
    " FROM watches w JOIN agents watcher ON watcher.id = w.watcher_id"
    " JOIN agents agent ON agent.id = w.agent_id"
)


class Watches(SqliteBase):
    async def add_watch(
        self,
        workspace_id: str,
        watcher_id: str,
        agent_id: str,
        on: WatchOn,
        message_id: str | None = None,
    ) -> Watch:
        watch_id = ordered_id("wch")
        return await self._write(
            partial(
                _add_watch, watch_id, workspace_id, watcher_id, agent_id, on, message_id,
                _SystemIds.new(),
            )
        )  # fmt: skip

    async def watch_by_id(self, watch_id: str) -> Watch | None:
        rows = await self._rows(f"{_SELECT} WHERE w.id = ?", watch_id)
        return _watch(rows[0]) if rows else None

    async def list_watches(
        self, workspace_id: str | None, watcher_id: str | None = None
    ) -> list[Watch]:
        terms = {"w.workspace_id": workspace_id, "w.watcher_id": watcher_id}
        where = " AND ".join(f"{k} = ?" for k, v in terms.items() if v is not None) or "1"
        args = [v for v in terms.values() if v is not None]
        rows = await self._rows(f"{_SELECT} WHERE {where} ORDER BY w.id", *args)
        return [_watch(row) for row in rows]

    async def cancel_watch(self, watch_id: str) -> bool:
        return await self._write(partial(_cancel_watch, watch_id))

    async def watches_on(self, workspace_id: str, agent_name: str) -> list[Watch]:
        rows = await self._rows(
            f"{_SELECT} WHERE agent.workspace_id = ? AND agent.name = ? ORDER BY w.id",
            workspace_id,
            agent_name,
        )
        return [_watch(row) for row in rows]

    async def watched_events(
        self, cursor: int, limit: int = 500
    ) -> tuple[list[tuple[str, EventRecord]], int, bool]:
        marks = ", ".join("?" * len(WATCHED_TYPES))

        def read(conn: sqlite3.Connection) -> tuple[list[tuple[str, EventRecord]], int, bool]:
            head = conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0]
            if conn.execute("SELECT NOT EXISTS (SELECT 1 FROM watches)").fetchone()[0]:
                return [], max(head, cursor), False  # nothing to fire: skip the log
            rows = conn.execute(
                "SELECT workspace_id, seq, type, agent, action, data, created_at FROM events"
                f" WHERE seq > ? AND seq <= ? AND type IN ({marks}) ORDER BY seq LIMIT ?",
                (cursor, head, *WATCHED_TYPES, limit),
            ).fetchall()
            found = [(row["workspace_id"], _event(row)) for row in rows]
            # A full page stops at its last event; a short one saw everything to the head.
            return found, (found[-1][1].seq if len(found) == limit else max(head, cursor)), True

        return await self._read(read)

    async def last_status(
        self, workspace_id: str, agent_name: str, up_to_seq: int
    ) -> EventRecord | None:
        # The literal type lets SQLite use the partial index events_status_by_agent.
        rows = await self._rows(
            "SELECT seq, type, agent, action, data, created_at FROM events"
            " WHERE workspace_id = ? AND agent = ? AND type = 'status.changed' AND seq <= ?"
            " ORDER BY seq DESC LIMIT 1",
            workspace_id,
            agent_name,
            up_to_seq,
        )
        return _event(rows[0]) if rows else None

    async def delivery_of(self, agent_id: str, message_id: str) -> Delivery | None:
        rows = await self._read(lambda conn: keyed_rows(conn, message_id))
        return next((delivery_from(row) for row in rows if row["agent_id"] == agent_id), None)

    async def gone_event(self, agent_id: str) -> EventRecord | None:
        rows = await self._rows(
            "SELECT e.seq, e.type, e.agent, e.action, e.data, e.created_at"
            " FROM agents a JOIN events e ON e.seq = a.gone_seq WHERE a.id = ?",
            agent_id,
        )
        return _event(rows[0]) if rows else None

    async def fire_watch(
        self, watch_id: str, text: str, data: dict[str, Any]
    ) -> tuple[Message, EventRecord] | None:
        def pushed(
            done: tuple[Message, EventRecord, Delivery, dict[str, Any]] | None,
        ) -> tuple[Message, EventRecord] | None:
            if done is None:
                return None
            message, fired, delivery, payload = done
            for listener in self.on_deliveries:  # in commit order, as a message's are
                listener(NewDeliveries.of(delivery), payload)
            return message, fired

        return await self._write(
            partial(
                _fire_watch, watch_id, text, data, _SystemIds.new(), ordered_id("chn"),
                ordered_id("msg"),
            ),
            pushed,
        )  # fmt: skip

    async def watch_cursor(self) -> int:
        rows = await self._rows("SELECT seq FROM watch_cursor WHERE id = 1")
        return int(rows[0]["seq"]) if rows else 0

    async def save_watch_cursor(self, seq: int) -> None:
        await self._write(partial(_save_watch_cursor, seq))


class _SystemIds(NamedTuple):
    """The id and token hash the system participant gets if it is made by this write (ids
    are made in the relay's process, where they sort by creation)."""

    agent_id: str
    token_hash: str

    @classmethod
    def new(cls) -> _SystemIds:
        return cls(ordered_id("agt"), hash_secret(new_secret("sys_")))


def _add_watch(
    watch_id: str,
    workspace_id: str,
    watcher_id: str,
    agent_id: str,
    on: WatchOn,
    message_id: str | None,
    system: _SystemIds,
    conn: sqlite3.Connection,
) -> Watch:
    """The watch, after the last event so far (and the system participant); the watch."""
    # Made now, so a name clash is refused here rather than when the watch fires.
    _system_participant(conn, workspace_id, system)
    try:
        conn.execute(
            "INSERT INTO watches (id, workspace_id, watcher_id, agent_id, on_event,"
            " message_id, after_seq, created_at) VALUES (?, ?, ?, ?, ?, ?,"
            " (SELECT coalesce(max(seq), 0) FROM events), ?)",
            (watch_id, workspace_id, watcher_id, agent_id, on, message_id, timestamp()),
        )
    except sqlite3.IntegrityError:
        raise NotFound("unknown workspace, agent or message") from None
    return _watch(conn.execute(f"{_SELECT} WHERE w.id = ?", (watch_id,)).fetchone())


def _cancel_watch(watch_id: str, conn: sqlite3.Connection) -> bool:
    """The watch deleted; whether it was there."""
    return conn.execute("DELETE FROM watches WHERE id = ?", (watch_id,)).rowcount == 1


def _fire_watch(
    watch_id: str,
    text: str,
    data: dict[str, Any],
    system: _SystemIds,
    new_channel_id: str,
    message_id: str,
    conn: sqlite3.Connection,
) -> tuple[Message, EventRecord, Delivery, dict[str, Any]] | None:
    """The watch deleted, its DM and ``watch.fired`` written; None if it was gone."""
    row = conn.execute(f"{_SELECT} WHERE w.id = ?", (watch_id,)).fetchone()
    if row is None:
        return None
    watch = _watch(row)
    conn.execute("DELETE FROM watches WHERE id = ?", (watch_id,))
    sender = _system_participant(conn, watch.workspace_id, system)
    message, delivery, payload = _dm(conn, watch, sender, text, data, new_channel_id, message_id)
    fired = insert_event(
        conn, watch.workspace_id, "watch.fired", {**data, "dm_id": message.id},
        agent=watch.agent_name,
    )  # fmt: skip
    return message, fired, delivery, payload


def _save_watch_cursor(seq: int, conn: sqlite3.Connection) -> None:
    """The watch cursor moved to ``seq``, never back."""
    conn.execute(
        "INSERT INTO watch_cursor (id, seq) VALUES (1, ?)"
        " ON CONFLICT (id) DO UPDATE SET seq = max(seq, excluded.seq)",
        (seq,),
    )


def _system_participant(
    conn: sqlite3.Connection, workspace_id: str, ids: _SystemIds
) -> tuple[str, str]:
    """The id and name of the workspace's system participant, made the first time (with
    ``ids``). It has a token nobody knows: nothing speaks as it but the relay."""
    conn.execute(
        "INSERT OR IGNORE INTO agents (id, workspace_id, name, kind, token_hash, created_at)"
        " VALUES (?, ?, ?, 'system', ?, ?)",
        (ids.agent_id, workspace_id, SYSTEM_NAME, ids.token_hash, timestamp()),
    )
    row = conn.execute(
        "SELECT id, kind FROM agents WHERE workspace_id = ? AND name = ?",
        (workspace_id, SYSTEM_NAME),
    ).fetchone()
    if row["kind"] != "system":
        raise Conflict(f"the name {SYSTEM_NAME!r} is taken by a participant that is not system")
    # A reply in the DM targets every other participant: it needs a delivery cursor.
    conn.execute("INSERT OR IGNORE INTO agent_cursors (agent_id) VALUES (?)", (row["id"],))
    return str(row["id"]), SYSTEM_NAME


def _dm(
    conn: sqlite3.Connection,
    watch: Watch,
    sender: tuple[str, str],
    text: str,
    metadata: dict[str, Any],
    new_channel_id: str,
    message_id: str,
) -> tuple[Message, Delivery, dict[str, Any]]:
    """The message ``message_id`` in the DM of ``sender`` and the watcher (opened as
    ``new_channel_id`` if new), its delivery to the watcher and its ``message.created`` event;
    as `post_message` writes them."""
    sender_id, sender_name = sender
    now = timestamp()
    conn.execute(
        "INSERT OR IGNORE INTO channels (id, workspace_id, name, kind, created_by, created_at)"
        " VALUES (?, ?, ?, 'dm', ?, ?)",
        (new_channel_id, watch.workspace_id, dm_name(sender_id, watch.watcher_id), sender_id, now),
    )
    channel_id = conn.execute(
        "SELECT id FROM channels WHERE workspace_id = ? AND name = ?",
        (watch.workspace_id, dm_name(sender_id, watch.watcher_id)),
    ).fetchone()["id"]
    conn.executemany(
        "INSERT OR IGNORE INTO channel_members (channel_id, agent_id, joined_at) VALUES (?, ?, ?)",
        [(channel_id, sender_id, now), (channel_id, watch.watcher_id, now)],
    )
    message = Message(
        id=message_id, workspace_id=watch.workspace_id, channel_id=channel_id,
        agent_id=sender_id, text=text, metadata=metadata, created_at=now,
    )  # fmt: skip
    [(_, seq)] = rows = next_seqs(conn, [watch.watcher_id])
    insert_message(conn, message, rows, "wait")
    delivery = Delivery(
        id=delivery_id(watch.watcher_id, seq), agent_id=watch.watcher_id, message_id=message.id,
        seq=seq, mode="wait", status="pending", acked=False, updated_at=now,
    )  # fmt: skip
    names = {"from_name": sender_name, "channel_name": None, "channel_kind": "dm"}
    payload = push_payload(message, names, "wait")
    insert_event(conn, watch.workspace_id, "message.created", payload, agent=sender_name)
    return message, delivery, payload


def _watch(row: sqlite3.Row) -> Watch:
    return Watch(**dict(row))


def _event(row: sqlite3.Row) -> EventRecord:
    fields = {k: row[k] for k in ("seq", "type", "agent", "action", "created_at")}
    return EventRecord(**fields, data=json.loads(row["data"]))

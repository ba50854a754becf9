"""Channel state: leaving, topic and metadata, archiving, muting."""

from __future__ import annotations

import json
import sqlite3
from functools import partial
from typing import Any

from ..store import Channel, Conflict, NotFound
from .base import SqliteBase, timestamp
from .events import insert_event

__all__ = ["ChannelAdmin", "channel_from"]


def channel_from(row: sqlite3.Row) -> Channel:
    return Channel(
        id=row["id"], workspace_id=row["workspace_id"], name=row["name"], kind=row["kind"],
        topic=row["topic"], archived=bool(row["archived"]), created_by=row["created_by"],
        metadata=json.loads(row["metadata"]), created_at=row["created_at"],
    )  # fmt: skip


class ChannelAdmin(SqliteBase):
    async def leave_channel(self, channel_id: str, agent_id: str) -> bool:
        return await self._write(partial(_leave_channel, channel_id, agent_id))

    async def update_channel(
        self,
        channel_id: str,
        *,
        topic: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Channel:
        return await self._write(partial(_update_channel, channel_id, topic, metadata))

    async def archive_channel(self, channel_id: str) -> bool:
        return await self._write(partial(_archive_channel, channel_id))

    async def set_muted(self, channel_id: str, agent_id: str, muted: bool) -> bool:
        return await self._write(partial(_set_muted, channel_id, agent_id, muted))


def _leave_channel(channel_id: str, agent_id: str, conn: sqlite3.Connection) -> bool:
    """Removes the agent from the channel's members; whether it was one."""
    done = conn.execute(
        "DELETE FROM channel_members WHERE channel_id = ? AND agent_id = ?",
        (channel_id, agent_id),
    )
    return done.rowcount == 1


def _update_channel(
    channel_id: str,
    topic: str | None,
    metadata: dict[str, Any] | None,
    conn: sqlite3.Connection,
) -> Channel:
    """The channel's topic and/or metadata (those given); the channel as it is then."""
    row = conn.execute("SELECT * FROM channels WHERE id = ?", (channel_id,)).fetchone()
    if row is None:
        raise NotFound(f"unknown channel {channel_id!r}")
    if row["archived"]:
        raise Conflict(f"#{row['name']} is archived")
    sets: list[str] = []
    args: list[Any] = []
    if topic is not None:
        sets, args = [*sets, "topic = ?"], [*args, topic]
    if metadata is not None:
        sets, args = [*sets, "metadata = ?"], [*args, json.dumps(metadata)]
    if not sets:
        return channel_from(row)
    updated = conn.execute(
        f"UPDATE channels SET {', '.join(sets)} WHERE id = ? RETURNING *",
        (*args, channel_id),
    ).fetchone()
    return channel_from(updated)


def _archive_channel(channel_id: str, conn: sqlite3.Connection) -> bool:
    """The channel archived, and its ``channel.archived`` event; False if it was already."""
    row = conn.execute(
        "UPDATE channels SET archived = 1 WHERE id = ? AND archived = 0"
        " RETURNING workspace_id, name",
        (channel_id,),
    ).fetchone()
    if row is None:
        if conn.execute("SELECT 1 FROM channels WHERE id = ?", (channel_id,)).fetchone():
            return False
        raise NotFound(f"unknown channel {channel_id!r}")
    archived = {"channel": {"name": row["name"]}}
    insert_event(conn, row["workspace_id"], "channel.archived", archived)
    return True


def _set_muted(channel_id: str, agent_id: str, muted: bool, conn: sqlite3.Connection) -> bool:
    """The agent's mute of the channel, added or removed; whether that changed anything."""
    if not muted:
        done = conn.execute(
            "DELETE FROM mutes WHERE channel_id = ? AND agent_id = ?",
            (channel_id, agent_id),
        )
        return done.rowcount == 1
    try:
        done = conn.execute(
            "INSERT OR IGNORE INTO mutes (channel_id, agent_id, muted_at) VALUES (?, ?, ?)",
            (channel_id, agent_id, timestamp()),
        )
    except sqlite3.IntegrityError:
        raise NotFound("unknown channel or agent") from None
    return done.rowcount == 1

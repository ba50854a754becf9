"""Channels (and DMs), their members, messages, threads, reactions and read state."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from functools import partial
from typing import Any

from ..store import (
    Channel,
    ChannelKind,
    Conflict,
    Member,
    Message,
    MessageStats,
    NotFound,
    ReactionGroup,
    Reader,
    ordered_id,
)
from .base import SqliteBase, timestamp


class Conversations(SqliteBase):
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
            created_by=created_by, created_at=timestamp(),
        )  # fmt: skip
        await self._write(partial(_insert_channel, channel, members))
        return channel

    async def channel_by_name(self, workspace_id: str, name: str) -> Channel | None:
        async def load() -> Channel | None:
            found = await self._channels_where("workspace_id = ? AND name = ?", workspace_id, name)
            return found[0] if found else None

        return await self._directory_lookup(("channel_name", workspace_id, name), load)

    async def channel_by_id(self, channel_id: str) -> Channel | None:
        async def load() -> Channel | None:
            found = await self._channels_where("id = ?", channel_id)
            return found[0] if found else None

        return await self._directory_lookup(("channel", channel_id), load)

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
        return await self._write(partial(_join_channel, channel_id, agent_id))

    async def channel_members(self, channel_id: str) -> list[Member]:
        async def load() -> list[Member]:
            rows = await self._rows(
                "SELECT m.agent_id, a.name AS agent_name, m.joined_at FROM channel_members m"
                " JOIN agents a ON a.id = m.agent_id WHERE m.channel_id = ? ORDER BY m.joined_at",
                channel_id,
            )
            return [Member(**dict(row)) for row in rows]

        # A list of its own for the caller: the cached one stays as read.
        return list(await self._directory_lookup(("members", channel_id), load))

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
        return await self._write(partial(_set_reaction, message_id, agent_id, emoji, on))

    async def mark_read(self, message_id: str, agent_id: str) -> str:
        return await self._write(partial(_mark_read, message_id, agent_id))

    async def readers(self, message_id: str) -> list[Reader]:
        rows = await self._rows(
            "SELECT r.agent_id, a.name AS agent_name, r.read_at FROM reads r"
            " JOIN agents a ON a.id = r.agent_id WHERE r.message_id = ? ORDER BY r.read_at",
            message_id,
        )
        return [Reader(**dict(row)) for row in rows]

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


def _insert_channel(channel: Channel, members: Sequence[str], conn: sqlite3.Connection) -> None:
    """The new channel's row and its first members."""
    try:
        conn.execute(
            "INSERT INTO channels (id, workspace_id, name, kind, topic, created_by,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (channel.id, channel.workspace_id, channel.name, channel.kind, channel.topic,
             channel.created_by, channel.created_at),
        )  # fmt: skip
    except sqlite3.IntegrityError:
        raise Conflict(f"a channel named {channel.name!r} exists in this workspace") from None
    conn.executemany(
        "INSERT INTO channel_members (channel_id, agent_id, joined_at) VALUES (?, ?, ?)",
        [(channel.id, member, channel.created_at) for member in members],
    )


def _join_channel(channel_id: str, agent_id: str, conn: sqlite3.Connection) -> bool:
    """The agent as a member of the channel; whether it was not one already."""
    try:
        done = conn.execute(
            "INSERT OR IGNORE INTO channel_members (channel_id, agent_id, joined_at)"
            " VALUES (?, ?, ?)",
            (channel_id, agent_id, timestamp()),
        )
    except sqlite3.IntegrityError:
        raise NotFound("unknown channel or agent") from None
    return done.rowcount == 1


def _set_reaction(
    message_id: str, agent_id: str, emoji: str, on: bool, conn: sqlite3.Connection
) -> bool:
    """The agent's reaction to the message, added or removed; whether that changed anything."""
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
            (message_id, agent_id, emoji, timestamp()),
        )
    except sqlite3.IntegrityError:
        raise NotFound(f"unknown message {message_id!r}") from None
    return done.rowcount == 1


def _mark_read(message_id: str, agent_id: str, conn: sqlite3.Connection) -> str:
    """The agent's read of the message (the first one stays); when it was read."""
    try:
        conn.execute(
            "INSERT OR IGNORE INTO reads (message_id, agent_id, read_at) VALUES (?, ?, ?)",
            (message_id, agent_id, timestamp()),
        )
    except sqlite3.IntegrityError:
        raise NotFound(f"unknown message {message_id!r}") from None
    row = conn.execute(
        "SELECT read_at FROM reads WHERE message_id = ? AND agent_id = ?",
        (message_id, agent_id),
    ).fetchone()
    return str(row["read_at"])

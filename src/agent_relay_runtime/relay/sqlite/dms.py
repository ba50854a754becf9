"""DMs and group DMs: conversations (`channels` rows of kind 'dm' / 'group_dm') whose
members are their participants.

A 1:1 DM is named ``dm/<agent id>/<agent id>``, the two ids in order: the pair always
finds the same conversation, and the name's uniqueness makes two agents opening it at once
converge on one. A group DM is named ``group/<its id>`` and keeps its display name, if
any, in its metadata (``name``). A '/' never occurs in a channel name, so no route that
takes a channel name reaches a DM.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from functools import partial

from ..store import Channel, Conversation, NotFound, ordered_id
from .base import SqliteBase, timestamp
from .channel_admin import channel_from
from .read_state import UNREAD

__all__ = ["Dms", "dm_name"]


def dm_name(agent_id: str, other_id: str) -> str:
    low, high = sorted((agent_id, other_id))
    return f"dm/{low}/{high}"


class Dms(SqliteBase):
    async def open_dm(self, workspace_id: str, agent_id: str, other_id: str) -> Channel:
        name = dm_name(agent_id, other_id)
        # Made here, not in the writer process: ids are ordered within the process that
        # makes them (used only if the DM is new).
        channel_id = ordered_id("chn")
        return await self._write(
            partial(_open_dm, workspace_id, name, channel_id, agent_id, other_id)
        )

    async def create_group_dm(
        self, workspace_id: str, created_by: str, members: Sequence[str], name: str | None
    ) -> Channel:
        channel_id = ordered_id("chn")
        channel = Channel(
            id=channel_id, workspace_id=workspace_id, name=f"group/{channel_id}",
            kind="group_dm", created_by=created_by, metadata={"name": name} if name else {},
            created_at=timestamp(),
        )  # fmt: skip
        await self._write(partial(_insert_group_dm, channel, members))
        return channel

    async def dm_conversations(self, agent_id: str) -> list[Conversation]:
        def read(conn: sqlite3.Connection) -> list[Conversation]:
            rows = conn.execute(
                "SELECT c.*, (SELECT max(id) FROM messages m WHERE m.channel_id = c.id"
                "   AND m.thread_id IS NULL) AS last_id,"
                f" (SELECT count(*) FROM messages m WHERE {UNREAD}) AS unread_count"
                " FROM channel_members cm JOIN channels c ON c.id = cm.channel_id"
                " WHERE cm.agent_id = ? AND c.kind IN ('dm', 'group_dm')",
                (agent_id,),
            ).fetchall()
            found = []
            for row in rows:
                participants = conn.execute(
                    "SELECT a.name FROM channel_members cm JOIN agents a ON a.id = cm.agent_id"
                    " WHERE cm.channel_id = ? ORDER BY cm.joined_at, a.name",
                    (row["id"],),
                ).fetchall()
                last = (
                    row["last_id"]
                    and conn.execute(
                        "SELECT text, created_at FROM messages WHERE id = ?", (row["last_id"],)
                    ).fetchone()
                )
                conversation = Conversation(
                    channel=channel_from(row),
                    participants=[p["name"] for p in participants],
                    last_text=last["text"] if last else None,
                    unread_count=row["unread_count"],
                )
                found.append((last["created_at"] if last else row["created_at"], conversation))
            # The most recently active first.
            return [c for _, c in sorted(found, key=lambda each: each[0], reverse=True)]

        return await self._read(read)


def _open_dm(
    workspace_id: str,
    name: str,
    channel_id: str,
    agent_id: str,
    other_id: str,
    conn: sqlite3.Connection,
) -> Channel:
    """The DM named ``name`` (made as ``channel_id`` if new) with both agents as members;
    the DM."""
    now = timestamp()
    try:
        conn.execute(
            "INSERT OR IGNORE INTO channels (id, workspace_id, name, kind, created_by,"
            " created_at) VALUES (?, ?, ?, 'dm', ?, ?)",
            (channel_id, workspace_id, name, agent_id, now),
        )
        row = conn.execute(
            "SELECT * FROM channels WHERE workspace_id = ? AND name = ?",
            (workspace_id, name),
        ).fetchone()
        conn.executemany(
            "INSERT OR IGNORE INTO channel_members (channel_id, agent_id, joined_at)"
            " VALUES (?, ?, ?)",
            [(row["id"], agent_id, now), (row["id"], other_id, now)],
        )
    except sqlite3.IntegrityError:
        raise NotFound("unknown workspace or agent") from None
    return channel_from(row)


def _insert_group_dm(channel: Channel, members: Sequence[str], conn: sqlite3.Connection) -> None:
    """The new group DM's row and its members (each once)."""
    try:
        conn.execute(
            "INSERT INTO channels (id, workspace_id, name, kind, created_by, metadata,"
            " created_at) VALUES (?, ?, ?, 'group_dm', ?, ?, ?)",
            (channel.id, channel.workspace_id, channel.name, channel.created_by,
             json.dumps(channel.metadata), channel.created_at),
        )  # fmt: skip
        conn.executemany(
            "INSERT INTO channel_members (channel_id, agent_id, joined_at) VALUES (?, ?, ?)",
            [(channel.id, m, channel.created_at) for m in dict.fromkeys(members)],
        )
    except sqlite3.IntegrityError:
        raise NotFound("unknown workspace or agent") from None

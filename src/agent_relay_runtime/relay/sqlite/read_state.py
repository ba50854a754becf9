"""What an agent has not read (its inbox), and how far each member of a channel read.

The rules, one place for all of them:

- A message is read by an agent when the agent marked it read (the ``reads`` table), and
  an agent's own messages are read by it.
- Unread counts are of top-level messages (thread replies are read in their thread), of
  conversations the agent is a member of, posted since it joined (a newcomer does not
  inherit the history as unread).
- Archived channels, and channels the agent muted, are left out of the unread channels.
  A mention still reaches the inbox from a muted channel (muting silences the traffic,
  not what is addressed to the agent), not from an archived one.
- Mentions and reactions are of channels only: DMs are counted as unread DMs.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from ..store import Inbox, Mention, ReactionNote, ReadMarker, Unread
from .base import SqliteBase

__all__ = ["ReadState", "unread"]

# Messages of conversation ``cm.channel_id`` unread by member ``cm.agent_id``.
UNREAD = (
    "m.channel_id = cm.channel_id AND m.thread_id IS NULL AND m.agent_id != cm.agent_id"
    " AND m.created_at >= cm.joined_at AND NOT EXISTS (SELECT 1 FROM reads r"
    " WHERE r.message_id = m.id AND r.agent_id = cm.agent_id)"
)


def unread(
    conn: sqlite3.Connection,
    agent_id: str,
    kinds: Sequence[str],
    limit: int,
    *,
    skip_muted: bool = False,
    channel_id: str | None = None,
) -> list[Unread]:
    """The agent's conversations of ``kinds`` with unread messages, the newest first."""
    where = f"cm.agent_id = ? AND c.kind IN ({', '.join('?' * len(kinds))}) AND c.archived = 0"
    args: list[object] = [agent_id, *kinds]
    if skip_muted:
        where += (
            " AND NOT EXISTS (SELECT 1 FROM mutes mu"
            " WHERE mu.channel_id = c.id AND mu.agent_id = cm.agent_id)"
        )
    if channel_id is not None:
        where, args = where + " AND c.id = ?", [*args, channel_id]
    rows = conn.execute(
        "SELECT u.*, m.text AS latest_text, m.created_at AS latest_at, a.name AS latest_sender"
        " FROM (SELECT c.id AS channel_id, c.name AS channel_name, c.kind, count(*) AS count,"
        "   max(m.id) AS latest_id FROM channel_members cm"
        # CROSS JOIN keeps this order: the agent's conversations, then their messages by
        # the channel index (not every top-level message of the database first).
        "   CROSS JOIN channels c ON c.id = cm.channel_id"
        f"   CROSS JOIN messages m ON {UNREAD} WHERE {where} GROUP BY c.id) u"
        " JOIN messages m ON m.id = u.latest_id JOIN agents a ON a.id = m.agent_id"
        " ORDER BY u.latest_id DESC LIMIT ?",
        (*args, limit),
    ).fetchall()
    return [Unread(**dict(row)) for row in rows]


class ReadState(SqliteBase):
    async def inbox(self, agent_id: str, limit: int = 50) -> Inbox:
        def read(conn: sqlite3.Connection) -> Inbox:
            mentions = conn.execute(
                "SELECT m.id AS message_id, c.name AS channel_name, a.name AS sender, m.text,"
                " m.created_at FROM mentions mn JOIN messages m ON m.id = mn.message_id"
                " JOIN channels c ON c.id = m.channel_id JOIN agents a ON a.id = m.agent_id"
                " WHERE mn.agent_id = ? AND c.kind = 'channel' AND c.archived = 0"
                " AND m.agent_id != mn.agent_id AND NOT EXISTS (SELECT 1 FROM reads r"
                "   WHERE r.message_id = m.id AND r.agent_id = mn.agent_id)"
                " ORDER BY m.id DESC LIMIT ?",
                (agent_id, limit),
            ).fetchall()
            reactions = conn.execute(
                "SELECT r.message_id, c.name AS channel_name, r.emoji, a.name AS agent_name,"
                " r.created_at FROM messages m JOIN reactions r ON r.message_id = m.id"
                " JOIN channels c ON c.id = m.channel_id JOIN agents a ON a.id = r.agent_id"
                " WHERE m.agent_id = ? AND r.agent_id != m.agent_id AND c.kind = 'channel'"
                " ORDER BY r.created_at DESC LIMIT ?",
                (agent_id, limit),
            ).fetchall()
            return Inbox(
                channels=unread(conn, agent_id, ["channel"], limit, skip_muted=True),
                mentions=[Mention(**dict(row)) for row in mentions],
                dms=unread(conn, agent_id, ["dm", "group_dm"], limit),
                reactions=[ReactionNote(**dict(row)) for row in reactions],
            )

        return await self._read(read)

    async def read_status(self, channel_id: str) -> list[ReadMarker]:
        def read(conn: sqlite3.Connection) -> list[ReadMarker]:
            members = conn.execute(
                "SELECT cm.agent_id, a.name AS agent_name FROM channel_members cm"
                " JOIN agents a ON a.id = cm.agent_id WHERE cm.channel_id = ?"
                " ORDER BY cm.joined_at, a.name",
                (channel_id,),
            ).fetchall()
            markers = []
            for member in members:
                newest = conn.execute(
                    "SELECT id, at FROM (SELECT r.message_id AS id, r.read_at AS at FROM reads r"
                    "   JOIN messages m ON m.id = r.message_id"
                    "   WHERE r.agent_id = ? AND m.channel_id = ?"
                    " UNION ALL SELECT id, created_at FROM messages"
                    "   WHERE agent_id = ? AND channel_id = ?)"
                    " ORDER BY id DESC LIMIT 1",
                    (member["agent_id"], channel_id) * 2,
                ).fetchone()
                markers.append(
                    ReadMarker(
                        agent_id=member["agent_id"],
                        agent_name=member["agent_name"],
                        last_read_id=newest["id"] if newest else None,
                        last_read_at=newest["at"] if newest else None,
                    )
                )
            return markers

        return await self._read(read)

"""The workspace's ordered event log."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from functools import partial
from typing import Any

from ..store import (
    EventRecord,
)
from .base import SqliteBase, timestamp


class Events(SqliteBase):
    async def append_event(
        self,
        workspace_id: str,
        type: str,
        data: dict[str, Any],
        *,
        agent: str | None = None,
        action: str | None = None,
    ) -> EventRecord:
        return await self._write(partial(_write_event, workspace_id, type, data, agent, action))

    async def append_events(
        self, workspace_id: str, agent: str, events: list[dict[str, Any]]
    ) -> None:
        """Session events of ``agent`` (each with its ``type``), in one commit."""
        await self._write(partial(_write_events, workspace_id, agent, events))

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
        """The workspace's events with ``seq > cursor`` that pass the filters, in order,
        and the cursor to continue from (past the events the filters skipped)."""
        where, args = ["workspace_id = ?", "seq > ?", "seq <= ?"], [workspace_id, cursor]
        exact = [t for t in types if not t.endswith("*")]
        prefixes = [t.rstrip("*") for t in types if t.endswith("*")]
        if types:
            terms = [f"type IN ({', '.join('?' * len(exact))})"] if exact else []
            terms += ["type LIKE ? ESCAPE '\\'"] * len(prefixes)
            where.append("(" + " OR ".join(terms) + ")")
        if agent is not None:
            where.append("agent = ?")
        if action is not None:
            where.append("action = ?")

        def read(conn: sqlite3.Connection) -> tuple[list[EventRecord], int]:
            head = conn.execute(
                "SELECT coalesce(max(seq), 0) FROM events WHERE workspace_id = ?", (workspace_id,)
            ).fetchone()[0]
            params: list[Any] = [*args, head, *exact]
            params += [p.replace("%", "\\%").replace("_", "\\_") + "%" for p in prefixes]
            params += [v for v in (agent, action) if v is not None]
            rows = conn.execute(
                "SELECT seq, type, agent, action, data, created_at FROM events"
                f" WHERE {' AND '.join(where)} ORDER BY seq LIMIT ?",
                (*params, limit),
            ).fetchall()
            found = [EventRecord(**{**dict(r), "data": json.loads(r["data"])}) for r in rows]
            # A full page stops at its last event; a short one saw everything up to the head.
            return found, (found[-1].seq if len(found) == limit else max(head, cursor))

        return await self._read(read)


def _write_event(
    workspace_id: str,
    type: str,
    data: dict[str, Any],
    agent: str | None,
    action: str | None,
    conn: sqlite3.Connection,
) -> EventRecord:
    """One event (`insert_event` with the connection last); its record."""
    return insert_event(conn, workspace_id, type, data, agent=agent, action=action)


def _write_events(
    workspace_id: str, agent: str, events: list[dict[str, Any]], conn: sqlite3.Connection
) -> None:
    """Session events of ``agent``, each with its ``type``, in order."""
    for event in events:
        data = {k: v for k, v in event.items() if k != "type"}
        insert_event(conn, workspace_id, str(event["type"]), data, agent=agent)


def insert_event(
    conn: sqlite3.Connection,
    workspace_id: str,
    type: str,
    data: dict[str, Any],
    *,
    agent: str | None = None,
    action: str | None = None,
) -> EventRecord:
    now = timestamp()
    seq = append_event(conn, workspace_id, type, data, agent=agent, action=action, at=now)
    return EventRecord(seq=seq, type=type, agent=agent, action=action, data=data, created_at=now)


def append_event(
    conn: sqlite3.Connection,
    workspace_id: str,
    type: str,
    data: dict[str, Any],
    *,
    agent: str | None = None,
    action: str | None = None,
    at: str | None = None,
) -> int:
    """`insert_event` without the record built: its seq (for writes made many times a
    second, such as a message's)."""
    row = conn.execute(
        "INSERT INTO events (workspace_id, type, agent, action, data, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?) RETURNING seq",
        (workspace_id, type, agent, action, json.dumps(data), at or timestamp()),
    ).fetchone()
    return int(row[0])

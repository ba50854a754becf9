"""The workspace's ordered event log."""

from __future__ import annotations

import json
import sqlite3
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
        return await self._write(
            lambda c: insert_event(c, workspace_id, type, data, agent=agent, action=action)
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
    row = conn.execute(
        "INSERT INTO events (workspace_id, type, agent, action, data, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?) RETURNING seq",
        (workspace_id, type, agent, action, json.dumps(data), now),
    ).fetchone()
    return EventRecord(
        seq=row["seq"], type=type, agent=agent, action=action, data=data, created_at=now
    )

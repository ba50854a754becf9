"""Agents' presence: online while they heartbeat, offline when they say so or when their
heartbeats stop (`Presence.expire_presence`, run by the relay's housekeeping)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from functools import partial

from ..store import Agent, AgentStatus, NotFound
from .base import SqliteBase, timestamp

__all__ = ["Presence"]


class Presence(SqliteBase):
    async def set_presence(self, agent_id: str, status: AgentStatus) -> Agent:
        return await self._write(partial(_set_presence, agent_id, status))

    async def expire_presence(self, seen_before: str, live_nodes: Sequence[str]) -> list[Agent]:
        nodes = json.dumps(list(live_nodes))
        # Looked for first: a sweep that finds nothing commits nothing.
        if not await self._rows(f"SELECT 1 FROM agents WHERE {_STALE} LIMIT 1", seen_before, nodes):
            return []
        return await self._write(partial(_expire_presence, seen_before, nodes))


_RETURNING = (
    " RETURNING id, workspace_id, name, kind, node_id, metadata, persona, status, last_seen,"
    " created_at"
)


def _agent(row: sqlite3.Row) -> Agent:
    return Agent(**{**dict(row), "metadata": json.loads(row["metadata"])})


def _set_presence(agent_id: str, status: AgentStatus, conn: sqlite3.Connection) -> Agent:
    """The agent's status, seen now; the agent as stored."""
    row = conn.execute(
        f"UPDATE agents SET status = ?, last_seen = ? WHERE id = ?{_RETURNING}",
        (status, timestamp(), agent_id),
    ).fetchone()
    if row is None:
        raise NotFound(f"unknown agent {agent_id!r}")
    return _agent(row)


# Online, not seen since a time, not hosted by a live node (given as a JSON list).
_STALE = (
    "status = 'online' AND coalesce(last_seen, created_at) < ?"
    " AND (node_id IS NULL OR node_id NOT IN (SELECT value FROM json_each(?)))"
)


def _expire_presence(seen_before: str, live_nodes: str, conn: sqlite3.Connection) -> list[Agent]:
    """Offline: the agents online but not seen since ``seen_before``, except those hosted by
    a node of ``live_nodes``; those agents, as stored. Checked in the writer's transaction,
    so an agent seen meanwhile (a heartbeat, its node binding it again) stays online.
    ``last_seen`` stays as it was: the agent was not seen going."""
    rows = conn.execute(
        f"UPDATE agents SET status = 'offline' WHERE {_STALE}{_RETURNING}",
        (seen_before, live_nodes),
    ).fetchall()
    return [_agent(row) for row in rows]

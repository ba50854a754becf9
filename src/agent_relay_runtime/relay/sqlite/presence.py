"""Agents' presence: online while they heartbeat, offline when they say so."""

from __future__ import annotations

import json
import sqlite3
from functools import partial

from ..store import Agent, AgentStatus, NotFound
from .base import SqliteBase, timestamp

__all__ = ["Presence"]


class Presence(SqliteBase):
    async def set_presence(self, agent_id: str, status: AgentStatus) -> Agent:
        return await self._write(partial(_set_presence, agent_id, status))


def _set_presence(agent_id: str, status: AgentStatus, conn: sqlite3.Connection) -> Agent:
    """The agent's status, seen now; the agent as stored."""
    row = conn.execute(
        "UPDATE agents SET status = ?, last_seen = ? WHERE id = ? RETURNING id,"
        " workspace_id, name, kind, node_id, metadata, persona, status, last_seen,"
        " created_at",
        (status, timestamp(), agent_id),
    ).fetchone()
    if row is None:
        raise NotFound(f"unknown agent {agent_id!r}")
    return Agent(**{**dict(row), "metadata": json.loads(row["metadata"])})

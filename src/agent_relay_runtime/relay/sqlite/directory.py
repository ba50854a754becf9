"""Workspaces and their participants (agents, humans, system)."""

from __future__ import annotations

import json
import sqlite3
from functools import partial
from typing import Any

from ..store import (
    Agent,
    AgentKind,
    Conflict,
    Workspace,
    hash_secret,
    new_secret,
    ordered_id,
)
from .base import SqliteBase, timestamp


class Directory(SqliteBase):
    async def create_workspace(self, name: str) -> tuple[Workspace, str]:
        key = new_secret("relay_ws_")
        workspace = Workspace(id=ordered_id("ws"), name=name, created_at=timestamp())
        await self._write(partial(_insert_workspace, workspace, hash_secret(key)))
        return workspace, key

    async def workspace_by_key(self, key: str) -> Workspace | None:
        hashed = hash_secret(key)
        return await self._directory_lookup(
            ("workspace_key", hashed), lambda: self._workspace_where("key_hash = ?", hashed)
        )

    async def workspace_by_id(self, workspace_id: str) -> Workspace | None:
        return await self._directory_lookup(
            ("workspace", workspace_id), lambda: self._workspace_where("id = ?", workspace_id)
        )

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
            node_id=node_id, metadata=metadata or {}, persona=persona, created_at=timestamp(),
        )  # fmt: skip
        await self._write(partial(_insert_agent, agent, hash_secret(token)))
        return agent, token

    async def agent_by_token(self, token: str) -> Agent | None:
        # The token given at registration, or one a node was given for the agent since.
        hashed = hash_secret(token)
        return await self._directory_lookup(
            ("agent_token", hashed),
            lambda: self._agent_where(
                "token_hash = ? OR id = (SELECT agent_id FROM agent_tokens WHERE token_hash = ?)",
                hashed,
                hashed,
            ),
        )

    async def agent_by_name(self, workspace_id: str, name: str) -> Agent | None:
        return await self._directory_lookup(
            ("agent_name", workspace_id, name),
            lambda: self._agent_where("workspace_id = ? AND name = ?", workspace_id, name),
        )

    async def agent_by_id(self, agent_id: str) -> Agent | None:
        return await self._directory_lookup(
            ("agent", agent_id), lambda: self._agent_where("id = ?", agent_id)
        )

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


def _insert_workspace(workspace: Workspace, key_hash: str, conn: sqlite3.Connection) -> None:
    """The new workspace's row, with the hash of its key."""
    try:
        conn.execute(
            "INSERT INTO workspaces (id, name, key_hash, created_at) VALUES (?, ?, ?, ?)",
            (workspace.id, workspace.name, key_hash, workspace.created_at),
        )
    except sqlite3.IntegrityError:
        raise Conflict(f"a workspace named {workspace.name!r} exists") from None


def _insert_agent(agent: Agent, token_hash: str, conn: sqlite3.Connection) -> None:
    """The new agent's row, with the hash of its token, and its delivery cursor."""
    try:
        conn.execute(
            "INSERT INTO agents (id, workspace_id, name, kind, token_hash, node_id,"
            " metadata, persona, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (agent.id, agent.workspace_id, agent.name, agent.kind, token_hash, agent.node_id,
             json.dumps(agent.metadata), agent.persona, agent.created_at),
        )  # fmt: skip
    except sqlite3.IntegrityError:
        raise Conflict(f"an agent named {agent.name!r} exists in this workspace") from None
    conn.execute("INSERT INTO agent_cursors (agent_id) VALUES (?)", (agent.id,))

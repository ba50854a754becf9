"""Nodes enrolled over REST (relaycast's ``/v1/nodes``): node tokens, the roster, and the
agents bound to a node.

A node token is 192 random bits (``nt_live_…``), returned once; the store keeps its
SHA-256 in ``nodes.token_hash``, one token per node: enrolling the node again replaces
it. Tokens are looked up once per node connection, so they are not in the directory
cache. A binding is a row of ``node_agent_bindings`` (one node per agent); the agents a
node hosts over its socket are those whose ``agents.node_id`` is the node's and that are
online, which only the caller can vouch for (the node is connected now: ``hosted``).
"""

from __future__ import annotations

import json
import sqlite3
from functools import partial
from typing import Any

from ..store import (
    Conflict,
    NodeBinding,
    NodeEntry,
    NodeRole,
    NotFound,
    hash_secret,
    new_secret,
    ordered_id,
)
from .base import SqliteBase, timestamp

__all__ = ["NodeRegistry", "node_entry_of"]

_BOUND = (
    "SELECT b.id, b.node_id, b.agent_id, a.name AS agent_name, b.session_ref, b.priority,"
    " (a.node_id IS b.node_id AND a.status = 'online') AS hosted, b.created_at, b.updated_at"
    " FROM node_agent_bindings b JOIN agents a ON a.id = b.agent_id"
)
_HOSTED_ONLY = (
    "SELECT NULL AS id, a.node_id, a.id AS agent_id, a.name AS agent_name,"
    " NULL AS session_ref, 0 AS priority, 1 AS hosted,"
    " coalesce(a.last_seen, a.created_at) AS created_at, NULL AS updated_at"
    " FROM agents a WHERE a.node_id = ? AND a.status = 'online' AND NOT EXISTS"
    " (SELECT 1 FROM node_agent_bindings b WHERE b.agent_id = a.id AND b.node_id = a.node_id)"
    " ORDER BY a.name"
)


class NodeRegistry(SqliteBase):
    async def enroll_node(
        self,
        workspace_id: str,
        name: str,
        *,
        node_id: str | None = None,
        role: NodeRole | None = None,
        capabilities: list[dict[str, Any]] | None = None,
        max_agents: int | None = None,
        tags: list[str] | None = None,
        version: str | None = None,
    ) -> tuple[NodeEntry, str]:
        token, now = new_secret("nt_live_"), timestamp()
        enrolled = await self._write(
            partial(
                _enroll_node, workspace_id, name, node_id, role, capabilities, max_agents, tags,
                version, ordered_id("node"), hash_secret(token), now,
            )
        )  # fmt: skip
        return enrolled, token

    async def node_entry(self, workspace_id: str, name: str) -> NodeEntry | None:
        rows = await self._rows(
            "SELECT * FROM nodes WHERE workspace_id = ? AND name = ?", workspace_id, name
        )
        return node_entry_of(rows[0]) if rows else None

    async def node_entry_by_id(self, node_id: str) -> NodeEntry | None:
        rows = await self._rows("SELECT * FROM nodes WHERE id = ?", node_id)
        return node_entry_of(rows[0]) if rows else None

    async def node_entries(self, workspace_id: str) -> list[NodeEntry]:
        rows = await self._rows(
            "SELECT * FROM nodes WHERE workspace_id = ? ORDER BY name", workspace_id
        )
        return [node_entry_of(row) for row in rows]

    async def node_by_token(self, token: str) -> NodeEntry | None:
        rows = await self._rows("SELECT * FROM nodes WHERE token_hash = ?", hash_secret(token))
        return node_entry_of(rows[0]) if rows else None

    async def bind_node_agent(
        self,
        node_id: str,
        agent_id: str,
        *,
        session_ref: str | None = None,
        priority: int = 0,
        hosted: bool = False,
    ) -> NodeBinding:
        now = timestamp()
        return await self._write(
            partial(
                _bind_node_agent, node_id, agent_id, session_ref, priority, hosted,
                ordered_id("nab"), now,
            )
        )  # fmt: skip

    async def node_bindings(self, node_id: str, *, hosted: bool = False) -> list[NodeBinding]:
        def read(conn: sqlite3.Connection) -> list[NodeBinding]:
            rows = conn.execute(
                f"{_BOUND} WHERE b.node_id = ? ORDER BY b.created_at, b.id", (node_id,)
            ).fetchall()
            if hosted:
                rows += conn.execute(_HOSTED_ONLY, (node_id,)).fetchall()
            return [_binding(row, hosted) for row in rows]

        return await self._read(read)

    async def unbind_node_agent(self, node_id: str, agent_id: str) -> bool:
        return await self._write(partial(_unbind_node_agent, node_id, agent_id))


def _enroll_node(
    workspace_id: str,
    name: str,
    node_id: str | None,
    role: NodeRole | None,
    capabilities: list[dict[str, Any]] | None,
    max_agents: int | None,
    tags: list[str] | None,
    version: str | None,
    new_id: str,
    token_hash: str,
    now: str,
    conn: sqlite3.Connection,
) -> NodeEntry:
    """The node (``node_id`` or ``new_id`` if new), its fields and token hash; its entry."""
    named = conn.execute(
        "SELECT * FROM nodes WHERE workspace_id = ? AND name = ?", (workspace_id, name)
    ).fetchone()
    row = named
    if node_id is not None:
        row = conn.execute("SELECT * FROM nodes WHERE id = ?", (node_id,)).fetchone()
        if row is not None and row["workspace_id"] != workspace_id:
            raise Conflict(f"the node id {node_id!r} is taken")
        if named is not None and named["id"] != node_id:
            raise Conflict(f"the name {name!r} is another node's ({named['id']})")
    if row is None:
        row = conn.execute(
            "INSERT INTO nodes (id, workspace_id, name, created_at) VALUES (?, ?, ?, ?)"
            " RETURNING *",
            (node_id or new_id, workspace_id, name, now),
        ).fetchone()
    updated = conn.execute(
        "UPDATE nodes SET name = ?, role = ?, max_agents = ?, capabilities = ?, tags = ?,"
        " version = ?, token_hash = ? WHERE id = ? RETURNING *",
        (
            name,
            role or row["role"],
            row["max_agents"] if max_agents is None else max_agents,
            row["capabilities"] if capabilities is None else json.dumps(capabilities),
            row["tags"] if tags is None else json.dumps(tags),
            row["version"] if version is None else version,
            token_hash,
            row["id"],
        ),
    ).fetchone()
    return node_entry_of(updated)


def _bind_node_agent(
    node_id: str,
    agent_id: str,
    session_ref: str | None,
    priority: int,
    hosted: bool,
    new_id: str,
    now: str,
    conn: sqlite3.Connection,
) -> NodeBinding:
    """The agent bound to the node (``new_id`` if a new binding), in capacity; the binding."""
    node = conn.execute("SELECT name, max_agents FROM nodes WHERE id = ?", (node_id,)).fetchone()
    if node is None:
        raise NotFound(f"unknown node {node_id!r}")
    onboard = _on_node(conn, node_id, hosted)
    capacity = int(node["max_agents"])
    if capacity and agent_id not in onboard and len(onboard) >= capacity:
        raise Conflict(f"node {node['name']!r} has {capacity} agent(s) already")
    before = conn.execute(
        "SELECT node_id FROM node_agent_bindings WHERE agent_id = ?", (agent_id,)
    ).fetchone()
    if before is not None and before["node_id"] == node_id:
        conn.execute(
            "UPDATE node_agent_bindings SET session_ref = ?, priority = ?,"
            " updated_at = ? WHERE agent_id = ?",
            (session_ref, priority, now, agent_id),
        )
    else:  # a new binding, from the node it was bound to before if any
        conn.execute("DELETE FROM node_agent_bindings WHERE agent_id = ?", (agent_id,))
        conn.execute(
            "INSERT INTO node_agent_bindings (id, node_id, agent_id, session_ref,"
            " priority, created_at) VALUES (?, ?, ?, ?, ?, ?)",
            (new_id, node_id, agent_id, session_ref, priority, now),
        )
    row = conn.execute(f"{_BOUND} WHERE b.agent_id = ?", (agent_id,)).fetchone()
    return _binding(row, hosted)


def _unbind_node_agent(node_id: str, agent_id: str, conn: sqlite3.Connection) -> bool:
    """The agent's binding to the node removed; whether there was one."""
    done = conn.execute(
        "DELETE FROM node_agent_bindings WHERE node_id = ? AND agent_id = ?",
        (node_id, agent_id),
    )
    return done.rowcount > 0


def _on_node(conn: sqlite3.Connection, node_id: str, hosted: bool) -> set[str]:
    """The ids of the agents on the node: bound to it, and hosted by it if ``hosted``."""
    found = {
        row[0]
        for row in conn.execute(
            "SELECT agent_id FROM node_agent_bindings WHERE node_id = ?", (node_id,)
        )
    }
    if hosted:
        found |= {
            row[0]
            for row in conn.execute(
                "SELECT id FROM agents WHERE node_id = ? AND status = 'online'", (node_id,)
            )
        }
    return found


def node_entry_of(row: sqlite3.Row) -> NodeEntry:
    """A ``nodes`` row as the roster's entry."""
    return NodeEntry(
        **{
            **dict(row),
            "capabilities": json.loads(row["capabilities"]),
            "tags": json.loads(row["tags"]),
            "enrolled": row["token_hash"] is not None,
        }
    )


def _binding(row: sqlite3.Row, live: bool) -> NodeBinding:
    """``live``: whether the node is connected now (else nothing is hosted by it)."""
    return NodeBinding(**{**dict(row), "hosted": bool(row["hosted"]) and live})

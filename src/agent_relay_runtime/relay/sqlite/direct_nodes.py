"""Agents' implicit direct nodes (relaycast's ``POST /v1/agent/node-token``).

The relaycast SDK's ``WsClient``, given an agent token, asks for a node token on every
(re)connect and connects to ``/v1/node/ws`` as the agent's own node, without registering
the agent on it: the node *is* the agent's connection. So each agent has at most one such
node (``nodes.direct_agent_id``, migration 0010), made on first use: role ``direct``,
``max_agents`` 1, named ``direct-<agent name>`` (``direct-<agent id>`` if that name is
another node's). Each call gives it a new node token (its SHA-256 kept, as for enrolled
nodes); the one before stops working for new connections.
"""

from __future__ import annotations

import sqlite3
from functools import partial

from ..store import Conflict, NodeEntry, NotFound, hash_secret, new_secret, ordered_id
from .base import SqliteBase, timestamp
from .node_registry import node_entry_of

__all__ = ["DirectNodes", "direct_node_name"]


def direct_node_name(agent_name: str) -> str:
    return f"direct-{agent_name}"


class DirectNodes(SqliteBase):
    async def direct_node_token(self, agent_id: str) -> tuple[NodeEntry, str]:
        token = new_secret("nt_live_")
        node = await self._write(
            partial(
                _direct_node_token, agent_id, ordered_id("node"), hash_secret(token), timestamp()
            )
        )
        return node, token

    async def host_direct_agent(self, node_id: str) -> tuple[str, int]:
        return await self._write(partial(_host_direct_agent, node_id, timestamp()))


def _direct_node_token(
    agent_id: str, new_id: str, token_hash: str, now: str, conn: sqlite3.Connection
) -> NodeEntry:
    """The agent's direct node (``new_id`` if it has none yet) with ``token_hash`` as its
    only token; its entry."""
    row = conn.execute("SELECT * FROM nodes WHERE direct_agent_id = ?", (agent_id,)).fetchone()
    if row is None:
        agent = conn.execute(
            "SELECT workspace_id, name FROM agents WHERE id = ?", (agent_id,)
        ).fetchone()
        if agent is None:
            raise NotFound(f"unknown agent {agent_id!r}")
        name = direct_node_name(agent["name"])
        taken = conn.execute(
            "SELECT 1 FROM nodes WHERE workspace_id = ? AND name = ?",
            (agent["workspace_id"], name),
        ).fetchone()
        row = conn.execute(
            "INSERT INTO nodes (id, workspace_id, name, role, max_agents, tags, direct_agent_id,"
            " created_at) VALUES (?, ?, ?, 'direct', 1, ?, ?, ?) RETURNING *",
            (
                new_id, agent["workspace_id"], direct_node_name(agent_id) if taken else name,
                '["implicit","direct"]', agent_id, now,
            ),
        ).fetchone()  # fmt: skip
    row = conn.execute(
        "UPDATE nodes SET token_hash = ? WHERE id = ? RETURNING *", (token_hash, row["id"])
    ).fetchone()
    return node_entry_of(row)


def _host_direct_agent(node_id: str, now: str, conn: sqlite3.Connection) -> tuple[str, int]:
    """The direct node's agent online, hosted by it; the agent's id and acknowledged seq.
    Its tokens are left alone: they are the agent's own, not the node's to revoke."""
    row = conn.execute(
        "UPDATE agents SET node_id = ?, status = 'online', last_seen = ?, gone_seq = NULL"
        " WHERE id = (SELECT direct_agent_id FROM nodes WHERE id = ?) RETURNING id",
        (node_id, now, node_id),
    ).fetchone()
    if row is None:
        raise Conflict(f"node {node_id!r} is no agent's direct node")
    acked = conn.execute(
        "SELECT acked_seq FROM agent_cursors WHERE agent_id = ?", (row["id"],)
    ).fetchone()
    return str(row["id"]), int(acked["acked_seq"]) if acked is not None else 0

"""Nodes (the runtimes that host agents and handle actions) and the agents they host."""

from __future__ import annotations

import json
import sqlite3
from functools import partial
from typing import Any

from ..store import (
    AGENT_DEREGISTERED,
    Agent,
    Conflict,
    Node,
    NotFound,
    hash_secret,
    new_secret,
    ordered_id,
)
from .base import timestamp
from .directory import Directory
from .events import insert_event


class Nodes(Directory):
    async def node_online(
        self,
        workspace_id: str,
        name: str,
        *,
        capabilities: list[dict[str, Any]],
        version: str | None = None,
    ) -> Node:
        """Record that the node named ``name`` is connected (created on first sight)."""
        now = timestamp()
        return await self._write(
            partial(
                _node_online, ordered_id("node"), workspace_id, name, capabilities, version, now
            )
        )

    async def node_offline(self, node_id: str) -> None:
        """The node is gone: it and the agents it hosted are offline."""
        await self._write(partial(_node_offline, node_id))

    async def list_nodes(self, workspace_id: str) -> list[Node]:
        rows = await self._rows(
            "SELECT * FROM nodes WHERE workspace_id = ? ORDER BY name", workspace_id
        )
        return [_node(row) for row in rows]

    async def bind_agent(
        self, workspace_id: str, name: str, node_id: str
    ) -> tuple[Agent, str, int]:
        """The agent ``name`` hosted by ``node_id`` (registered if new), online, with a
        fresh token for it and its acknowledged seq. `Conflict` if the name belongs to a
        participant no node hosts (a human, or an agent registered over REST)."""
        token, now = new_secret("at_live_"), timestamp()
        # Made here, used if the agent is new: ids sort by creation in the relay's process.
        new_id, unused_hash = ordered_id("agt"), hash_secret(new_secret("at_unused_"))
        agent_id, acked = await self._write(
            partial(
                _bind_agent, workspace_id, name, node_id, new_id, unused_hash,
                hash_secret(token), now,
            )
        )  # fmt: skip
        agent = await self.agent_by_id(agent_id)
        assert agent is not None
        return agent, token, acked

    async def unbind_agent(self, agent_id: str, *, forget: bool = False) -> None:
        """The node no longer hosts the agent: offline, the node's tokens for it revoked,
        and gone (``agent.deregistered`` logged) until a node registers it again.

        With ``forget`` (its session never ran: a spawn that failed), the agent is removed
        from the workspace, unless something already refers to it (a message, a delivery,
        a channel it created …): the foreign keys say so, and then it stays, offline."""
        await self._write(partial(_unbind_agent, agent_id, forget))


def _node_online(
    node_id: str,
    workspace_id: str,
    name: str,
    capabilities: list[dict[str, Any]],
    version: str | None,
    now: str,
    conn: sqlite3.Connection,
) -> Node:
    """The node online, inserted with ``node_id`` if its name is new; the node as stored."""
    row = conn.execute(
        "INSERT INTO nodes (id, workspace_id, name, capabilities, version, status,"
        " last_seen, created_at) VALUES (?, ?, ?, ?, ?, 'online', ?, ?)"
        " ON CONFLICT (workspace_id, name) DO UPDATE SET"
        " capabilities = excluded.capabilities,"
        " version = excluded.version, status = 'online', last_seen = excluded.last_seen"
        " RETURNING *",
        (node_id, workspace_id, name, json.dumps(capabilities), version, now, now),
    ).fetchone()
    return _node(row)


def _node_offline(node_id: str, conn: sqlite3.Connection) -> None:
    """The node and the agents it hosted offline, seen now."""
    now = timestamp()
    conn.execute("UPDATE nodes SET status = 'offline', last_seen = ? WHERE id = ?", (now, node_id))
    conn.execute(
        "UPDATE agents SET status = 'offline', last_seen = ? WHERE node_id = ?",
        (now, node_id),
    )


def _bind_agent(
    workspace_id: str,
    name: str,
    node_id: str,
    new_id: str,
    unused_hash: str,
    token_hash: str,
    now: str,
    conn: sqlite3.Connection,
) -> tuple[str, int]:
    """The agent online on the node (``new_id`` if new) with a token; its id and acked seq."""
    row = conn.execute(
        "SELECT a.id, a.node_id, a.kind, n.direct_agent_id IS a.id AS direct FROM agents a"
        " LEFT JOIN nodes n ON n.id = a.node_id WHERE a.workspace_id = ? AND a.name = ?",
        (workspace_id, name),
    ).fetchone()
    if row is None:
        agent_id = new_id
        # Its own token_hash is of a secret nobody is given: every token a node
        # hands out is in agent_tokens, where deregistering revokes it.
        conn.execute(
            "INSERT INTO agents (id, workspace_id, name, kind, token_hash, node_id,"
            " status, last_seen, created_at)"
            " VALUES (?, ?, ?, 'agent', ?, ?, 'online', ?, ?)",
            (agent_id, workspace_id, name, unused_hash, node_id, now, now),
        )
        conn.execute("INSERT INTO agent_cursors (agent_id) VALUES (?)", (agent_id,))
    elif row["node_id"] is None or row["kind"] != "agent":
        raise Conflict(f"the name {name!r} belongs to a participant no node hosts")
    elif row["direct"]:
        # Hosted by its own direct node (its token's holder connects as it): no other
        # node takes it, or any node token could mint tokens for that agent.
        raise Conflict(f"the agent {name!r} connects through its own direct node")
    else:
        agent_id = row["id"]
        conn.execute(
            "UPDATE agents SET node_id = ?, status = 'online', last_seen = ?, gone_seq = NULL"
            " WHERE id = ?",
            (node_id, now, agent_id),
        )
    conn.execute(
        "INSERT INTO agent_tokens (token_hash, agent_id, created_at) VALUES (?, ?, ?)",
        (token_hash, agent_id, now),
    )
    acked = conn.execute(
        "SELECT acked_seq FROM agent_cursors WHERE agent_id = ?", (agent_id,)
    ).fetchone()
    return agent_id, int(acked["acked_seq"])


def _unbind_agent(agent_id: str, forget: bool, conn: sqlite3.Connection) -> None:
    """The agent offline and gone (``agent.deregistered`` logged), its node tokens revoked,
    and with ``forget`` removed if it can be."""
    row = conn.execute(
        "SELECT a.workspace_id, a.name, a.node_id, n.name AS node FROM agents a"
        " LEFT JOIN nodes n ON n.id = a.node_id WHERE a.id = ?",
        (agent_id,),
    ).fetchone()
    if row is None:
        raise NotFound(f"unknown agent {agent_id!r}")
    data = {"agent_id": agent_id, "node_id": row["node_id"], "node": row["node"]}
    gone = insert_event(conn, row["workspace_id"], AGENT_DEREGISTERED, data, agent=row["name"])
    conn.execute(
        "UPDATE agents SET status = 'offline', last_seen = ?, gone_seq = ? WHERE id = ?",
        (gone.created_at, gone.seq, agent_id),
    )
    conn.execute("DELETE FROM agent_tokens WHERE agent_id = ?", (agent_id,))
    if forget:
        _forget(conn, agent_id)


def _forget(conn: sqlite3.Connection, agent_id: str) -> None:
    # An agent with history stays: what refers to it refuses the delete (foreign keys),
    # and its deliveries, which have none (migration 0011), are asked.
    if conn.execute("SELECT 1 FROM deliveries WHERE agent_id = ? LIMIT 1", (agent_id,)).fetchone():
        return
    conn.execute("SAVEPOINT forget_agent")
    try:
        for table in ("channel_members", "mutes", "agent_cursors"):
            conn.execute(f"DELETE FROM {table} WHERE agent_id = ?", (agent_id,))
        conn.execute("DELETE FROM agents WHERE id = ?", (agent_id,))
    except sqlite3.IntegrityError:
        conn.execute("ROLLBACK TO forget_agent")
    conn.execute("RELEASE forget_agent")


def _node(row: sqlite3.Row) -> Node:
    return Node(**{**dict(row), "capabilities": json.loads(row["capabilities"])})

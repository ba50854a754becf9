"""A delivery as its rows make it: its id, its model, and its push payload.

The push payload is the ``message.created`` data a ``deliver`` frame carries (relaycast's
shape), and what a delivery polled over REST carries as its ``message``. It is built
once when the message is written; a delivery read back later (a node's backlog, a poll)
gets the same payload from the rows, attachments included.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any, Literal

from ..store import (
    Delivery,
    DeliveryStatus,
    Message,
    NotFound,
    delivery_id,
)
from .events import insert_event

__all__ = [
    "WITH_MESSAGE",
    "attachment_view",
    "attachments_of",
    "delivery_from",
    "delivery_keys",
    "insert_message",
    "keyed_rows",
    "next_seqs",
    "push_payload",
    "receipt_event",
    "with_payloads",
]

# A delivery's row with what its payload is made of (its message, sender, conversation).
WITH_MESSAGE = (
    "SELECT d.*, m.workspace_id, m.channel_id, m.agent_id AS sender_id, m.text, m.blocks,"
    " m.metadata, m.thread_id, m.created_at, a.name AS from_name, c.name AS channel_name,"
    " c.kind AS channel_kind"
    " FROM deliveries d JOIN messages m ON m.id = d.message_id"
    " JOIN agents a ON a.id = m.agent_id JOIN channels c ON c.id = m.channel_id"
)


def delivery_keys(rows: Sequence[tuple[str, int]]) -> str | None:
    """A message's ``delivery_keys`` column: its deliveries' keys, ``agent_id:seq`` separated
    by spaces (None: it has none)."""
    return " ".join(f"{agent}:{seq}" for agent, seq in rows) or None


def keyed_rows(
    conn: sqlite3.Connection, message_id: str, select: str = "SELECT d.* FROM deliveries d"
) -> list[sqlite3.Row]:
    """The message's delivery rows, found by the keys on its row (``select`` may join more:
    the deliveries are ``d``), in the order of its targets."""
    found = conn.execute("SELECT delivery_keys FROM messages WHERE id = ?", (message_id,))
    row = found.fetchone()
    if row is None or not row[0]:
        return []
    keys = [(agent, int(seq)) for agent, _, seq in (k.rpartition(":") for k in row[0].split())]
    rows: list[sqlite3.Row] = []
    for start in range(0, len(keys), 500):  # well within SQLite's limit on parameters
        chunk = keys[start : start + 500]
        # An OR of keys, not a row value IN (VALUES …): SQLite scans the table for that.
        either = " OR ".join(["(d.agent_id = ? AND d.seq = ?)"] * len(chunk))
        found = conn.execute(f"{select} WHERE {either}", [v for key in chunk for v in key])
        rows += found.fetchall()
    order = {key: n for n, key in enumerate(keys)}
    return sorted(rows, key=lambda r: order[(r["agent_id"], r["seq"])])


def next_seqs(conn: sqlite3.Connection, targets: Sequence[str]) -> list[tuple[str, int]]:
    """Each target agent's next delivery seq, taken (in one statement), in the order of
    ``targets``; `NotFound` for an unknown agent."""
    if not targets:
        return []
    seqs = dict(
        conn.execute(
            "UPDATE agent_cursors SET last_seq = last_seq + 1"
            f" WHERE agent_id IN ({', '.join('?' * len(targets))}) RETURNING agent_id, last_seq",
            targets,
        ).fetchall()
    )
    if len(seqs) < len(targets):
        unknown = next(agent for agent in targets if agent not in seqs)
        raise NotFound(f"unknown target agent {unknown!r}")
    return [(agent, seqs[agent]) for agent in targets]


def insert_message(
    conn: sqlite3.Connection,
    message: Message,
    rows: Sequence[tuple[str, int]],
    mode: Literal["wait", "steer"],
) -> None:
    """The message's row, with its deliveries' keys, and a pending delivery to each
    ``(agent, seq)`` of ``rows`` (from `next_seqs`)."""
    conn.execute(
        "INSERT INTO messages (id, workspace_id, channel_id, agent_id, text, blocks, metadata,"
        " thread_id, created_at, delivery_keys) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (message.id, message.workspace_id, message.channel_id, message.agent_id, message.text,
         None if message.blocks is None else json.dumps(message.blocks),
         json.dumps(message.metadata), message.thread_id, message.created_at,
         delivery_keys(rows)),
    )  # fmt: skip
    if not rows:
        return
    values = [v for a, seq in rows for v in (a, seq, message.id, mode, message.created_at)]
    conn.execute(
        "INSERT INTO deliveries (agent_id, seq, message_id, mode, status, updated_at)"
        " VALUES " + ", ".join(["(?, ?, ?, ?, 'pending', ?)"] * len(rows)),
        values,
    )


def delivery_from(row: sqlite3.Row) -> Delivery:
    fields = {k: row[k] for k in Delivery.model_fields if k != "id" and k in row.keys()}  # noqa: SIM118 - a Row is not a dict
    fields["acked"] = bool(row["acked"])
    fields["retryable"] = None if row["retryable"] is None else bool(row["retryable"])
    return Delivery(id=delivery_id(row["agent_id"], row["seq"]), **fields)


def attachment_view(file: sqlite3.Row) -> dict[str, Any]:
    """A file attached to a message, as relaycast's `FileAttachment`."""
    received = file["received"]
    return {
        "file_id": file["id"],
        "filename": file["filename"],
        "content_type": file["content_type"],
        "size_bytes": received if received is not None else file["size"],
    }


def attachments_of(
    conn: sqlite3.Connection, message_ids: Iterable[str]
) -> dict[str, list[dict[str, Any]]]:
    """Each message's attachments not deleted, in order (messages without any: absent)."""
    wanted = list(dict.fromkeys(message_ids))
    found: dict[str, list[dict[str, Any]]] = {}
    if not wanted:
        return found
    rows = conn.execute(
        "SELECT ma.message_id, f.* FROM message_attachments ma JOIN files f ON f.id = ma.file_id"
        f" WHERE ma.message_id IN ({', '.join('?' * len(wanted))}) AND f.status != 'deleted'"
        " ORDER BY ma.message_id, ma.position",
        wanted,
    )
    for row in rows:
        found.setdefault(row["message_id"], []).append(attachment_view(row))
    return found


def push_payload(
    message: Message,
    names: dict[str, Any],
    mode: str,
    attachments: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    """The ``message.created`` data a ``deliver`` frame carries (relaycast's shape)."""
    channel = names["channel_name"] if names.get("channel_kind", "channel") == "channel" else None
    return {
        "id": message.id,
        "channel_id": message.channel_id,
        "agent_id": message.agent_id,
        "agent_name": names["from_name"],
        "text": message.text,
        "blocks": message.blocks,
        "metadata": message.metadata,
        "has_attachments": bool(attachments),
        "thread_id": message.thread_id,
        "created_at": message.created_at,
        "mentions": message.mentions,
        "attachments": list(attachments),
        "injection_mode": mode,
        "channel_name": channel,
        "conversation_kind": names.get("channel_kind", "channel"),
        "from_name": names["from_name"],
    }


def with_payloads(
    conn: sqlite3.Connection, rows: Sequence[sqlite3.Row]
) -> list[tuple[Delivery, dict[str, Any]]]:
    """Rows read with `WITH_MESSAGE`, each as its delivery and push payload."""
    attached = attachments_of(conn, (row["message_id"] for row in rows))
    found = []
    for row in rows:
        message = Message(
            id=row["message_id"], workspace_id=row["workspace_id"], channel_id=row["channel_id"],
            agent_id=row["sender_id"], text=row["text"],
            blocks=None if row["blocks"] is None else json.loads(row["blocks"]),
            metadata=json.loads(row["metadata"]), thread_id=row["thread_id"],
            created_at=row["created_at"],
        )  # fmt: skip
        names = {k: row[k] for k in ("from_name", "channel_name", "channel_kind")}
        payload = push_payload(message, names, row["mode"], attached.get(row["message_id"], ()))
        found.append((delivery_from(row), payload))
    return found


def receipt_event(
    conn: sqlite3.Connection,
    delivery: Delivery,
    status: DeliveryStatus,
    *,
    reason: str | None = None,
    retryable: bool | None = None,
    available_at: str | None = None,
    evidence: str | None = None,
) -> None:
    """Append ``delivery.<status>`` for a receipt just recorded (under the agent's name, to
    the agent's workspace)."""
    name, workspace_id = conn.execute(
        "SELECT name, workspace_id FROM agents WHERE id = ?", (delivery.agent_id,)
    ).fetchone()
    insert_event(
        conn, workspace_id, f"delivery.{status}",
        {"delivery_id": delivery.id, "message_id": delivery.message_id, "agent_name": name,
         "seq": delivery.seq, "reason": reason, "retryable": retryable,
         "available_at": available_at, "evidence": evidence},
        agent=name,
    )  # fmt: skip

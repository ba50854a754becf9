"""Posting a message with its durable deliveries; acknowledgements and receipts."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any, Literal

from ..store import (
    AckOutOfRange,
    Delivery,
    DeliveryStatus,
    Message,
    NotFound,
    ordered_id,
)
from .base import SqliteBase, timestamp
from .events import insert_event


class Deliveries(SqliteBase):
    async def post_message(
        self,
        *,
        workspace_id: str,
        channel_id: str,
        sender_id: str,
        text: str,
        targets: Sequence[str],
        mode: Literal["wait", "steer"] = "wait",
        thread_id: str | None = None,
        mentions: Sequence[str] = (),
        blocks: Any = None,
        metadata: dict[str, Any] | None = None,
    ) -> tuple[Message, list[Delivery]]:
        now = timestamp()
        message = Message(
            id=ordered_id("msg"), workspace_id=workspace_id, channel_id=channel_id,
            agent_id=sender_id, text=text, blocks=blocks, metadata=metadata or {},
            thread_id=thread_id, mentions=list(mentions), created_at=now,
        )  # fmt: skip

        def insert(conn: sqlite3.Connection) -> list[Delivery]:
            try:
                conn.execute(
                    "INSERT INTO messages (id, workspace_id, channel_id, agent_id, text, blocks,"
                    " metadata, thread_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (message.id, workspace_id, channel_id, sender_id, text,
                     None if blocks is None else json.dumps(blocks),
                     json.dumps(message.metadata), thread_id, now),
                )  # fmt: skip
                conn.executemany(
                    "INSERT INTO mentions (message_id, agent_id) VALUES (?, ?)",
                    [(message.id, agent) for agent in message.mentions],
                )
            except sqlite3.IntegrityError as exc:
                raise NotFound(f"unknown channel, sender, thread or mention ({exc})") from None
            # Every target's next seq in one statement, then the rows in one more.
            wanted = list(dict.fromkeys(targets))
            marks = ", ".join("?" * len(wanted))
            seqs = dict(
                conn.execute(
                    "UPDATE agent_cursors SET last_seq = last_seq + 1"
                    f" WHERE agent_id IN ({marks}) RETURNING agent_id, last_seq",
                    wanted,
                ).fetchall()
                if wanted
                else []
            )
            if len(seqs) < len(wanted):
                unknown = next(agent for agent in wanted if agent not in seqs)
                raise NotFound(f"unknown target agent {unknown!r}")
            deliveries = [
                Delivery(
                    id=delivery_id(agent_id, seqs[agent_id]),
                    agent_id=agent_id,
                    message_id=message.id,
                    seq=seqs[agent_id],
                    mode=mode,
                    status="pending",
                    acked=False,
                    updated_at=now,
                )
                for agent_id in wanted
            ]
            conn.executemany(
                "INSERT INTO deliveries (agent_id, seq, workspace_id, message_id, mode,"
                " status, updated_at) VALUES (?, ?, ?, ?, ?, 'pending', ?)",
                [(d.agent_id, d.seq, workspace_id, message.id, mode, now) for d in deliveries],
            )
            insert_event(
                conn, workspace_id, "message.created", message.model_dump(mode="json"),
                agent=sender_id,
            )  # fmt: skip
            return deliveries

        return message, await self._write(insert)

    async def unacked_deliveries(self, agent_id: str, limit: int = 500) -> list[Delivery]:
        rows = await self._rows(
            "SELECT d.* FROM deliveries d JOIN agent_cursors c ON c.agent_id = d.agent_id"
            " WHERE d.agent_id = ? AND d.seq > c.acked_seq ORDER BY d.seq LIMIT ?",
            agent_id,
            limit,
        )
        return [_delivery(row) for row in rows]

    async def ack(self, agent_id: str, up_to_seq: int) -> int:
        def update(conn: sqlite3.Connection) -> int:
            cursor = conn.execute(
                "SELECT last_seq, acked_seq FROM agent_cursors WHERE agent_id = ?", (agent_id,)
            ).fetchone()
            if cursor is None:
                raise NotFound(f"unknown agent {agent_id!r}")
            if up_to_seq > cursor["last_seq"]:
                raise AckOutOfRange(
                    f"ack up to seq {up_to_seq}, but the last delivery sent is seq"
                    f" {cursor['last_seq']}"
                )
            if up_to_seq <= cursor["acked_seq"]:
                raise AckOutOfRange(
                    f"ack up to seq {up_to_seq} is a replay: seq {cursor['acked_seq']}"
                    " was acknowledged already"
                )
            conn.execute(
                "UPDATE agent_cursors SET acked_seq = ? WHERE agent_id = ?", (up_to_seq, agent_id)
            )
            done = conn.execute(
                "UPDATE deliveries SET acked = 1, updated_at = ?"
                " WHERE agent_id = ? AND seq > ? AND seq <= ?",
                (timestamp(), agent_id, cursor["acked_seq"], up_to_seq),
            )
            return done.rowcount

        return await self._write(update)

    async def set_receipt(
        self,
        delivery_id: str,
        status: DeliveryStatus,
        *,
        reason: str | None = None,
        retryable: bool | None = None,
        available_at: str | None = None,
    ) -> Delivery:
        key = parse_delivery_id(delivery_id)

        def update(conn: sqlite3.Connection) -> Delivery:
            row = (
                key
                and conn.execute(
                    "UPDATE deliveries SET status = ?, reason = ?, retryable = ?, available_at = ?,"
                    " updated_at = ? WHERE agent_id = ? AND seq = ? RETURNING *",
                    (status, reason, retryable, available_at, timestamp(), *key),
                ).fetchone()
            )
            if not row:
                raise NotFound(f"unknown delivery {delivery_id!r}")
            return _delivery(row)

        return await self._write(update)


def delivery_id(agent_id: str, seq: int) -> str:
    """A delivery's id, made of its key: ``del_<agent id without agt_>_<seq>``."""
    return f"del_{agent_id.removeprefix('agt_')}_{seq}"


def parse_delivery_id(value: str) -> tuple[str, int] | None:
    agent, _, seq = value.removeprefix("del_").rpartition("_")
    if not value.startswith("del_") or not agent or not seq.isdigit():
        return None
    return f"agt_{agent}", int(seq)


def _delivery(row: sqlite3.Row) -> Delivery:
    fields = dict(row)
    fields.pop("workspace_id", None)
    fields["id"] = delivery_id(row["agent_id"], row["seq"])
    fields["acked"] = bool(row["acked"])
    fields["retryable"] = None if row["retryable"] is None else bool(row["retryable"])
    return Delivery(**fields)

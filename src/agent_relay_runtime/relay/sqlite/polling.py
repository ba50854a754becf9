"""Deliveries taken over REST by an agent without a node: what is waiting for it, and
what it did with each (ack, fail, defer).

One cursor for both paths. A node acknowledges cumulatively (``acked_seq``: every
delivery up to it is done with); an agent polling settles deliveries one by one, in any
order. A delivery is settled when ``acked`` is set (acknowledged, or failed: it does not
come back), and ``acked_seq`` moves over every settled delivery that follows it, so a
node that connects later starts after them, and never pushes one settled out of order
(`Deliveries.deliveries_after` skips them). A deferred delivery stays unsettled: it is
held back until its ``available_at``, then waits again like any other.
"""

from __future__ import annotations

import sqlite3
from functools import partial
from typing import Any, Literal

from ..store import (
    Delivery,
    DeliveryFinal,
    NotFound,
    PendingDeliveries,
    SettleOutcome,
    parse_delivery_id,
)
from .acks import advance_acked
from .base import SqliteBase, timestamp
from .delivery_rows import (
    WITH_MESSAGE,
    delivery_from,
    receipt_event,
    with_payloads,
)

__all__ = ["Polling"]

# Which deliveries each relaycast state names (after the acknowledged seq when it can).
_STATES = {
    "queued": "d.acked = 0 AND d.status IN ('pending', 'accepted', 'deferred')",
    "delivered": "d.acked = 0 AND d.status = 'delivered'",
    "acked": "d.acked = 1 AND d.status != 'failed'",
    "failed": "d.status = 'failed'",
}
_UNACKED = ("queued", "delivered")


class Polling(SqliteBase):
    async def pending_deliveries(self, agent_id: str, limit: int = 50) -> PendingDeliveries:
        """See `Store.pending_deliveries`; ``next_due`` is only looked for as far as the
        page reached (a full page is an answer already)."""

        def read(conn: sqlite3.Connection) -> PendingDeliveries:
            now = timestamp()
            acked = conn.execute(
                "SELECT acked_seq FROM agent_cursors WHERE agent_id = ?", (agent_id,)
            ).fetchone()
            if acked is None:
                raise NotFound(f"unknown agent {agent_id!r}")
            rows: list[sqlite3.Row] = []
            next_due: str | None = None
            # Lazily, in seq order: stop at a full page, skipping what is deferred for later.
            for row in conn.execute(
                f"{WITH_MESSAGE} WHERE d.agent_id = ? AND d.seq > ? AND d.acked = 0"
                " AND d.status != 'failed' ORDER BY d.seq",
                (agent_id, acked[0]),
            ):
                due = row["available_at"]
                if row["status"] == "deferred" and due is not None and due > now:
                    next_due = due if next_due is None else min(next_due, due)
                    continue
                rows.append(row)
                if len(rows) == limit:
                    break
            return PendingDeliveries(items=with_payloads(conn, rows), next_due=next_due)

        return await self._read(read)

    async def deliveries_in_state(
        self, agent_id: str, state: Literal["queued", "delivered", "acked", "failed"], limit: int
    ) -> list[tuple[Delivery, dict[str, Any]]]:
        where = f"d.agent_id = ? AND {_STATES[state]}"
        if state in _UNACKED:  # never before the cursor: start the scan there
            where += " AND d.seq > (SELECT acked_seq FROM agent_cursors WHERE agent_id = ?)"
        args = (agent_id, agent_id) if state in _UNACKED else (agent_id,)

        def read(conn: sqlite3.Connection) -> list[tuple[Delivery, dict[str, Any]]]:
            rows = conn.execute(
                f"{WITH_MESSAGE} WHERE {where} ORDER BY d.seq LIMIT ?", (*args, limit)
            ).fetchall()
            return with_payloads(conn, rows)

        return await self._read(read)

    async def settle_delivery(
        self,
        agent_id: str,
        delivery_id: str,
        outcome: SettleOutcome,
        *,
        reason: str | None = None,
        retryable: bool | None = None,
        available_at: str | None = None,
    ) -> tuple[Delivery, dict[str, Any]]:
        key = parse_delivery_id(delivery_id)
        if key is None or key[0] != agent_id:  # another agent's is none of this one's business
            raise NotFound(f"no delivery {delivery_id!r} for this agent")
        if outcome == "defer" and available_at is None:
            raise ValueError("a deferral needs available_at")

        return await self._write(
            partial(_settle_delivery, delivery_id, key, outcome, reason, retryable, available_at)
        )


def _settle_delivery(
    delivery_id: str,
    key: tuple[str, int],
    outcome: SettleOutcome,
    reason: str | None,
    retryable: bool | None,
    available_at: str | None,
    conn: sqlite3.Connection,
) -> tuple[Delivery, dict[str, Any]]:
    """The agent's outcome for a delivery not settled yet; the delivery and its payload."""
    row = conn.execute("SELECT * FROM deliveries WHERE agent_id = ? AND seq = ?", key).fetchone()
    if row is None:
        raise NotFound(f"no delivery {delivery_id!r} for this agent")
    if row["status"] == "failed":
        raise DeliveryFinal(delivery_id, "failed")
    if row["acked"]:
        raise DeliveryFinal(delivery_id, "acked")
    if outcome != "ack" and row["status"] == "delivered":
        raise DeliveryFinal(delivery_id, "delivered")
    _settle(conn, row, outcome, reason, retryable, available_at)
    found = conn.execute(f"{WITH_MESSAGE} WHERE d.agent_id = ? AND d.seq = ?", key)
    return with_payloads(conn, found.fetchall())[0]


def _settle(
    conn: sqlite3.Connection,
    row: sqlite3.Row,
    outcome: SettleOutcome,
    reason: str | None,
    retryable: bool | None,
    available_at: str | None,
) -> None:
    """Record the outcome on the delivery's row, its receipt event, and move the cursor."""
    key = (row["agent_id"], row["seq"])
    now = timestamp()
    if outcome == "ack":
        # An agent's ack is its evidence; a node's delivered receipt (if any) stays.
        evidence = row["evidence"] or "acknowledged by the agent"
        done = conn.execute(
            "UPDATE deliveries SET status = 'delivered', acked = 1, evidence = ?,"
            " updated_at = ? WHERE agent_id = ? AND seq = ? RETURNING *",
            (evidence, now, *key),
        ).fetchone()
        if row["status"] != "delivered":
            receipt_event(conn, delivery_from(done), "delivered", evidence=evidence)
    elif outcome == "fail":
        done = conn.execute(
            "UPDATE deliveries SET status = 'failed', acked = 1, reason = ?, retryable = ?,"
            " updated_at = ? WHERE agent_id = ? AND seq = ? RETURNING *",
            (reason, retryable, now, *key),
        ).fetchone()
        receipt_event(conn, delivery_from(done), "failed", reason=reason, retryable=retryable)
    else:
        done = conn.execute(
            "UPDATE deliveries SET status = 'deferred', available_at = ?, reason = ?,"
            " updated_at = ? WHERE agent_id = ? AND seq = ? RETURNING *",
            (available_at, reason, now, *key),
        ).fetchone()
        receipt_event(
            conn, delivery_from(done), "deferred", reason=reason,
            available_at=available_at,
        )  # fmt: skip
        return
    advance_acked(conn, row["agent_id"])

"""An agent's acknowledged seq: cumulative acks (a node's), and moving it over deliveries
settled out of order (an agent polling over REST settles them one by one).

Every delivery up to ``acked_seq`` is settled (``acked`` set); one after it may be too,
settled out of order, and the cursor moves over it once the ones before it are.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from ..store import AckOutOfRange, NotFound, StoreError
from .base import timestamp

__all__ = ["advance_acked", "apply_acks"]


def advance_acked(conn: sqlite3.Connection, agent_id: str) -> int:
    """Move the agent's acknowledged seq over the settled deliveries that follow it; the
    seq it is at. A delivery settled out of order waits for the ones before it."""
    cursor = conn.execute(
        "SELECT acked_seq, last_seq FROM agent_cursors WHERE agent_id = ?", (agent_id,)
    ).fetchone()
    gap = conn.execute(
        "SELECT seq FROM deliveries WHERE agent_id = ? AND seq > ? AND acked = 0"
        " ORDER BY seq LIMIT 1",
        (agent_id, cursor["acked_seq"]),
    ).fetchone()
    reached = gap["seq"] - 1 if gap is not None else cursor["last_seq"]
    if reached > cursor["acked_seq"]:
        conn.execute(
            "UPDATE agent_cursors SET acked_seq = ? WHERE agent_id = ?", (reached, agent_id)
        )
    return int(max(reached, cursor["acked_seq"]))


def apply_acks(conn: sqlite3.Connection, acks: Sequence[tuple[str, int]]) -> list[int | StoreError]:
    """Cumulative acks ``(agent id, up to seq)``, in order, each judged as if alone: the
    number of deliveries it newly acknowledged, or why it is refused (`AckOutOfRange` for
    a replay or a seq never sent, `NotFound` for an unknown agent; a refused ack changes
    nothing). Each agent's cursor is written once, however many of its acks there are."""
    cursors: dict[str, list[int]] = {}  # agent -> [last seq, acked seq as it goes]
    results: list[int | StoreError] = []
    now = timestamp()
    for agent_id, up_to_seq in acks:
        cursor = cursors.get(agent_id)
        if cursor is None:
            row = conn.execute(
                "SELECT last_seq, acked_seq FROM agent_cursors WHERE agent_id = ?", (agent_id,)
            ).fetchone()
            if row is None:
                results.append(NotFound(f"unknown agent {agent_id!r}"))
                continue
            cursor = cursors[agent_id] = [row["last_seq"], row["acked_seq"]]
        last, acked = cursor
        if up_to_seq > last:
            sent = f"the last delivery sent is seq {last}"
            results.append(AckOutOfRange(f"ack up to seq {up_to_seq}, but {sent}"))
        elif up_to_seq <= acked:
            results.append(
                AckOutOfRange(
                    f"ack up to seq {up_to_seq} is a replay: seq {acked} was acknowledged already"
                )
            )
        else:
            done = conn.execute(
                "UPDATE deliveries SET acked = 1, updated_at = ?"
                " WHERE agent_id = ? AND seq > ? AND seq <= ? AND acked = 0",
                (now, agent_id, acked, up_to_seq),
            )
            results.append(done.rowcount)
            cursor[1] = up_to_seq
    for agent_id, (_, acked) in cursors.items():
        conn.execute("UPDATE agent_cursors SET acked_seq = ? WHERE agent_id = ? AND acked_seq < ?",
                     (acked, agent_id, acked))  # fmt: skip
        advance_acked(conn, agent_id)  # past what was settled over REST beyond it
    return results

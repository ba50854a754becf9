"""Posting a message with its durable deliveries; acknowledgements and receipts.

A delivery's push payload (the ``message.created`` data of a ``deliver`` frame) is built
in the same transaction that writes the message (and its attachments), and handed to
``on_deliveries`` after the commit: a node that is caught up gets it without another
read. A node catching up reads its backlog with `deliveries_after`, which builds the same
payload from the rows (`delivery_rows`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from functools import partial
from typing import Any, Literal

from ..store import (
    Conflict,
    Delivery,
    DeliveryStatus,
    Message,
    NewDeliveries,
    NotFound,
    Receipt,
    StoreError,
    ordered_id,
    parse_delivery_id,
)
from .acks import apply_acks
from .base import timestamp
from .delivery_rows import (
    WITH_MESSAGE,
    attachment_view,
    delivery_from,
    insert_message,
    keyed_rows,
    next_seqs,
    push_payload,
    receipt_event,
    with_payloads,
)
from .events import append_event
from .polling import Polling

__all__ = ["Deliveries", "push_payload"]


class Deliveries(Polling):
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
        attachments: Sequence[str] = (),
    ) -> tuple[Message, Sequence[Delivery]]:
        now = timestamp()
        message = Message(
            id=ordered_id("msg"), workspace_id=workspace_id, channel_id=channel_id,
            agent_id=sender_id, text=text, blocks=blocks, metadata=metadata or {},
            thread_id=thread_id, mentions=list(mentions), created_at=now,
        )  # fmt: skip
        names = await self._names(sender_id, channel_id)
        wanted = list(dict.fromkeys(targets))

        def pushed(answer: tuple[list[int], list[dict[str, Any]]]) -> NewDeliveries:
            # Made here from what the writer assigned (less to send back than the models),
            # and handed on in commit order: each agent's deliveries come in seq order.
            seqs, attached = answer
            rows = list(zip(wanted, seqs, strict=True))
            deliveries = NewDeliveries(rows, message.id, mode, now)
            payload = push_payload(message, names, mode, attached)
            for listener in self.on_deliveries:
                listener(deliveries, payload)
            return deliveries

        deliveries = await self._write(
            partial(_write_message, message, names, mode, wanted, attachments), pushed
        )
        return message, deliveries

    async def _names(self, sender_id: str, channel_id: str) -> dict[str, Any]:
        """The names a message's payload shows, kept with the directory (no read when warm)."""

        async def load() -> dict[str, Any] | None:
            rows = await self._rows(
                "SELECT a.name AS from_name, c.name AS channel_name, c.kind AS channel_kind"
                " FROM agents a, channels c WHERE a.id = ? AND c.id = ?",
                sender_id,
                channel_id,
            )
            return dict(rows[0]) if rows else None

        found = await self._directory_lookup(("names", sender_id, channel_id), load)
        if found is None:
            raise NotFound(f"unknown sender {sender_id!r} or channel {channel_id!r}")
        return found

    async def deliveries_after(
        self, agent_id: str, after_seq: int, limit: int = 500
    ) -> list[tuple[Delivery, dict[str, Any]]]:
        """The agent's deliveries with ``seq > after_seq``, each with its push payload;
        not those the agent settled over REST already (out of order, past the cursor)."""

        def read(conn: sqlite3.Connection) -> list[tuple[Delivery, dict[str, Any]]]:
            rows = conn.execute(
                f"{WITH_MESSAGE} WHERE d.agent_id = ? AND d.seq > ? AND d.acked = 0"
                " ORDER BY d.seq LIMIT ?",
                (agent_id, after_seq, limit),
            ).fetchall()
            return with_payloads(conn, rows)

        return await self._read(read)

    async def unacked_deliveries(self, agent_id: str, limit: int = 500) -> list[Delivery]:
        rows = await self._rows(
            "SELECT d.* FROM deliveries d JOIN agent_cursors c ON c.agent_id = d.agent_id"
            " WHERE d.agent_id = ? AND d.seq > c.acked_seq ORDER BY d.seq LIMIT ?",
            agent_id,
            limit,
        )
        return [delivery_from(row) for row in rows]

    async def acked_seq(self, agent_id: str) -> int:
        rows = await self._rows("SELECT acked_seq FROM agent_cursors WHERE agent_id = ?", agent_id)
        if not rows:
            raise NotFound(f"unknown agent {agent_id!r}")
        return int(rows[0]["acked_seq"])

    async def ack(self, agent_id: str, up_to_seq: int) -> int:
        [done] = await self.ack_many([(agent_id, up_to_seq)])
        if isinstance(done, StoreError):
            raise done
        return done

    async def ack_many(self, acks: Sequence[tuple[str, int]]) -> list[int | StoreError]:
        return await self._write(partial(_apply_acks, list(acks)))

    async def set_receipt(
        self,
        delivery_id: str,
        status: DeliveryStatus,
        *,
        reason: str | None = None,
        retryable: bool | None = None,
        available_at: str | None = None,
        evidence: str | None = None,
    ) -> Delivery:
        """Record the runtime's receipt for a delivery, and its ``delivery.<status>`` event.
        A final receipt (delivered, failed) is never replaced by a later non-final one."""
        key = parse_delivery_id(delivery_id)

        return await self._write(
            partial(
                _set_receipt, delivery_id, key, status, reason, retryable, available_at, evidence
            )
        )

    async def receipts(self, message_id: str) -> list[Receipt]:
        """Every target's delivery of the message, as it stands."""

        def read(conn: sqlite3.Connection) -> list[sqlite3.Row]:
            named = "SELECT d.*, a.name AS agent_name FROM deliveries d JOIN agents a"
            return keyed_rows(conn, message_id, f"{named} ON a.id = d.agent_id")

        rows = sorted(await self._read(read), key=lambda row: str(row["agent_name"]))
        return [Receipt(agent_name=row["agent_name"], delivery=delivery_from(row)) for row in rows]


def _apply_acks(acks: list[tuple[str, int]], conn: sqlite3.Connection) -> list[int | StoreError]:
    """The cumulative acks, as `apply_acks` writes them; each one's outcome."""
    return apply_acks(conn, acks)


def _set_receipt(
    delivery_id: str,
    key: tuple[str, int] | None,
    status: DeliveryStatus,
    reason: str | None,
    retryable: bool | None,
    available_at: str | None,
    evidence: str | None,
    conn: sqlite3.Connection,
) -> Delivery:
    """The delivery's receipt (unless final already) and its event; the delivery."""
    row = (
        key
        and conn.execute(
            "UPDATE deliveries SET status = ?, reason = ?, retryable = ?, available_at = ?,"
            " evidence = ?, updated_at = ? WHERE agent_id = ? AND seq = ?"
            " AND (status NOT IN ('delivered', 'failed') OR ? IN ('delivered', 'failed'))"
            " RETURNING *",
            (status, reason, retryable, available_at, evidence, timestamp(), *key,
             status),
        ).fetchone()
    )  # fmt: skip
    if not row:
        found = (
            key
            and conn.execute(
                "SELECT * FROM deliveries WHERE agent_id = ? AND seq = ?", key
            ).fetchone()
        )
        if not found:
            raise NotFound(f"unknown delivery {delivery_id!r}")
        return delivery_from(found)  # already final: the late receipt changes nothing
    delivery = delivery_from(row)
    receipt_event(
        conn, delivery, status, reason=reason, retryable=retryable,
        available_at=available_at, evidence=evidence,
    )  # fmt: skip
    return delivery


def _attach(
    conn: sqlite3.Connection, workspace_id: str, message_id: str, file_ids: Sequence[str]
) -> list[dict[str, Any]]:
    """Attach the files to the message, in order; what the payload shows of them.
    `Conflict` unless each is a complete file of the workspace (checked here, in the
    message's transaction: a file deleted meanwhile is not attached)."""
    wanted = list(dict.fromkeys(file_ids))
    if not wanted:
        return []
    rows = conn.execute(
        f"SELECT * FROM files WHERE id IN ({', '.join('?' * len(wanted))})"
        " AND workspace_id = ? AND status = 'complete'",
        (*wanted, workspace_id),
    ).fetchall()
    found = {row["id"]: row for row in rows}
    missing = [file_id for file_id in wanted if file_id not in found]
    if missing:
        raise Conflict(f"file {missing[0]!r} is not a complete file of this workspace")
    conn.executemany(
        "INSERT INTO message_attachments (message_id, file_id, position) VALUES (?, ?, ?)",
        [(message_id, file_id, n) for n, file_id in enumerate(wanted)],
    )
    return [attachment_view(found[file_id]) for file_id in wanted]


def _write_message(
    message: Message,
    names: dict[str, Any],
    mode: Literal["wait", "steer"],
    targets: list[str],
    attachments: Sequence[str],
    conn: sqlite3.Connection,
) -> tuple[list[int], list[dict[str, Any]]]:
    """The message, its mentions and attachments, a delivery to each target and the
    ``message.created`` event; the seq of each target's delivery (in the order of
    ``targets``) and the attachments as the push payload shows them."""
    rows = next_seqs(conn, targets)  # first: the message's row keeps its deliveries' keys
    try:
        insert_message(conn, message, rows, mode)
        if message.mentions:
            conn.executemany(
                "INSERT INTO mentions (message_id, agent_id) VALUES (?, ?)",
                [(message.id, agent) for agent in message.mentions],
            )
    except sqlite3.IntegrityError as exc:
        raise NotFound(f"unknown channel, sender, thread or mention ({exc})") from None
    attached = _attach(conn, message.workspace_id, message.id, attachments)
    payload = push_payload(message, names, mode, attached)
    append_event(conn, message.workspace_id, "message.created", payload, agent=names["from_name"])
    return [seq for _, seq in rows], attached

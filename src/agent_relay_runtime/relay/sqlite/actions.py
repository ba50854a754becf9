"""Actions (typed, handled by a node) and their invocations, each an audit record.

Every change of an invocation writes its ``action.*`` event in the same transaction, so
the event log and the audit records never disagree.
"""

from __future__ import annotations

import json
import sqlite3
from functools import partial
from typing import Any

from ..store import Action, Invocation, InvocationStatus, NotFound, ordered_id
from .base import SqliteBase, timestamp
from .events import insert_event


class Actions(SqliteBase):
    async def put_action(self, action: Action) -> None:
        """Register ``action`` (replacing one of the same name: the newest handler wins)."""
        await self._write(partial(_upsert_action, action))

    async def drop_actions(self, workspace_id: str, owner: str, keep: list[str]) -> list[str]:
        """Unregister the actions ``owner`` handles but for ``keep``; their names."""
        return await self._write(partial(_delete_actions, workspace_id, owner, keep))

    async def action_named(self, workspace_id: str, name: str) -> Action | None:
        found = await self._actions("workspace_id = ? AND name = ?", workspace_id, name)
        return found[0] if found else None

    async def list_actions(self, workspace_id: str) -> list[Action]:
        return await self._actions("workspace_id = ? ORDER BY name", workspace_id)

    async def _actions(self, where: str, *args: Any) -> list[Action]:
        rows = await self._rows(f"SELECT * FROM actions WHERE {where}", *args)
        return [
            Action(
                **{
                    **dict(row),
                    "input_schema": json.loads(row["input_schema"]),
                    "available_to": None
                    if row["available_to"] is None
                    else json.loads(row["available_to"]),
                }
            )
            for row in rows
        ]

    async def record_invocation(
        self,
        workspace_id: str,
        action: str,
        *,
        caller_agent_id: str | None,
        caller_name: str | None,
        input: Any,
        status: InvocationStatus = "invoked",
        error: str | None = None,
    ) -> Invocation:
        """A new invocation (``invoked``, or ``denied``/``failed`` at once), and its event."""
        now = timestamp()
        record = Invocation(
            id=ordered_id("inv"), workspace_id=workspace_id, action=action,
            caller_agent_id=caller_agent_id, caller_name=caller_name, input=input,
            status=status, error=error, created_at=now,
            finished_at=None if status == "invoked" else now,
        )  # fmt: skip
        await self._write(partial(_insert_invocation, record))
        return record

    async def mark_dispatched(self, invocation_id: str, node_id: str) -> None:
        await self._write(partial(_mark_dispatched, invocation_id, node_id))

    async def finish_invocation(
        self, invocation_id: str, *, output: Any = None, error: str | None = None
    ) -> tuple[Invocation, bool]:
        """End an invocation: ``completed`` with ``output``, or ``failed`` with ``error``.
        Only the first end counts (a result after a timeout changes nothing); the record
        and whether this call ended it."""
        status = "failed" if error is not None else "completed"
        return await self._write(partial(_finish_invocation, invocation_id, status, output, error))

    async def invocation(self, invocation_id: str) -> Invocation | None:
        rows = await self._rows("SELECT * FROM invocations WHERE id = ?", invocation_id)
        return _invocation(rows[0]) if rows else None

    async def waiting_invocations(self, workspace_id: str, action: str) -> list[Invocation]:
        """Invocations queued for a handler that was offline, oldest first."""
        rows = await self._rows(
            "SELECT * FROM invocations WHERE workspace_id = ? AND action = ?"
            " AND status = 'invoked' AND dispatched_at IS NULL ORDER BY created_at",
            workspace_id,
            action,
        )
        return [_invocation(row) for row in rows]


def _upsert_action(action: Action, conn: sqlite3.Connection) -> None:
    """The action's row, replacing the one of the same name in its workspace."""
    conn.execute(
        "INSERT INTO actions (id, workspace_id, name, description, input_schema,"
        " available_to, owner, when_offline, timeout_s, registered_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (workspace_id, name) DO UPDATE"
        " SET description = excluded.description, input_schema = excluded.input_schema,"
        " available_to = excluded.available_to, owner = excluded.owner,"
        " when_offline = excluded.when_offline, timeout_s = excluded.timeout_s,"
        " registered_at = excluded.registered_at",
        (action.id, action.workspace_id, action.name, action.description,
         json.dumps(action.input_schema),
         None if action.available_to is None else json.dumps(action.available_to),
         action.owner, action.when_offline, action.timeout_s, action.registered_at),
    )  # fmt: skip


def _delete_actions(
    workspace_id: str, owner: str, keep: list[str], conn: sqlite3.Connection
) -> list[str]:
    """Deletes the actions ``owner`` handles but for ``keep``; their names."""
    marks = ", ".join("?" * len(keep))
    rows = conn.execute(
        "DELETE FROM actions WHERE workspace_id = ? AND owner = ?"
        f" AND name NOT IN ({marks}) RETURNING name",
        (workspace_id, owner, *keep),
    ).fetchall()
    return [row["name"] for row in rows]


def _insert_invocation(record: Invocation, conn: sqlite3.Connection) -> None:
    """The new invocation's row and its ``action.*`` event."""
    conn.execute(
        "INSERT INTO invocations (id, workspace_id, action, caller_agent_id, caller_name,"
        " input, status, error, created_at, finished_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (record.id, record.workspace_id, record.action, record.caller_agent_id,
         record.caller_name, json.dumps(record.input), record.status, record.error,
         record.created_at, record.finished_at),
    )  # fmt: skip
    _event(conn, record)


def _mark_dispatched(invocation_id: str, node_id: str, conn: sqlite3.Connection) -> None:
    """The invocation's handler node and dispatch time."""
    conn.execute(
        "UPDATE invocations SET handler_node = ?, dispatched_at = ? WHERE id = ?",
        (node_id, timestamp(), invocation_id),
    )


def _finish_invocation(
    invocation_id: str,
    status: str,
    output: Any,
    error: str | None,
    conn: sqlite3.Connection,
) -> tuple[Invocation, bool]:
    """The invocation's end (and its event) unless it ended already; the record and
    whether this ended it."""
    row = conn.execute(
        "UPDATE invocations SET status = ?, output = ?, error = ?, finished_at = ?"
        " WHERE id = ? AND status = 'invoked' RETURNING *",
        (status, None if error is not None else json.dumps(output), error,
         timestamp(), invocation_id),
    ).fetchone()  # fmt: skip
    if row is not None:
        record = _invocation(row)
        _event(conn, record)
        return record, True
    found = conn.execute("SELECT * FROM invocations WHERE id = ?", (invocation_id,)).fetchone()
    if found is None:
        raise NotFound(f"unknown invocation {invocation_id!r}")
    return _invocation(found), False


def _invocation(row: sqlite3.Row) -> Invocation:
    fields = dict(row)
    fields["input"] = json.loads(row["input"])
    fields["output"] = None if row["output"] is None else json.loads(row["output"])
    return Invocation(**fields)


def _event(conn: sqlite3.Connection, record: Invocation) -> None:
    kind = {"invoked": "action.invoked", "completed": "action.completed"}.get(
        record.status, f"action.{record.status}"
    )
    insert_event(
        conn, record.workspace_id, kind, record.model_dump(mode="json"),
        agent=record.caller_name, action=record.action,
    )  # fmt: skip

"""Files (their records; the bytes are kept by the REST layer) and message attachments."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from functools import partial

from ..store import Conflict, FileRecord, NotFound, ordered_id
from .base import SqliteBase, timestamp
from .events import insert_event

__all__ = ["Files"]

_SELECT = "SELECT f.*, a.name AS uploader_name FROM files f JOIN agents a ON a.id = f.uploaded_by"

# Whether agent ``?`` may see file ``f``: it uploaded it, or the file is attached to a
# message of a channel, or of a DM or group DM the agent takes part in.
_VISIBLE = (
    "(f.uploaded_by = ? OR EXISTS (SELECT 1 FROM message_attachments ma"
    " JOIN messages m ON m.id = ma.message_id JOIN channels c ON c.id = m.channel_id"
    " WHERE ma.file_id = f.id AND (c.kind = 'channel' OR EXISTS (SELECT 1 FROM"
    " channel_members cm WHERE cm.channel_id = c.id AND cm.agent_id = ?))))"
)


def _file(conn: sqlite3.Connection, file_id: str) -> FileRecord | None:
    row = conn.execute(f"{_SELECT} WHERE f.id = ?", (file_id,)).fetchone()
    return FileRecord(**dict(row)) if row else None


class Files(SqliteBase):
    async def create_file(
        self,
        workspace_id: str,
        uploaded_by: str,
        filename: str,
        content_type: str,
        size: int,
        expires_at: str,
    ) -> FileRecord:
        file_id = ordered_id("file")
        created = await self._write(
            partial(
                _insert_file, file_id, workspace_id, uploaded_by, filename, content_type, size,
                expires_at,
            )
        )  # fmt: skip
        assert created is not None
        return created

    async def file_by_id(self, file_id: str) -> FileRecord | None:
        return await self._read(lambda conn: _file(conn, file_id))

    async def file_visible(self, file_id: str, agent_id: str) -> bool:
        rows = await self._rows(
            f"SELECT 1 FROM files f WHERE f.id = ? AND {_VISIBLE}", file_id, agent_id, agent_id
        )
        return bool(rows)

    async def list_files(
        self,
        workspace_id: str,
        *,
        viewer: str | None = None,
        uploaded_by: str | None = None,
        limit: int = 50,
    ) -> list[FileRecord]:
        where, args = "f.workspace_id = ? AND f.status != 'deleted'", [workspace_id]
        if uploaded_by is not None:
            where, args = where + " AND f.uploaded_by = ?", [*args, uploaded_by]
        if viewer is not None:
            where, args = f"{where} AND {_VISIBLE}", [*args, viewer, viewer]
        rows = await self._rows(f"{_SELECT} WHERE {where} ORDER BY f.id DESC LIMIT ?", *args, limit)
        return [FileRecord(**dict(row)) for row in rows]

    async def file_received(self, file_id: str, received: int) -> FileRecord:
        return await self._write(partial(_record_received, file_id, received))

    async def complete_file(self, file_id: str) -> FileRecord:
        return await self._write(partial(_complete_file, file_id))

    async def delete_file(self, file_id: str) -> FileRecord:
        return await self._write(partial(_delete_file, file_id))

    async def abandon_uploads(self, declared_before: str) -> list[FileRecord]:
        # Looked for first: a sweep that finds nothing commits nothing.
        if not await self._rows(f"SELECT 1 FROM files WHERE {_ABANDONED} LIMIT 1", declared_before):
            return []
        return await self._write(partial(_abandon_uploads, declared_before))

    async def attach_files(self, message_id: str, file_ids: Sequence[str]) -> None:
        await self._write(partial(_attach_files, message_id, list(file_ids)))

    async def message_attachments(self, message_id: str) -> list[FileRecord]:
        rows = await self._rows(
            f"{_SELECT} JOIN message_attachments ma ON ma.file_id = f.id"
            " WHERE ma.message_id = ? AND f.status != 'deleted' ORDER BY ma.position",
            message_id,
        )
        return [FileRecord(**dict(row)) for row in rows]


def _insert_file(
    file_id: str,
    workspace_id: str,
    uploaded_by: str,
    filename: str,
    content_type: str,
    size: int,
    expires_at: str,
    conn: sqlite3.Connection,
) -> FileRecord | None:
    """A pending file's record; the record as stored."""
    try:
        conn.execute(
            "INSERT INTO files (id, workspace_id, uploaded_by, filename, content_type,"
            " size, status, expires_at, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, ?)",
            (file_id, workspace_id, uploaded_by, filename, content_type, size,
             expires_at, timestamp()),
        )  # fmt: skip
    except sqlite3.IntegrityError:
        raise NotFound("unknown workspace or agent") from None
    return _file(conn, file_id)


def _record_received(file_id: str, received: int, conn: sqlite3.Connection) -> FileRecord:
    """The number of bytes a pending file received; its record."""
    done = conn.execute(
        "UPDATE files SET received = ? WHERE id = ? AND status = 'pending'",
        (received, file_id),
    )
    found = _file(conn, file_id)
    if found is None:
        raise NotFound(f"unknown file {file_id!r}")
    if done.rowcount != 1:
        raise Conflict(f"file {file_id!r} is {found.status}: it takes no more bytes")
    return found


def _complete_file(file_id: str, conn: sqlite3.Connection) -> FileRecord:
    """The file complete, and its ``file.uploaded`` event (once); its record."""
    found = _file(conn, file_id)
    if found is None or found.status == "deleted":
        raise NotFound(f"unknown file {file_id!r}")
    if found.status == "complete":
        return found
    if found.received is None:
        raise Conflict(f"file {file_id!r}: no bytes were uploaded")
    conn.execute(
        "UPDATE files SET status = 'complete', completed_at = ? WHERE id = ?",
        (timestamp(), file_id),
    )
    insert_event(
        conn, found.workspace_id, "file.uploaded",
        {"file": {"file_id": file_id, "filename": found.filename,
                  "uploaded_by": found.uploader_name}},
        agent=found.uploader_name,
    )  # fmt: skip
    completed = _file(conn, file_id)
    assert completed is not None
    return completed


def _delete_file(file_id: str, conn: sqlite3.Connection) -> FileRecord:
    """The file marked deleted; its record."""
    done = conn.execute(
        "UPDATE files SET status = 'deleted' WHERE id = ? AND status != 'deleted'",
        (file_id,),
    )
    found = _file(conn, file_id)
    if found is None or done.rowcount != 1:
        raise NotFound(f"unknown file {file_id!r}")
    return found


_ABANDONED = "status = 'pending' AND created_at < ?"  # declared before a time, not complete


def _abandon_uploads(declared_before: str, conn: sqlite3.Connection) -> list[FileRecord]:
    """The files still pending that were declared before ``declared_before``, marked
    deleted; their records. A file completed meanwhile is not pending: it is left alone."""
    done = conn.execute(
        f"UPDATE files SET status = 'deleted' WHERE {_ABANDONED} RETURNING id",
        (declared_before,),
    ).fetchall()
    found = [_file(conn, row["id"]) for row in done]
    return [record for record in found if record is not None]


def _attach_files(message_id: str, file_ids: list[str], conn: sqlite3.Connection) -> None:
    """The files attached to the message, in order (each once)."""
    try:
        conn.executemany(
            "INSERT INTO message_attachments (message_id, file_id, position) VALUES (?, ?, ?)",
            [(message_id, f, i) for i, f in enumerate(dict.fromkeys(file_ids))],
        )
    except sqlite3.IntegrityError:
        raise NotFound("unknown message or file") from None

"""Files: declare an upload, PUT its bytes to the relay, complete, get, list, delete; and
the files a message attaches.

relaycast's client never sends bytes itself: ``files.upload`` declares the file and gets
an ``upload_url``, the caller sends the bytes there, then calls ``files.complete``. Here
the upload URL is on the relay itself, ``PUT /v1/files/{id}/content``, authenticated with
the uploader's token like every other call; the bytes are kept under the files directory,
named by the file id, and read back from ``GET /v1/files/{id}/content`` (the ``url`` of
`FileInfo`).

- Size: a file is at most `MAX_FILE_BYTES` (declaring more is a 413), and the bytes PUT
  must be exactly the size declared (more: 413, fewer: 400 ``size_mismatch``).
- The upload URL expires `UPLOAD_TTL` after the upload is declared (then 410); bytes
  received in time may still be completed later, until the relay's housekeeping gives the
  upload up: a file still pending an hour after it was declared (`HousekeepingConfig`) is
  deleted, its bytes too. A file takes bytes until it is complete.
- Only the uploader PUTs, completes or deletes its file (403 ``not_file_owner``).
- Who sees a file (gets it, lists it, downloads it, attaches it): its uploader, and every
  agent who can read a message it is attached to (any channel's, or a DM's participants);
  the workspace key sees them all. For everyone else it does not exist (404).
- Deleting drops the bytes and the file from the messages that attached it; the record
  stays (as ``deleted``), so that attachments keep referring to something.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import anyio
from pydantic import Field
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from ..store import Agent, Conflict, FileRecord, NotFound
from .kit import Api, ApiError, Body, Caller, failure

__all__ = [
    "MAX_ATTACHMENTS",
    "MAX_FILE_BYTES",
    "UPLOAD_TTL",
    "attachments_of",
    "drop_bytes",
    "file_info",
    "routes",
]

MAX_FILE_BYTES = 25 * 1024 * 1024
MAX_ATTACHMENTS = 10
UPLOAD_TTL = timedelta(hours=1)
_CONTENT_TYPE = re.compile(r"[\w.+-]+/[\w.+-]+(\s*;.*)?")


class Empty(Body):
    """No fields: an empty body, or ``{}``."""


class Upload(Body):
    filename: Annotated[str, Field(min_length=1, max_length=255)]
    content_type: Annotated[str, Field(min_length=3, max_length=255)]
    size: Annotated[int, Field(ge=0)]


def file_info(record: FileRecord, base_url: str) -> dict[str, Any]:
    """A file as relaycast's `FileInfo` (``uploaded_by`` is the uploader's name)."""
    return {
        "file_id": record.id, "filename": record.filename, "content_type": record.content_type,
        "size": record.received if record.received is not None else record.size,
        "url": f"{base_url}/v1/files/{record.id}/content", "uploaded_by": record.uploader_name,
        "created_at": record.created_at, "status": record.status,
    }  # fmt: skip


async def visible_file(api: Api, caller: Caller, file_id: str) -> FileRecord:
    """The file, if the caller may see it (and it is not deleted); 404 otherwise."""
    record = await api.store.file_by_id(file_id)
    if (
        record is None
        or record.workspace_id != caller.workspace.id
        or record.status == "deleted"
        or (caller.agent is not None and not await api.store.file_visible(file_id, caller.agent.id))
    ):
        raise ApiError(404, "file_not_found", f"no file {file_id!r}")
    return record


async def attachments_of(api: Api, caller: Caller, ids: Sequence[str] | None) -> list[FileRecord]:
    """The files a message may attach: complete ones the caller can see, each once."""
    wanted = list(dict.fromkeys(ids or ()))
    if len(wanted) > MAX_ATTACHMENTS:
        raise ApiError(
            400, "invalid_request", f"attachments: at most {MAX_ATTACHMENTS} files a message"
        )
    found = []
    for file_id in wanted:
        record = await visible_file(api, caller, file_id)
        if record.status != "complete":
            raise ApiError(
                409, "file_not_complete", f"file {file_id!r} is not complete: upload, then complete"
            )
        found.append(record)
    return found


async def drop_bytes(files_dir: Path, file_id: str) -> None:
    """Remove what ``files_dir`` holds of a file: its bytes, and the part files of uploads
    of it that never finished (the relay stopped while writing them)."""
    directory = anyio.Path(files_dir)
    await (directory / file_id).unlink(missing_ok=True)
    async for part in directory.glob(f".{file_id}.*.part"):
        await part.unlink(missing_ok=True)


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def routes(api: Api, files_dir: Path) -> list[Route]:
    store = api.store
    directory = anyio.Path(files_dir)

    def base_url(request: Request) -> str:
        return str(request.base_url).rstrip("/")

    async def own_file(caller: Caller, agent: Agent, file_id: str) -> FileRecord:
        record = await visible_file(api, caller, file_id)
        if record.uploaded_by != agent.id:
            raise ApiError(403, "not_file_owner", f"file {file_id!r} is {record.uploader_name}'s")
        return record

    async def upload(request: Request, caller: Caller) -> Any:
        agent = api.as_agent(caller)
        body = await api.body_of(request, Upload)
        if body.size > MAX_FILE_BYTES:
            raise ApiError(
                413, "file_too_large", f"size {body.size}: a file is at most {MAX_FILE_BYTES} bytes"
            )
        if not _CONTENT_TYPE.fullmatch(body.content_type):
            raise ApiError(
                400, "invalid_request", f"content_type {body.content_type!r}: not a media type"
            )
        expires_at = _iso(_now() + UPLOAD_TTL)
        record = await store.create_file(
            caller.workspace.id, agent.id, body.filename, body.content_type, body.size, expires_at
        )
        return {
            "file_id": record.id,
            "upload_url": f"{base_url(request)}/v1/files/{record.id}/content",
            "expires_at": expires_at,
        }

    async def put_content(request: Request, caller: Caller) -> Any:
        agent = api.as_agent(caller)
        record = await own_file(caller, agent, request.path_params["id"])
        if record.status != "pending":
            raise ApiError(409, "file_already_complete", f"file {record.id!r} is complete")
        if _iso(_now()) > record.expires_at:
            raise ApiError(410, "upload_expired", f"the upload URL expired at {record.expires_at}")
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > record.size:
            raise ApiError(413, "file_too_large", f"{declared} bytes, {record.size} declared")
        await directory.mkdir(parents=True, exist_ok=True)
        part = directory / f".{record.id}.{secrets.token_hex(4)}.part"  # see drop_bytes
        try:
            received = 0
            async with await anyio.open_file(part, "wb") as out:
                async for chunk in request.stream():
                    received += len(chunk)
                    if received > record.size:
                        raise ApiError(
                            413, "file_too_large", f"over the {record.size} bytes declared"
                        )
                    await out.write(chunk)
            if received != record.size:
                raise ApiError(
                    400, "size_mismatch", f"{received} bytes received, {record.size} declared"
                )
            try:
                updated = await store.file_received(record.id, received)
            except Conflict as exc:
                raise ApiError(409, "file_already_complete", str(exc)) from None
            await part.rename(directory / record.id)
        finally:
            await part.unlink(missing_ok=True)
        return {"file_id": updated.id, "size": received, "status": updated.status}

    async def complete(request: Request, caller: Caller) -> Any:
        agent = api.as_agent(caller)
        await api.body_of(request, Empty)
        record = await own_file(caller, agent, request.path_params["id"])
        if record.status == "pending" and not await (directory / record.id).exists():
            raise ApiError(
                409, "upload_incomplete", f"file {record.id!r}: PUT its bytes to the upload URL"
            )
        try:
            record = await store.complete_file(record.id)
        except Conflict as exc:
            raise ApiError(409, "upload_incomplete", str(exc)) from None
        return file_info(record, base_url(request))

    async def get_file(request: Request, caller: Caller) -> Any:
        record = await visible_file(api, caller, request.path_params["id"])
        return file_info(record, base_url(request))

    async def list_files(request: Request, caller: Caller) -> Any:
        limit, _, _ = api.page_of(request)
        uploader = request.query_params.get("uploaded_by")
        uploaded_by = (await api.agent_named(caller, uploader)).id if uploader else None
        viewer = caller.agent.id if caller.agent else None
        found = await store.list_files(
            caller.workspace.id, viewer=viewer, uploaded_by=uploaded_by, limit=limit
        )
        return [file_info(f, base_url(request)) for f in found]

    async def delete_file(request: Request, caller: Caller) -> Any:
        agent = api.as_agent(caller)
        record = await own_file(caller, agent, request.path_params["id"])
        try:
            await store.delete_file(record.id)
        except NotFound:
            raise ApiError(404, "file_not_found", f"no file {record.id!r}") from None
        await drop_bytes(files_dir, record.id)
        return {"file_id": record.id, "deleted": True}

    async def download(request: Request) -> Response:
        # Bytes, not the JSON envelope (errors still are): authenticated as `endpoint` does.
        try:
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            caller = await api.caller_of(token if scheme.lower() == "bearer" else None)
            record = await visible_file(api, caller, request.path_params["id"])
            path = directory / record.id
            if record.status != "complete" or not await path.exists():
                raise ApiError(409, "file_not_complete", f"file {record.id!r} is not complete")
        except ApiError as exc:
            return failure(exc.status, exc.code, exc.message)
        return FileResponse(str(path), media_type=record.content_type, filename=record.filename)

    endpoint = api.endpoint
    return [
        Route("/v1/files/upload", endpoint(upload, 201), methods=["POST"]),
        Route("/v1/files", endpoint(list_files), methods=["GET"]),
        Route("/v1/files/{id}", endpoint(get_file), methods=["GET"]),
        Route("/v1/files/{id}", endpoint(delete_file), methods=["DELETE"]),
        Route("/v1/files/{id}/content", endpoint(put_content), methods=["PUT"]),
        Route("/v1/files/{id}/content", download, methods=["GET"]),
        Route("/v1/files/{id}/complete", endpoint(complete), methods=["POST"]),
    ]

"""What every REST route shares: the envelope, errors, auth, bodies, paging and views.

Shapes follow what the official client, relaycast-sdk, sends and reads
(docs/relaycast-rest.md): every answer is ``{"ok": true, "data": …}`` or
``{"ok": false, "error": {"code", "message"}}``; a bearer token is either the workspace
key or an agent token (``at_…``), told apart by the token itself; ids and times are
strings. Never a 5xx after a write committed: the SDK retries a 5xx, POSTs included.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from ..store import (
    Agent,
    Channel,
    Conflict,
    FileRecord,
    Member,
    Message,
    MessageStats,
    NotFound,
    Store,
    StoreError,
    Workspace,
)

__all__ = [
    "MAX_BODY",
    "Api",
    "ApiError",
    "Body",
    "Caller",
    "Endpoint",
    "agent_view",
    "channel_view",
    "failure",
    "member_view",
    "ok",
    "workspace_view",
]

MAX_BODY = 1 << 20


class ApiError(Exception):
    """An answer other than success: HTTP status, error code, one-line message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class Body(BaseModel):
    """A request body: unknown fields are an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is asking: the workspace (its key) or one agent (its token). (A dataclass: one
    is made for every request.)"""

    workspace: Workspace
    agent: Agent | None = None


Handler = Callable[[Request, Caller], Awaitable[Any]]
B = TypeVar("B", bound=Body)


def ok(data: Any, status: int = 200) -> JSONResponse:
    return JSONResponse({"ok": True, "data": data}, status_code=status)


def failure(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse(_error(code, message), status_code=status)


def _error(code: str, message: str) -> dict[str, Any]:
    return {"ok": False, "error": {"code": code, "message": message}}


class Endpoint:
    """A route's ASGI app (see `Api.endpoint`). An app, not a request handler: Starlette
    wraps a function endpoint in a request/response adapter and its exception handling
    for every request; this one reads the request and writes the answer itself (the
    same JSON `JSONResponse` writes)."""

    __slots__ = ("api", "handler", "status")

    def __init__(self, api: Api, handler: Handler, status: int) -> None:
        self.api, self.handler, self.status = api, handler, status

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        status, envelope = await self.api.answer(Request(scope, receive, send), self.handler,
                                                 self.status)  # fmt: skip
        body = json.dumps(
            envelope, ensure_ascii=False, allow_nan=False, separators=(",", ":")
        ).encode()
        headers = [(b"content-length", str(len(body)).encode()), _JSON]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


_JSON = (b"content-type", b"application/json")


class Api:
    """The store and the lookups that routes share; `endpoint` wraps a route handler."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def caller_of(self, token: str | None) -> Caller:
        """The caller a bearer token stands for; 401 for anything else."""
        store = self.store
        if token and token.startswith("at_"):
            agent = await store.agent_by_token(token)
            if agent is not None:
                workspace = await store.workspace_by_id(agent.workspace_id)
                if workspace is not None:
                    return Caller(workspace=workspace, agent=agent)
        elif token:
            workspace = await store.workspace_by_key(token)
            if workspace is not None:
                return Caller(workspace=workspace)
        # The same answer for a missing, malformed, unknown or revoked credential.
        raise ApiError(401, "unauthorized", "a valid workspace key or agent token is required")

    def endpoint(self, handler: Handler, status: int = 200) -> Endpoint:
        """The route's ASGI app: the caller authenticated, the handler's result in the
        envelope, a refusal as its error."""
        return Endpoint(self, handler, status)

    async def answer(self, request: Request, handler: Handler, status: int) -> tuple[int, Any]:
        """What `Endpoint` sends: the status and the envelope."""
        try:
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            caller = await self.caller_of(token if scheme.lower() == "bearer" else None)
            return status, {"ok": True, "data": await handler(request, caller)}
        except ApiError as exc:
            return exc.status, _error(exc.code, exc.message)
        except NotFound as exc:
            return 404, _error("not_found", str(exc))
        except Conflict as exc:
            return 409, _error("name_conflict", str(exc))
        except StoreError as exc:
            return 409, _error("conflict", str(exc))

    @staticmethod
    async def body_of(request: Request, model: type[B]) -> B:
        raw = await request.body()
        if len(raw) > MAX_BODY:
            raise ApiError(413, "payload_too_large", f"body of {len(raw)} bytes (limit {MAX_BODY})")
        try:
            # Parsed and validated in one pass (pydantic-core), not json.loads first.
            return model.model_validate_json(raw if raw.strip() else b"{}")
        except ValidationError as exc:
            if any(e["type"] == "json_invalid" for e in exc.errors()):
                reason = exc.errors()[0]["msg"]
                raise ApiError(400, "invalid_json", f"the body is not JSON: {reason}") from None
            raise ApiError(400, "invalid_request", problems(exc)) from None

    @staticmethod
    def page_of(request: Request) -> tuple[int, str | None, str | None]:
        query = request.query_params
        try:
            limit = min(max(int(query.get("limit") or 50), 1), 500)
        except ValueError:
            raise ApiError(400, "invalid_request", "limit: not a number") from None
        return limit, query.get("before"), query.get("after")

    @staticmethod
    def as_agent(caller: Caller) -> Agent:
        if caller.agent is None:
            raise ApiError(
                403, "agent_token_required", "this endpoint acts as an agent: use its token"
            )
        return caller.agent

    async def channel_named(self, caller: Caller, name: str) -> Channel:
        channel = await self.store.channel_by_name(caller.workspace.id, name.removeprefix("#"))
        if channel is None:
            raise ApiError(404, "channel_not_found", f"no channel named {name!r}")
        return channel

    async def agent_named(self, caller: Caller, name: str) -> Agent:
        agent = await self.store.agent_by_name(caller.workspace.id, name.removeprefix("@"))
        if agent is None:
            raise ApiError(404, "agent_not_found", f"no agent named {name!r}")
        return agent

    async def message_named(self, caller: Caller, message_id: str) -> Message:
        """The message, if the caller may see it: a DM's only to its participants (to
        anyone else it does not exist)."""
        message = await self.store.message(message_id)
        if message is None or message.workspace_id != caller.workspace.id:
            raise ApiError(404, "message_not_found", f"no message {message_id!r}")
        if caller.agent is not None:
            channel = await self.store.channel_by_id(message.channel_id)
            if channel is not None and channel.kind != "channel":
                members = await self.store.channel_members(channel.id)
                if all(m.agent_id != caller.agent.id for m in members):
                    raise ApiError(404, "message_not_found", f"no message {message_id!r}")
        return message

    async def message_view(
        self,
        message: Message,
        mode: str | None = None,
        sender: Agent | None = None,
        attachments: Sequence[FileRecord] = (),
    ) -> dict[str, Any]:
        """The message as clients see it. ``sender`` given means it was just written by
        that agent: nothing to look up (no replies, reactions or readers yet; its
        attachments are ``attachments``)."""
        stats = MessageStats()
        if sender is None:
            sender = await self.store.agent_by_id(message.agent_id)
            stats = await self.store.message_stats(message.id)
            attachments = await self.store.message_attachments(message.id)
        return {
            "id": message.id,
            "channel_id": message.channel_id,
            "agent_id": message.agent_id,
            "agent_name": sender.name if sender else "",
            "text": message.text,
            "blocks": message.blocks,
            "metadata": message.metadata,
            "thread_id": message.thread_id,
            "created_at": message.created_at,
            "attachments": [
                {
                    "file_id": f.id,
                    "filename": f.filename,
                    "content_type": f.content_type,
                    "size_bytes": f.received if f.received is not None else f.size,
                }
                for f in attachments
            ],
            "reply_count": stats.reply_count,
            "reactions": [group.model_dump() for group in stats.reactions],
            "read_by_count": stats.read_by_count,
            "injection_mode": mode,
        }


def problems(exc: ValidationError) -> str:
    """A validation error as one line: ``field: problem; field: problem``."""
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()
    )


def workspace_view(workspace: Workspace) -> dict[str, Any]:
    # The SDK's model wants api_key_hash; the hash is not the client's business.
    return {**workspace.model_dump(), "api_key_hash": "", "metadata": {}}


def agent_view(agent: Agent) -> dict[str, Any]:
    return {
        "id": agent.id, "workspace_id": agent.workspace_id, "name": agent.name,
        "type": agent.kind, "token_hash": "", "status": agent.status, "persona": agent.persona,
        "metadata": agent.metadata, "created_at": agent.created_at,
        "last_seen": agent.last_seen or agent.created_at,
    }  # fmt: skip


def channel_view(channel: Channel) -> dict[str, Any]:
    return {
        "id": channel.id, "workspace_id": channel.workspace_id, "name": channel.name,
        "channel_type": 0, "topic": channel.topic, "metadata": channel.metadata,
        "created_by": channel.created_by, "is_archived": channel.archived,
        "created_at": channel.created_at,
    }  # fmt: skip


def member_view(channel: Channel, member: Member) -> dict[str, Any]:
    role = "owner" if member.agent_id == channel.created_by else "member"
    return {**member.model_dump(), "role": role}

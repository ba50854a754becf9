"""The daemon's local control API (JSON over HTTP, bearer token).

=======  ==================================  ===========================================
GET      /v1/health                          liveness, pid, version, event-log counters
GET      /v1/harnesses                       known harnesses and broken profiles
GET      /v1/sessions[?all=1]                live sessions (and recently ended ones)
POST     /v1/sessions                        create (body: SessionSpec + ``wait``)
POST     /v1/sessions/attach                 attach to a running pid
GET      /v1/sessions/{name}                 one session
DELETE   /v1/sessions/{name}[?reason=]       release
POST     /v1/sessions/{name}/messages        send (text, mode, from, id, idempotency_key,
                                             wait, timeout)
GET      /v1/sessions/{name}/approvals       pending tool approvals
POST     /v1/sessions/{name}/approvals/{id}  answer one (body: decision allow|deny)
POST     /v1/sessions/{name}/keys            type raw keys into the PTY (body: keys)
GET      /v1/sessions/{name}/screen          the PTY screen
GET      /v1/sessions/{name}/logs[?bytes=N]  raw scrollback / stderr tail
GET      /v1/events[?since=&session=&follow] events as JSON lines (follow: stream)
GET      /v1/workspace                       the workspace: name, key, relay_url, node
POST     /v1/relay/messages                  send through the relay (to @agent|#channel,
                                             text, mode, from, wait, timeout)
=======  ==================================  ===========================================

Every error is ``{"error": {"code", "message"}}`` with a fitting status; a bad request
never disturbs other sessions.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from .. import __version__
from ..contract import DeliveryMode, RelayMessage, SessionSpec
from ..exceptions import InvalidRequest, RuntimeErrorBase, SessionNotFound
from ..port import DeliveryPort
from ..supervisor import Supervisor
from .relaying import RelayAccess

__all__ = ["create_app"]

Handler = Callable[[Request], Awaitable[Response]]


class CreateBody(SessionSpec):
    wait: bool = True


class AttachBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    pid: int = Field(gt=0)
    harness: str = "process"


class KeysBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    keys: str = Field(min_length=1, max_length=4096)


class ApproveBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    decision: Literal["allow", "deny"]


class SendBody(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    text: str = Field(max_length=1 << 20)
    mode: DeliveryMode = DeliveryMode.WAIT
    sender: str | None = Field(default=None, alias="from")
    id: str | None = None
    idempotency_key: str | None = None
    wait: bool = False
    timeout: float = Field(default=60.0, gt=0, le=3600)


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def _validation_message(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "body"
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{where}: {first['msg']}{more}"


async def _body(request: Request, model: type[BaseModel]) -> Any:
    try:
        raw = await request.body()
        return model.model_validate_json(raw or b"{}")
    except ValidationError as exc:
        raise InvalidRequest(_validation_message(exc)) from None


class _TokenAuth:
    """Pure ASGI middleware: every request needs ``Authorization: Bearer <token>``."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            given = dict(scope["headers"]).get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                response = _error(401, "unauthorized", "missing or invalid token")
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class RelaySendBody(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    to: str = Field(min_length=2, max_length=200)
    text: str = Field(max_length=64 * 1024)
    mode: Literal["wait", "steer"] = "wait"
    sender: str = Field(default="cli", alias="from", min_length=1, max_length=80)
    wait: bool = False
    timeout: float = Field(default=60.0, gt=0, le=3600)


def create_app(
    supervisor: Supervisor, port: DeliveryPort, token: str, relay: RelayAccess | None = None
) -> ASGIApp:
    """The control API over ``supervisor``; messages go through ``port`` (to a session by
    name) or through the workspace's ``relay`` (to ``@agent`` or ``#channel``)."""

    def guarded(handler: Handler) -> Handler:
        async def run(request: Request) -> Response:
            try:
                return await handler(request)
            except RuntimeErrorBase as exc:
                return _error(exc.status, exc.code, exc.message)
            except TimeoutError as exc:
                return _error(504, "timeout", str(exc) or "timed out")

        return run

    async def health(request: Request) -> Response:
        return JSONResponse(
            {
                "status": "ok",
                "pid": os.getpid(),
                "version": __version__,
                "sessions": len(supervisor.sessions()),
                "events": {
                    "last_seq": supervisor.events.last_seq,
                    "dropped": supervisor.events.dropped,
                },
            }
        )

    async def harnesses(request: Request) -> Response:
        registry = supervisor.harnesses
        return JSONResponse(
            {"harnesses": registry.names(), "problems": registry.profiles.problems()}
        )

    async def list_sessions(request: Request) -> Response:
        live = [s.info() for s in supervisor.sessions()]
        ended = supervisor.ended() if request.query_params.get("all") else []
        return JSONResponse({"sessions": live, "ended": ended})

    async def create(request: Request) -> Response:
        body: CreateBody = await _body(request, CreateBody)
        spec = SessionSpec(**body.model_dump(exclude={"wait"}))
        session = await supervisor.create(spec, wait=body.wait)
        return JSONResponse(session.info(), status_code=201)

    async def attach(request: Request) -> Response:
        body: AttachBody = await _body(request, AttachBody)
        session = await supervisor.attach(body.name, body.pid, body.harness)
        return JSONResponse(session.info(), status_code=201)

    async def get_session(request: Request) -> Response:
        return JSONResponse(supervisor.get(request.path_params["name"]).info())

    async def release(request: Request) -> Response:
        name = request.path_params["name"]
        info = await supervisor.release(name, request.query_params.get("reason"))
        return JSONResponse({"name": name, "exit": info.model_dump(mode="json")})

    async def send(request: Request) -> Response:
        name = request.path_params["name"]
        body: SendBody = await _body(request, SendBody)
        supervisor.get(name)  # unknown or ended: a clear 404 before anything is queued
        fields = body.model_dump(exclude={"wait", "timeout"}, exclude_none=True)
        message = RelayMessage.model_validate(fields)
        receipt = await port.send(name, message)
        if body.wait and not receipt.final:
            receipt = await port.wait_final(receipt.message_id, body.timeout)
        return JSONResponse({"receipt": receipt.model_dump(mode="json")})

    def relay_access() -> RelayAccess:
        if relay is None:
            raise InvalidRequest("this daemon belongs to no workspace")
        return relay

    async def workspace(request: Request) -> Response:
        return JSONResponse(relay_access().describe())

    async def relay_send(request: Request) -> Response:
        body: RelaySendBody = await _body(request, RelaySendBody)
        sent = await relay_access().send(
            body.to, body.text, sender=body.sender, mode=body.mode, wait=body.wait,
            timeout=body.timeout,
        )  # fmt: skip
        return JSONResponse(sent)

    async def approvals(request: Request) -> Response:
        session = supervisor.get(request.path_params["name"])
        return JSONResponse({"pending": session.approvals.pending()})

    async def approve(request: Request) -> Response:
        session = supervisor.get(request.path_params["name"])
        body: ApproveBody = await _body(request, ApproveBody)
        session.approvals.answer(request.path_params["approval"], body.decision)
        return JSONResponse({"approval_id": request.path_params["approval"], **body.model_dump()})

    async def keys(request: Request) -> Response:
        session = supervisor.get(request.path_params["name"])
        body: KeysBody = await _body(request, KeysBody)
        await session.send_keys(body.keys.encode())
        return JSONResponse({"sent": len(body.keys)})

    async def screen(request: Request) -> Response:
        name = request.path_params["name"]
        snapshot = supervisor.get(name).screen()
        if snapshot is None:
            raise InvalidRequest(f"session {name!r} has no terminal (headless)")
        return JSONResponse(snapshot.model_dump(mode="json") | {"text": snapshot.text})

    async def logs(request: Request) -> Response:
        data = supervisor.get(request.path_params["name"]).logs()
        limit = request.query_params.get("bytes")
        if limit and limit.isdigit():
            data = data[-int(limit) :]
        return Response(data, media_type="application/octet-stream")

    async def events(request: Request) -> Response:
        query = request.query_params
        session = query.get("session")
        if session:
            try:
                supervisor.get(session)
            except SessionNotFound:
                if not any(e.get("name") == session for e in supervisor.ended()):
                    raise
        try:
            cursor = int(query.get("since", "0"))
        except ValueError:
            raise InvalidRequest("since: must be an integer event seq") from None
        log = supervisor.events

        async def lines() -> AsyncIterator[bytes]:
            if query.get("follow") in ("1", "true", "yes"):
                async for event in log.follow(cursor, session):
                    yield event.model_dump_json().encode() + b"\n"
            else:
                for event in log.since(cursor, session):
                    yield event.model_dump_json().encode() + b"\n"

        return StreamingResponse(lines(), media_type="application/x-ndjson")

    routes = [
        Route("/v1/health", guarded(health)),
        Route("/v1/harnesses", guarded(harnesses)),
        Route("/v1/sessions", guarded(list_sessions), methods=["GET"]),
        Route("/v1/sessions", guarded(create), methods=["POST"]),
        Route("/v1/sessions/attach", guarded(attach), methods=["POST"]),
        Route("/v1/sessions/{name}", guarded(get_session), methods=["GET"]),
        Route("/v1/sessions/{name}", guarded(release), methods=["DELETE"]),
        Route("/v1/sessions/{name}/messages", guarded(send), methods=["POST"]),
        Route("/v1/sessions/{name}/approvals", guarded(approvals), methods=["GET"]),
        Route("/v1/sessions/{name}/approvals/{approval}", guarded(approve), methods=["POST"]),
        Route("/v1/sessions/{name}/keys", guarded(keys), methods=["POST"]),
        Route("/v1/sessions/{name}/screen", guarded(screen)),
        Route("/v1/sessions/{name}/logs", guarded(logs)),
        Route("/v1/events", guarded(events)),
        Route("/v1/workspace", guarded(workspace)),
        Route("/v1/relay/messages", guarded(relay_send), methods=["POST"]),
    ]

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return _error(exc.status_code, code, str(exc.detail))

    app = Starlette(routes=routes, exception_handlers={HTTPException: http_error})
    return _TokenAuth(app, token)

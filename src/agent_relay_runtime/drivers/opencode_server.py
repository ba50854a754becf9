"""OpenCode headless: ``opencode serve`` on a loopback port, driven over HTTP and SSE.

- The driver starts ``opencode serve --port P --hostname 127.0.0.1`` with a random
  server password (Basic auth), or attaches to a server that already runs (endpoint +
  password) without owning it: release then only aborts and detaches.
- Readiness: ``/global/health`` answers, a session is open (``POST /session``, or the one
  to resume), and the ``/event`` stream is connected.
- Delivery: ``POST /session/:id/prompt_async``; the evidence is the server's ``204``.
  Steer aborts the running turn first (``/abort``).
- Busy/idle: ``session.status`` busy/idle (protocol signal).
- Events: text and reasoning parts → transcript, tool parts → tool.* (bash also
  command.*), ``file.edited`` → file.changed, ``step-finish`` → usage,
  ``permission.asked`` → the session's approval policy.
- The event stream can drop or stall: it is reconnected with backoff and the session is
  reconciled (status and message list) so that nothing is missed or reported twice.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import signal
import socket
from pathlib import Path
from typing import Any, Literal

import anyio
import httpx
from anyio.abc import TaskGroup, TaskStatus

from ..aio import CallbackStatus
from ..contract import (
    Capabilities,
    DeliveryMode,
    Evidence,
    Fidelity,
    RelayMessage,
    SessionMode,
    SessionState,
    SignalSource,
)
from ..events import (
    CommandCompleted,
    CommandStarted,
    FileChanged,
    ProtocolError,
    ToolCalled,
    ToolCompleted,
    ToolFailed,
    TranscriptChunk,
    TurnCompleted,
    TurnStarted,
    UsageUpdated,
)
from ..exceptions import DeliveryFailed, TransportClosed
from ..logs import get_logger
from ..transports.process import ProcessHandle
from ..transports.sse import iter_sse
from ..transports.stdio import StdioTransport
from .base import Driver, SessionPort

__all__ = ["OpenCodeServerDriver", "free_loopback_port"]

P = SignalSource.PROTOCOL
S = SessionState
_EXACT_EVENTS = (
    "transcript.chunk",
    "tool.called",
    "tool.completed",
    "tool.failed",
    "tool.approval.requested",
    "file.changed",
    "command.started",
    "command.completed",
    "usage.updated",
    "turn.started",
    "turn.completed",
)
_LOST_AFTER = 30.0  # an attached server unreachable this long ends the session


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class OpenCodeServerDriver(Driver):
    harness = "opencode"
    mode = SessionMode.HEADLESS
    capabilities = Capabilities(
        delivery_modes=(DeliveryMode.WAIT, DeliveryMode.STEER, DeliveryMode.IMMEDIATE),
        events=dict.fromkeys(_EXACT_EVENTS, Fidelity.EXACT),
        idle_signal=SignalSource.PROTOCOL,
        resumable=True,
    )

    def __init__(
        self,
        *,
        cwd: Path,
        env: dict[str, str],
        executable: str | None = None,
        endpoint: str | None = None,
        password: str | None = None,
        username: str = "opencode",
        model: str | None = None,
        resume: str | None = None,
        args: list[str] | None = None,
    ) -> None:
        self.owned = endpoint is None
        self.resume = resume
        self.model = model
        self.session_id: str | None = None
        self._transport: StdioTransport | None = None
        if self.owned:
            assert executable is not None
            port = free_loopback_port()
            password = password or secrets.token_urlsafe(24)
            self.base_url = f"http://127.0.0.1:{port}"
            self.argv = [executable, "serve", "--port", str(port), "--hostname", "127.0.0.1"]
            self.argv += list(args or [])
            env = {
                **env,
                "OPENCODE_SERVER_PASSWORD": password,
                "OPENCODE_SERVER_USERNAME": username,
            }
            self._transport = StdioTransport(self.argv, cwd=cwd, env=env, on_message=None)
        else:
            assert endpoint is not None
            self.base_url = endpoint.rstrip("/")
            self.argv = []
        auth = (username, password) if password else None
        self._http = httpx.AsyncClient(
            base_url=self.base_url, auth=auth, timeout=httpx.Timeout(30.0, connect=5.0)
        )
        self._port: SessionPort | None = None
        self._tg: TaskGroup | None = None
        self._detached = anyio.Event()
        self._connected = anyio.Event()
        self._roles: dict[str, str] = {}
        self._parts: dict[str, str] = {}  # part id -> the last state reported
        self._usage = {"input": 0, "output": 0, "read": 0, "write": 0, "cost": 0.0}
        self._turn = 0
        self._outcome: Literal["completed", "interrupted", "failed"] = "completed"
        self._lost_reason: str | None = None
        self._log = get_logger(harness=self.harness)

    @property
    def process(self) -> ProcessHandle | None:
        return self._transport.handle if self._transport else None

    def logs(self) -> bytes:
        if self._transport is None:
            return b""
        return self._transport.stdout.bytes() + self._transport.stderr.bytes()

    def failure_detail(self) -> str | None:
        if self._lost_reason:
            return self._lost_reason
        return self.logs().decode("utf-8", "replace").strip()[-2000:] or None

    # -- life ------------------------------------------------------------------------------

    async def run(
        self, port: SessionPort, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        self._port = port
        self._log = self._log.bind(session=port.name)
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                if self._transport is not None:

                    def spawned() -> None:
                        task_status.started()
                        tg.start_soon(self._open)

                    await self._transport.run(task_status=CallbackStatus(spawned))
                else:
                    task_status.started()
                    tg.start_soon(self._open)
                    await self._detached.wait()
                tg.cancel_scope.cancel()
            if self._lost_reason and not self.owned:
                raise TransportClosed(self._lost_reason)
        finally:
            with anyio.CancelScope(shield=True):
                await self._http.aclose()

    async def _open(self) -> None:
        port = self._require_port()
        await self._wait_healthy()
        try:
            session = await self._open_session()
        except (httpx.HTTPError, ValueError) as exc:
            port.emit(ProtocolError, reason=f"opencode: cannot open a session: {exc}")
            return  # the ready timeout ends the session with this on record
        self.session_id = str(session["id"])
        port.set_conversation(self.session_id)
        assert self._tg is not None
        self._tg.start_soon(self._follow_events)
        await self._connected.wait()
        await self._reconcile()
        port.set_state(S.READY, f"session {self.session_id} open", P)

    async def _wait_healthy(self) -> None:
        # The first request sent while `opencode serve` boots can hang: short attempts.
        while True:
            try:
                reply = await self._http.get("/global/health", timeout=1.0)
                if reply.status_code == 200 and reply.json().get("healthy"):
                    return
                if reply.status_code == 401:
                    self._lost_reason = "opencode refused the server password (HTTP 401)"
            except (httpx.HTTPError, ValueError):
                pass
            await anyio.sleep(0.2)  # polling a server that is starting: nothing to wait on

    async def _open_session(self) -> dict[str, Any]:
        if self.resume:
            reply = await self._http.get(f"/session/{self.resume}")
        else:
            reply = await self._http.post("/session", json={})
        reply.raise_for_status()
        return dict(reply.json())

    async def graceful_exit(self) -> None:
        port = self._require_port()
        if self.session_id and port.state in (S.BUSY, S.BLOCKED):
            await self._abort()  # a tool must not be orphaned by the signal below
        if self._transport is not None and self._transport.handle is not None:
            # `opencode serve` has no goodbye of its own: SIGTERM (after the abort) is it.
            self._transport.handle.signal(signal.SIGTERM)
        else:
            self._detached.set()

    async def _abort(self) -> None:
        self._outcome = "interrupted"
        try:
            await self._http.post(f"/session/{self.session_id}/abort", timeout=5.0)
        except httpx.HTTPError as exc:
            self._log.warning("opencode_abort_failed", error=str(exc))

    # -- delivery ------------------------------------------------------------------------------

    async def inject(self, message: RelayMessage, mode: DeliveryMode) -> Evidence:
        port = self._require_port()
        if mode == DeliveryMode.STEER and port.state == S.BUSY:
            await self._abort()
            with contextlib.suppress(TimeoutError):
                # Still busy after that: the prompt waits behind the turn (OpenCode queues).
                await port.wait_state(lambda s: s != S.BUSY, 10.0)
        body: dict[str, Any] = {"parts": [{"type": "text", "text": message.render()}]}
        if self.model and "/" in self.model:
            provider, model = self.model.split("/", 1)
            body["model"] = {"providerID": provider, "modelID": model}
        try:
            reply = await self._http.post(f"/session/{self.session_id}/prompt_async", json=body)
        except httpx.ConnectError as exc:
            raise DeliveryFailed(f"opencode is unreachable: {exc}", retryable=True) from exc
        except httpx.HTTPError as exc:
            # Sent, but no answer: it may have been taken.
            raise DeliveryFailed(f"opencode did not answer: {exc}", retryable=False) from exc
        if reply.status_code != 204:
            raise DeliveryFailed(
                f"opencode refused the prompt: HTTP {reply.status_code} {reply.text[:200]}",
                retryable=True,
            )
        return Evidence(kind="protocol_ack", detail="prompt_async accepted (HTTP 204)")

    # -- events ----------------------------------------------------------------------------------

    async def _follow_events(self) -> None:
        delay, failing_since = 0.2, None
        while True:
            try:
                async with self._http.stream(
                    "GET", "/event", timeout=httpx.Timeout(None, connect=5.0)
                ) as reply:
                    reply.raise_for_status()
                    async for sse in iter_sse(reply.aiter_lines()):
                        delay, failing_since = 0.2, None
                        self._on_sse(sse.data)
            except (httpx.HTTPError, ValueError) as exc:
                self._log.info("opencode_events_dropped", error=str(exc))
            if self._connected.is_set():
                self._log.info("opencode_events_reconnecting", delay=delay)
            now = anyio.current_time()
            failing_since = failing_since if failing_since is not None else now
            if not self.owned and now - failing_since > _LOST_AFTER:
                self._lost_reason = f"opencode server at {self.base_url} unreachable"
                self._detached.set()
                return
            await anyio.sleep(delay)  # backoff before reconnecting
            delay = min(delay * 2, 5.0)

    def _on_sse(self, data: str) -> None:
        try:
            event = json.loads(data)
        except ValueError:
            reason = "opencode sent an event that is not JSON"
            self._require_port().emit(ProtocolError, reason=reason, preview=data[:200])
            return
        kind = event.get("type")
        props = event.get("properties") or {}
        if kind == "server.connected":
            if self._connected.is_set() and self._tg is not None:
                self._tg.start_soon(self._reconcile)  # events may have been missed
            self._connected.set()
            return
        if kind == "file.edited" and self._require_port().state == S.BUSY:
            # The event names no session: it is ours while our turn runs (on a server we
            # own, the only session; on an attached one, the busy one we drive).
            self._require_port().emit(FileChanged, path=str(props.get("file")), change="modified")
            return
        if _session_of(props) != self.session_id:
            return
        self._require_port().activity()
        self._on_event(str(kind), props)

    def _on_event(self, kind: str, props: dict[str, Any]) -> None:
        port = self._require_port()
        if kind == "session.status":
            status = (props.get("status") or {}).get("type")
            if status == "busy":
                self._busy()
            elif status == "idle":
                self._idle()
            elif status == "retry":
                text = f"opencode is retrying: {(props.get('status') or {}).get('message')}"
                port.emit(TranscriptChunk, role="system", text=text)
        elif kind == "session.idle":
            self._idle()
        elif kind == "message.updated":
            info = props.get("info") or {}
            self._roles[str(info.get("id"))] = str(info.get("role", "assistant"))
        elif kind == "message.part.updated":
            self._on_part(props.get("part") or {})
        elif kind == "permission.asked":
            assert self._tg is not None
            self._tg.start_soon(self._approve, props)
        elif kind == "session.error":
            error = props.get("error") or {}
            message = (error.get("data") or {}).get("message") or error.get("name") or error
            if error.get("name") != "MessageAbortedError":
                self._outcome = "failed"
                port.emit(TranscriptChunk, role="system", text=f"opencode error: {message}")

    def _busy(self) -> None:
        port = self._require_port()
        if port.state != S.BUSY and port.set_state(S.BUSY, "session busy", P):
            self._turn += 1
            port.emit(TurnStarted, turn=self._turn)

    def _idle(self) -> None:
        port = self._require_port()
        was_busy = port.state == S.BUSY
        if port.set_state(S.IDLE, "session idle", P) and was_busy:
            port.emit(TurnCompleted, turn=self._turn, outcome=self._outcome)
        self._outcome = "completed"

    def _on_part(self, part: dict[str, Any]) -> None:
        """Report a part once per state, whether it comes live or from a reconciliation."""
        part_id, kind = str(part.get("id")), part.get("type")
        if kind == "tool":
            self._on_tool(part_id, part)
        elif kind in ("text", "reasoning"):
            role = self._roles.get(str(part.get("messageID")), "assistant")
            finished = (part.get("time") or {}).get("end") is not None or role == "user"
            if finished and part_id not in self._parts and part.get("text"):
                self._parts[part_id] = "done"
                shown = "thinking" if kind == "reasoning" else role
                self._require_port().emit(TranscriptChunk, role=shown, text=str(part["text"]))
        elif kind == "step-finish" and part_id not in self._parts:
            self._parts[part_id] = "done"
            self._add_usage(part)

    def _on_tool(self, part_id: str, part: dict[str, Any]) -> None:
        port = self._require_port()
        state = part.get("state") or {}
        status = str(state.get("status"))
        seen = self._parts.get(part_id)
        if status == "pending" or seen == status or seen in ("completed", "error"):
            return
        call_id, tool = str(part.get("callID")), str(part.get("tool"))
        tool_input = state.get("input") or {}
        if seen is None:
            port.emit(ToolCalled, call_id=call_id, tool=tool, input=tool_input)
            if tool == "bash":
                port.emit(CommandStarted, call_id=call_id, command=str(tool_input.get("command")))
        self._parts[part_id] = status
        if status == "completed":
            port.emit(ToolCompleted, call_id=call_id, tool=tool, output=state.get("output"))
        elif status == "error":
            port.emit(ToolFailed, call_id=call_id, tool=tool, error=state.get("error"))
        if tool == "bash" and status in ("completed", "error"):
            metadata = state.get("metadata") or {}
            port.emit(
                CommandCompleted,
                call_id=call_id,
                command=str(tool_input.get("command")),
                exit_code=metadata.get("exit"),
                output=state.get("output") or metadata.get("output"),
                failed=status == "error",
            )

    def _add_usage(self, part: dict[str, Any]) -> None:
        tokens = part.get("tokens") or {}
        cache = tokens.get("cache") or {}
        usage = self._usage
        usage["input"] += int(tokens.get("input") or 0)
        usage["output"] += int(tokens.get("output") or 0)
        usage["read"] += int(cache.get("read") or 0)
        usage["write"] += int(cache.get("write") or 0)
        usage["cost"] += float(part.get("cost") or 0)
        self._require_port().emit(
            UsageUpdated,
            input_tokens=int(usage["input"]),
            output_tokens=int(usage["output"]),
            cache_read_tokens=int(usage["read"]),
            cache_write_tokens=int(usage["write"]),
            cost_usd=usage["cost"],
        )

    async def _approve(self, props: dict[str, Any]) -> None:
        port = self._require_port()
        tool_input = {"patterns": props.get("patterns") or [], **(props.get("metadata") or {})}
        decision = await port.request_approval(
            str(props.get("permission")),
            tool_input,
            call_id=(props.get("tool") or {}).get("callID"),
        )
        reply = "once" if decision == "allow" else "reject"
        try:
            await self._http.post(f"/permission/{props.get('id')}/reply", json={"reply": reply})
        except httpx.HTTPError as exc:
            self._log.warning("opencode_permission_reply_failed", error=str(exc))

    async def _reconcile(self) -> None:
        """Catch up after (re)connecting: the session's status and every message part."""
        try:
            status = (await self._http.get("/session/status")).json()
            messages = (await self._http.get(f"/session/{self.session_id}/message")).json()
        except (httpx.HTTPError, ValueError) as exc:
            self._log.info("opencode_reconcile_failed", error=str(exc))
            return
        for message in messages:
            info = message.get("info") or {}
            self._roles[str(info.get("id"))] = str(info.get("role", "assistant"))
            for part in message.get("parts") or []:
                self._on_part(part)
        busy = (status.get(self.session_id) or {}).get("type") == "busy"
        port = self._require_port()
        if busy:
            self._busy()
        elif port.state == S.BUSY:
            self._idle()

    def _require_port(self) -> SessionPort:
        assert self._port is not None, "driver not running"
        return self._port


def _session_of(props: dict[str, Any]) -> str | None:
    for holder in (props, props.get("info") or {}, props.get("part") or {}):
        if isinstance(holder, dict) and holder.get("sessionID"):
            return str(holder["sessionID"])
    return None

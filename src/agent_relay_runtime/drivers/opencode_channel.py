"""OpenCode's HTTP API and event stream, seen from one OpenCode session.

Both OpenCode drivers use it: the headless one against the ``opencode serve`` it owns (or
an attached server), the TUI one against the server the TUI hosts on its ``--port``.

- Events (SSE, ``/event``, or ``/global/event`` whose events are wrapped in
  ``{directory, payload}``) become session events: ``session.status`` busy/idle (protocol
  signal), text/reasoning parts → transcript, tool parts → tool.* (bash also command.*),
  ``file.edited`` → file.changed, ``step-finish`` → usage, ``permission.asked`` → the
  session's approval policy.
- The stream is reconnected with backoff; after a (re)connection the session is
  reconciled from ``/session/status`` and its message list, every part reported once.
- A channel without a session id adopts the first session created in its directory (the
  TUI creates its session when the first prompt is submitted).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import anyio
import httpx
from anyio.abc import TaskGroup

from ..contract import Evidence, SessionState, SignalSource
from ..drivers.base import SessionPort
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
from ..exceptions import DeliveryFailed
from ..transports.sse import iter_sse

__all__ = ["OpenCodeChannel"]

P = SignalSource.PROTOCOL
S = SessionState


class OpenCodeChannel:
    def __init__(
        self,
        *,
        base_url: str,
        password: str | None,
        username: str,
        port: SessionPort,
        log: Any,
        stream: str = "/event",
        directory: Path | None = None,
        give_up_after: float | None = None,
    ) -> None:
        self.base_url = base_url
        self.port = port
        self.stream = stream
        self.directory = directory
        self.give_up_after = give_up_after
        self.session_id: str | None = None
        self.lost_reason: str | None = None
        self.user_messages = 0
        self.connected = anyio.Event()
        self.lost = anyio.Event()
        auth = (username, password) if password else None
        self.http = httpx.AsyncClient(
            base_url=base_url, auth=auth, timeout=httpx.Timeout(30.0, connect=5.0)
        )
        self._log = log
        self._tg: TaskGroup | None = None
        self._roles: dict[str, str] = {}
        self._parts: dict[str, str] = {}  # part id -> the last state reported
        self._usage = {"input": 0, "output": 0, "read": 0, "write": 0, "cost": 0.0}
        self._turn = 0
        self._outcome: Literal["completed", "interrupted", "failed"] = "completed"

    async def aclose(self) -> None:
        await self.http.aclose()

    # -- requests --------------------------------------------------------------------------

    async def wait_healthy(self) -> None:
        """Return once the server answers; its first requests while booting can hang."""
        while True:
            try:
                reply = await self.http.get("/global/health", timeout=1.0)
                if reply.status_code == 200 and reply.json().get("healthy"):
                    return
                if reply.status_code == 401:
                    self.lost_reason = "opencode refused the server password (HTTP 401)"
            except (httpx.HTTPError, ValueError):
                pass
            await anyio.sleep(0.2)  # polling a server that is starting: nothing to wait on

    async def open_session(self, resume: str | None) -> str:
        if resume:
            reply = await self.http.get(f"/session/{resume}")
        else:
            reply = await self.http.post("/session", json={})
        reply.raise_for_status()
        self.adopt(str(reply.json()["id"]))
        assert self.session_id is not None
        return self.session_id

    def adopt(self, session_id: str) -> None:
        self.session_id = session_id
        self.port.set_conversation(session_id)

    async def abort(self) -> None:
        self._outcome = "interrupted"
        try:
            await self.http.post(f"/session/{self.session_id}/abort", timeout=5.0)
        except httpx.HTTPError as exc:
            self._log.warning("opencode_abort_failed", error=str(exc))

    async def prompt(self, text: str, model: str | None) -> Evidence:
        body: dict[str, Any] = {"parts": [{"type": "text", "text": text}]}
        if model and "/" in model:
            provider, model_id = model.split("/", 1)
            body["model"] = {"providerID": provider, "modelID": model_id}
        try:
            reply = await self.http.post(f"/session/{self.session_id}/prompt_async", json=body)
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

    # -- the event stream --------------------------------------------------------------------

    async def follow(self, tg: TaskGroup) -> None:
        """Read the event stream, reconnecting, until the server is given up on."""
        self._tg = tg
        delay, failing_since = 0.2, None
        while True:
            try:
                async with self.http.stream(
                    "GET", self.stream, timeout=httpx.Timeout(None, connect=5.0)
                ) as reply:
                    reply.raise_for_status()
                    async for sse in iter_sse(reply.aiter_lines()):
                        delay, failing_since = 0.2, None
                        self._on_sse(sse.data)
            except (httpx.HTTPError, ValueError) as exc:
                self._log.info("opencode_events_dropped", error=str(exc))
            now = anyio.current_time()
            failing_since = failing_since if failing_since is not None else now
            if self.give_up_after is not None and now - failing_since > self.give_up_after:
                self.lost_reason = f"opencode server at {self.base_url} unreachable"
                self.lost.set()
                return
            await anyio.sleep(delay)  # backoff before reconnecting
            delay = min(delay * 2, 5.0)

    def _on_sse(self, data: str) -> None:
        try:
            event = json.loads(data)
        except ValueError:
            reason = "opencode sent an event that is not JSON"
            self.port.emit(ProtocolError, reason=reason, preview=data[:200])
            return
        if isinstance(event.get("payload"), dict):  # /global/event wraps every event
            if self.directory and event.get("directory") not in (None, str(self.directory)):
                return
            event = event["payload"]
        kind = str(event.get("type"))
        props = event.get("properties") or {}
        if kind == "server.connected":
            if self.connected.is_set() and self._tg is not None and self.session_id:
                self._tg.start_soon(self.reconcile)  # events may have been missed
            self.connected.set()
            return
        if kind == "file.edited" and self.port.state == S.BUSY:
            # The event names no session: it is ours while our turn runs (on a server we
            # own, the only session; on an attached one, the busy one we drive).
            self.port.emit(FileChanged, path=str(props.get("file")), change="modified")
            return
        session = _session_of(props)
        if self.session_id is None and kind == "session.created" and session:
            self.adopt(session)
        if session is None or session != self.session_id:
            return
        self.port.activity()
        self._on_event(kind, props)

    def _on_event(self, kind: str, props: dict[str, Any]) -> None:
        port = self.port
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
            message_id, role = str(info.get("id")), str(info.get("role", "assistant"))
            if role == "user" and message_id not in self._roles:
                self.user_messages += 1
            self._roles[message_id] = role
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
        if self.port.state != S.BUSY and self.port.set_state(S.BUSY, "session busy", P):
            self._turn += 1
            self.port.emit(TurnStarted, turn=self._turn)

    def _idle(self) -> None:
        was_busy = self.port.state == S.BUSY
        if self.port.set_state(S.IDLE, "session idle", P) and was_busy:
            self.port.emit(TurnCompleted, turn=self._turn, outcome=self._outcome)
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
                self.port.emit(TranscriptChunk, role=shown, text=str(part["text"]))
        elif kind == "step-finish" and part_id not in self._parts:
            self._parts[part_id] = "done"
            self._add_usage(part)

    def _on_tool(self, part_id: str, part: dict[str, Any]) -> None:
        port = self.port
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
        self.port.emit(
            UsageUpdated,
            input_tokens=int(usage["input"]),
            output_tokens=int(usage["output"]),
            cache_read_tokens=int(usage["read"]),
            cache_write_tokens=int(usage["write"]),
            cost_usd=usage["cost"],
        )

    async def _approve(self, props: dict[str, Any]) -> None:
        tool_input = {"patterns": props.get("patterns") or [], **(props.get("metadata") or {})}
        decision = await self.port.request_approval(
            str(props.get("permission")),
            tool_input,
            call_id=(props.get("tool") or {}).get("callID"),
        )
        reply = "once" if decision == "allow" else "reject"
        try:
            await self.http.post(f"/permission/{props.get('id')}/reply", json={"reply": reply})
        except httpx.HTTPError as exc:
            self._log.warning("opencode_permission_reply_failed", error=str(exc))

    async def reconcile(self) -> None:
        """Catch up after (re)connecting: the session's status and every message part."""
        try:
            status = (await self.http.get("/session/status")).json()
            messages = (await self.http.get(f"/session/{self.session_id}/message")).json()
        except (httpx.HTTPError, ValueError) as exc:
            self._log.info("opencode_reconcile_failed", error=str(exc))
            return
        for message in messages:
            info = message.get("info") or {}
            self._roles[str(info.get("id"))] = str(info.get("role", "assistant"))
            for part in message.get("parts") or []:
                self._on_part(part)
        busy = (status.get(self.session_id) or {}).get("type") == "busy"
        if busy:
            self._busy()
        elif self.port.state == S.BUSY:
            self._idle()


def _session_of(props: dict[str, Any]) -> str | None:
    for holder in (props, props.get("info") or {}, props.get("part") or {}):
        if isinstance(holder, dict) and holder.get("sessionID"):
            return str(holder["sessionID"])
    return None

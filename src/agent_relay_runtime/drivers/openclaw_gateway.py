"""OpenClaw headless: an ``openclaw gateway run`` on a loopback port, driven over its
WebSocket protocol (see `GatewayClient`; facts in fixtures/fake_agents/OPENCLAW.md).

- The driver starts ``openclaw gateway run --port P --bind loopback`` with a random token
  (``OPENCLAW_GATEWAY_TOKEN``), or attaches to a gateway that already runs (endpoint +
  token) without owning it: release then only aborts its run and detaches.
- Readiness: the gateway's ``[gateway] ready`` log line (an attached gateway: at once),
  then the operator handshake. The session is one gateway session key
  (``agent:main:relay-…``, or the key to resume).
- Delivery: the ``agent`` request, its ``idempotencyKey`` the message id (so the run id
  is too); the evidence is the gateway's "accepted". Steer aborts the running run first
  (``chat.abort``); immediate sends while busy (the gateway queues the run).
- Busy/idle: ``agent`` lifecycle ``start`` / ``end`` | ``error`` (protocol signal).
- Events: assistant text and preambles → transcript, ``tool`` stream → tool.* (``exec``
  also command.*; ``write``/``edit``/``apply_patch`` → file.changed), the run's result →
  usage, ``exec.approval.requested`` → the session's approval policy.
"""

from __future__ import annotations

import contextlib
import re
import secrets
import signal
from collections import deque
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import TaskGroup, TaskStatus

from ..aio import CallbackStatus, Notifier
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
from ..transports.stdio import StdioTransport
from .base import Driver, SessionPort
from .openclaw_client import GatewayClient, GatewayClosed, GatewayError, GatewayRefused
from .opencode_server import free_loopback_port

__all__ = ["OpenClawGatewayDriver", "session_key"]

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
_ANSI = re.compile(rb"\x1b\[[0-9;]*[A-Za-z]")
_READY_LINE = b"[gateway] ready"
_LOST_AFTER = 30.0  # a gateway unreachable this long ends the session
_ABORT_TRIES = 5  # chat.abort asks for a steer, each after the run began or was refused
_FILE_TOOLS = ("write", "edit")
_PATCH_LINE = re.compile(r"^\*\*\* (Add|Update|Delete) File: (.+)$", re.MULTILINE)
_PATCH_CHANGE = {"Add": "created", "Update": "modified", "Delete": "deleted"}


def session_key(name: str) -> str:
    """The gateway's full key for ``name`` (a bare key ``x`` means ``agent:main:x``)."""
    return name if name.startswith("agent:") else f"agent:main:{name}"


class OpenClawGatewayDriver(Driver):
    harness = "openclaw"
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
        key: str,
        executable: str | None = None,
        endpoint: str | None = None,
        token: str | None = None,
        model: str | None = None,
        resume: bool = False,
        args: list[str] | None = None,
        request_timeout: float = 30.0,
        port: int | None = None,
    ) -> None:
        self.owned = endpoint is None
        self.cwd = cwd
        self.key = key
        self.model = model
        self.resume = resume
        self.request_timeout = request_timeout
        self._transport: StdioTransport | None = None
        if self.owned:
            assert executable is not None
            port = port or free_loopback_port()
            token = token or secrets.token_urlsafe(32)
            self.url = f"ws://127.0.0.1:{port}"
            self.argv = [executable, "gateway", "run", "--port", str(port), "--bind", "loopback",
                         "--allow-unconfigured", *(args or [])]  # fmt: skip
            self._transport = StdioTransport(
                self.argv,
                cwd=cwd,
                env={**env, "OPENCLAW_GATEWAY_TOKEN": token},
                on_message=None,
                on_output=self._on_log,
            )
        else:
            assert endpoint is not None
            self.url = re.sub(r"^http", "ws", endpoint.rstrip("/"))
            self.argv = []
        self.token = token
        self._log_line = b""
        self._gateway_ready = anyio.Event()
        self._detached = anyio.Event()
        self._lost: str | None = None
        self._client: GatewayClient | None = None
        self._port: SessionPort | None = None
        self._tg: TaskGroup | None = None
        self._active: set[str] = set()  # accepted runs, not ended
        self._ours: deque[str] = deque(maxlen=64)  # run ids of the messages we sent
        self._unheard: set[str] = set()  # others' runs whose prompt is not reported yet
        self._run_began = Notifier()  # a lifecycle start came in
        self._begun: set[str] = set()  # active runs whose lifecycle start came in
        self._finished: deque[str] = deque(maxlen=64)
        self._turn = 0
        self._texts: dict[str, str] = {}  # assistant item id -> its text so far
        self._said: set[str] = set()  # texts reported in this model call
        self._commands: dict[str, str] = {}  # exec tool call id -> command
        self._tool_args: dict[str, dict[str, Any]] = {}
        self._approvals: dict[str, anyio.CancelScope] = {}
        self._usage = {"input": 0, "output": 0, "cacheRead": 0, "cacheWrite": 0}
        self._cost = 0.0
        self._log = get_logger(harness=self.harness)

    @property
    def process(self) -> ProcessHandle | None:
        return self._transport.handle if self._transport else None

    def logs(self) -> bytes:
        if self._transport is None:
            return b""
        return _ANSI.sub(b"", self._transport.stdout.bytes() + self._transport.stderr.bytes())

    def failure_detail(self) -> str | None:
        if self._lost:
            return self._lost
        return self.logs().decode("utf-8", "replace").strip()[-2000:] or None

    def _on_log(self, data: bytes) -> None:
        """Watch the gateway's log (ANSI-coloured even into a pipe) for its ready line."""
        if self._gateway_ready.is_set():
            return
        *lines, self._log_line = (self._log_line + data).split(b"\n")
        self._log_line = self._log_line[-4096:]
        if any(_ANSI.sub(b"", line).rstrip().endswith(_READY_LINE) for line in lines):
            self._gateway_ready.set()

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
                    self._gateway_ready.set()
                    task_status.started()
                    tg.start_soon(self._open)
                    await self._detached.wait()
                tg.cancel_scope.cancel()
            if self._lost and not self.owned:
                raise TransportClosed(self._lost)
        finally:
            with anyio.CancelScope(shield=True):
                if self._client is not None:
                    await self._client.aclose()

    async def _open(self) -> None:
        port = self._require_port()
        await self._gateway_ready.wait()
        try:
            await self._connect()
            self._require_tg().start_soon(self._follow)  # answers come through the reader
            if self.resume and not await self._known_session():
                await port.fail(f"openclaw has no session {self.key!r} to resume")
                return
        except GatewayClosed as exc:  # refused, or unreachable for _LOST_AFTER
            await port.fail(exc.reason)
            return
        except (GatewayError, TimeoutError) as exc:
            port.emit(ProtocolError, reason=f"openclaw: {exc}")
            return  # the ready timeout (or the exit) ends the session with this on record
        port.set_conversation(self.key)
        await self._before_ready()
        port.set_state(S.READY, f"gateway session {self.key}", P)

    async def _before_ready(self) -> None:
        """What a subclass starts once the gateway session is there (a TUI, say)."""

    async def _connect(self) -> None:
        """Connect, retrying while an attached gateway is unreachable (bounded)."""
        delay, deadline = 0.2, anyio.current_time() + _LOST_AFTER
        while True:
            client = GatewayClient(
                self.url,
                self.token,
                on_event=self._on_event,
                on_late_response=self._on_late_response,
                on_bad_frame=self._on_bad_frame,
            )
            try:
                await client.connect(self.request_timeout)
            except GatewayRefused:
                raise
            except GatewayClosed:
                if anyio.current_time() > deadline:
                    raise
                await anyio.sleep(delay)  # backoff before connecting again
                delay = min(delay * 2, 5.0)
                continue
            if self._client is not None:
                await self._client.aclose()
            self._client = client
            return

    async def _follow(self) -> None:
        """Read events; reconnect (and reconcile) while the gateway is still there."""
        while True:
            closed = await self._require_client().read()
            if self._detached.is_set():
                return
            self._log.info("openclaw_connection_lost", reason=closed.reason)
            try:
                await self._connect()
            except GatewayClosed as exc:
                self._lost = exc.reason
                self._detached.set()
                if self._transport is not None and self._transport.handle is not None:
                    self._transport.handle.signal(signal.SIGTERM)
                return
            self._require_tg().start_soon(self._reconcile)  # its answer comes through read()

    async def _known_session(self) -> bool:
        listing = await self._require_client().request(
            "sessions.list", {"limit": 1000}, self.request_timeout
        )
        return any(row.get("key") == self.key for row in (listing or {}).get("sessions") or [])

    async def _reconcile(self) -> None:
        """After a reconnection: is a run still going? Runs that ended meanwhile end here."""
        try:
            listing = await self._require_client().request(
                "sessions.list", {"limit": 1000}, self.request_timeout
            )
        except (GatewayClosed, GatewayError, TimeoutError) as exc:
            self._log.info("openclaw_reconcile_failed", error=str(exc))
            return
        rows = [r for r in (listing or {}).get("sessions") or [] if r.get("key") == self.key]
        running = set(rows[0].get("activeRunIds") or []) if rows else set()
        port = self._require_port()
        if self._active - running:
            port.emit(
                TranscriptChunk,
                role="system",
                text="the openclaw gateway connection dropped; events of this run were missed",
            )
        outcome = {"failed": "failed", "killed": "interrupted"}.get(
            str(rows[0].get("status")) if rows else "", "completed"
        )
        for run_id in sorted(self._active - running):
            self._run_ended(run_id, {"aborted": outcome == "interrupted"}, outcome)
        for run_id in sorted(running):
            self._run_started(run_id)
            self._begun.add(run_id)

    async def graceful_exit(self) -> None:
        if self._active and self._client is not None:
            # A tool must not be orphaned by the signal below, nor a run left going on an
            # attached gateway.
            with contextlib.suppress(GatewayClosed, GatewayError, TimeoutError):
                await self._client.request("chat.abort", {"sessionKey": self.key}, 5.0)
        if self._transport is not None and self._transport.handle is not None:
            # The gateway's own goodbye is SIGTERM; it drains for up to minutes, which the
            # release escalation bounds.
            self._transport.handle.signal(signal.SIGTERM)
        else:
            self._detached.set()

    # -- delivery ------------------------------------------------------------------------------

    async def inject(self, message: RelayMessage, mode: DeliveryMode) -> Evidence:
        port = self._require_port()
        client = self._require_client()
        if mode == DeliveryMode.STEER and port.state == S.BUSY and self._active:
            with contextlib.suppress(GatewayClosed, GatewayError, TimeoutError):
                await self._abort_running(client)
            with contextlib.suppress(TimeoutError):
                # Still busy after that: the run waits behind the turn (the gateway queues).
                await port.wait_state(lambda s: s != S.BUSY, 10.0)
        text = message.render()
        self._ours.append(message.id)  # before sending: its run may start before the answer
        params: dict[str, Any] = {"message": text, "idempotencyKey": message.id,
                                  "sessionKey": self.key}  # fmt: skip
        if self.model:
            params["model"] = self.model
        try:
            accepted = await client.request("agent", params, self.request_timeout)
        except GatewayError as exc:
            # Refused: the message did not go in, so sending it again is safe.
            raise DeliveryFailed(f"openclaw refused the message: {exc}", retryable=True) from exc
        except GatewayClosed as exc:
            raise DeliveryFailed(f"openclaw: {exc.reason}", retryable=False) from exc
        except TimeoutError:
            raise DeliveryFailed(
                f"openclaw did not answer within {self.request_timeout:g}s", retryable=False
            ) from None
        run_id = str((accepted or {}).get("runId") or message.id)
        port.emit(TranscriptChunk, role="user", text=text)
        if run_id not in self._finished:
            self._run_started(run_id)
        return Evidence(kind="protocol_ack", detail=f"agent accepted (run {run_id})")

    async def _abort_running(self, client: GatewayClient) -> None:
        """``chat.abort`` the session's run. A run accepted but not begun yet is not
        abortable (the abort answers ``aborted: false``): wait for it to begin, then ask
        again; one that began while the refusal was on its way is asked again at once (a
        few times at most: a gateway that keeps refusing is left to finish the run)."""
        for _ in range(_ABORT_TRIES):
            # Taken before asking: the start may come in with (or just after) the answer,
            # before this task runs again, and must not be missed.
            began = self._run_began.waiter()
            answer = await client.request("chat.abort", {"sessionKey": self.key}, 5.0)
            if (answer or {}).get("aborted") or not self._active:
                return  # aborted, or nothing runs any more
            if self._active - self._begun:
                with anyio.fail_after(5.0):
                    await began.wait()

    # -- protocol in ---------------------------------------------------------------------------

    def _on_event(self, name: str, payload: dict[str, Any]) -> None:
        if name == "agent":
            if payload.get("sessionKey") == self.key:
                self._require_port().activity()
                self._on_agent(str(payload.get("runId")), payload)
        elif name == "exec.approval.requested":
            request = payload.get("request") or {}
            if request.get("sessionKey") == self.key:
                self._require_tg().start_soon(self._approve, payload)
        elif name == "exec.approval.resolved":
            scope = self._approvals.get(str(payload.get("id")))
            if scope is not None:
                scope.cancel()  # answered elsewhere (another operator)
        elif name == "shutdown":
            self._log.info("openclaw_gateway_stopping", reason=payload.get("reason"))

    def _on_bad_frame(self, reason: str) -> None:
        self._require_port().emit(ProtocolError, reason=reason)

    def _on_agent(self, run_id: str, payload: dict[str, Any]) -> None:
        stream, data = payload.get("stream"), payload.get("data") or {}
        phase = data.get("phase")
        if stream == "lifecycle":
            if phase == "start":
                if run_id not in self._ours and run_id not in self._active:
                    # Started by another client (a person in the TUI): its prompt is in
                    # the session's history, not in the run's events.
                    self._unheard.add(run_id)
                    self._require_tg().start_soon(self._report_prompt, run_id)
                self._run_started(run_id)
                self._begun.add(run_id)
                self._run_began.notify()
            elif phase in ("model", "finishing"):
                self._flush_text()
                self._said.clear()
            elif phase in ("end", "error"):
                failed = phase == "error" or data.get("error")
                outcome = (
                    "interrupted" if data.get("aborted") else "failed" if failed else "completed"
                )
                if run_id in self._unheard:
                    # Its prompt was not in the history at its start: look again before
                    # the turn ends, so that the prompt comes before turn.completed.
                    self._require_tg().start_soon(self._end_unheard, run_id, data, outcome)
                else:
                    self._run_ended(run_id, data, outcome)
        elif stream == "assistant":
            item = str(data.get("itemId") or run_id)
            if isinstance(data.get("text"), str):
                self._texts[item] = data["text"]
        elif stream == "item":
            # Text before a tool comes as assistant deltas, as a preamble item, or as both.
            if data.get("kind") == "preamble" and phase == "end" and data.get("progressText"):
                self._texts.setdefault(f"preamble:{data.get('itemId')}", data["progressText"])
        elif stream == "tool":
            self._on_tool(data)
        elif stream == "command_output" and phase == "end":
            call_id = str(data.get("toolCallId"))
            self._require_port().emit(
                CommandCompleted,
                call_id=call_id,
                command=self._commands.pop(call_id, str(data.get("title", ""))),
                exit_code=data.get("exitCode"),
                output=data.get("output"),
                failed=data.get("status") != "completed",
            )

    def _on_tool(self, data: dict[str, Any]) -> None:
        port = self._require_port()
        call_id, tool = str(data.get("toolCallId")), str(data.get("name"))
        if data.get("phase") == "start":
            self._flush_text()
            given = data.get("args")
            args: dict[str, Any] = given if isinstance(given, dict) else {}
            self._tool_args[call_id] = args
            port.emit(ToolCalled, call_id=call_id, tool=tool, input=args)
            if tool == "exec":
                self._commands[call_id] = str(args.get("command", ""))
                port.emit(CommandStarted, call_id=call_id, command=self._commands[call_id])
        elif data.get("phase") == "result":
            result = data.get("result") or {}
            text = "".join(
                str(c.get("text", "")) for c in result.get("content") or [] if isinstance(c, dict)
            )
            args = self._tool_args.pop(call_id, {})
            if data.get("isError"):
                port.emit(ToolFailed, call_id=call_id, tool=tool, error=text)
                return
            port.emit(ToolCompleted, call_id=call_id, tool=tool, output=text)
            details = result.get("details") or {}
            for path, change in _changed_files(tool, args, details):
                resolved = (self.cwd / path).resolve() if not Path(path).is_absolute() else path
                port.emit(FileChanged, path=str(resolved), change=change, call_id=call_id)

    def _flush_text(self) -> None:
        for text in self._texts.values():
            if text and text not in self._said:
                self._said.add(text)
                self._require_port().emit(TranscriptChunk, role="assistant", text=text)
        self._texts.clear()

    async def _report_prompt(self, run_id: str) -> bool:
        """Report the user message of a run another client started, from ``chat.history``
        (the gateway may write it there only as the run ends); True if it was there."""
        client = self._client
        if client is None:
            return False
        params = {"sessionKey": self.key, "limit": 10}
        with contextlib.suppress(GatewayClosed, GatewayError, TimeoutError):
            history = await client.request("chat.history", params, self.request_timeout)
            for entry in reversed((history or {}).get("messages") or []):
                if entry.get("idempotencyKey") == f"{run_id}:user" and run_id in self._unheard:
                    self._unheard.discard(run_id)
                    content = entry.get("content")
                    if isinstance(content, list):
                        content = "".join(
                            str(b.get("text", "")) for b in content if b.get("type") == "text"
                        )
                    self._require_port().emit(TranscriptChunk, role="user", text=str(content))
                    return True
        return False

    async def _end_unheard(self, run_id: str, data: dict[str, Any], outcome: str) -> None:
        try:
            await self._report_prompt(run_id)
        finally:
            self._unheard.discard(run_id)
            self._run_ended(run_id, data, outcome)

    def _run_started(self, run_id: str) -> None:
        port = self._require_port()
        if run_id in self._finished or run_id in self._active:
            return
        self._active.add(run_id)
        if port.state != S.BUSY and port.set_state(S.BUSY, f"run {run_id} started", P):
            self._turn += 1
            port.emit(TurnStarted, turn=self._turn)

    def _run_ended(self, run_id: str, data: dict[str, Any], outcome: str) -> None:
        """End a run once (an aborted run reports both ``end`` and ``error``)."""
        port = self._require_port()
        if run_id in self._finished:
            return
        self._finished.append(run_id)
        self._active.discard(run_id)
        self._begun.discard(run_id)
        self._run_began.notify()
        self._flush_text()
        started, ended = data.get("startedAt"), data.get("endedAt")
        duration = ended - started if isinstance(started, int) and isinstance(ended, int) else None
        error = data.get("error")
        port.emit(
            TurnCompleted,
            turn=self._turn,
            outcome=outcome,
            duration_ms=float(duration) if duration is not None else None,
            detail=str(error) if error else None,
        )
        if not self._active:
            port.set_state(S.IDLE, f"run {run_id} {outcome}", P)

    def _on_late_response(self, request_id: str, frame: dict[str, Any]) -> None:
        """An ``agent`` request's second answer: the run's result, with its usage."""
        payload = frame.get("payload") or {}
        meta = ((payload.get("result") or {}).get("meta") or {}).get("agentMeta") or {}
        usage = meta.get("usage")
        if not isinstance(usage, dict):
            return
        for key in self._usage:
            self._usage[key] += int(usage.get(key) or 0)
        cost = usage.get("cost")
        self._cost += float(cost.get("total") or 0) if isinstance(cost, dict) else 0.0
        self._require_port().emit(
            UsageUpdated,
            input_tokens=self._usage["input"],
            output_tokens=self._usage["output"],
            cache_read_tokens=self._usage["cacheRead"],
            cache_write_tokens=self._usage["cacheWrite"],
            cost_usd=self._cost,
        )

    async def _approve(self, payload: dict[str, Any]) -> None:
        request, approval_id = payload.get("request") or {}, str(payload.get("id"))
        with anyio.CancelScope() as scope:
            self._approvals[approval_id] = scope
            try:
                decision = await self._require_port().request_approval(
                    "exec",
                    {"command": request.get("command"), "cwd": request.get("cwd")},
                    reason=request.get("warningText"),
                    call_id=request.get("toolCallId"),
                )
            finally:
                del self._approvals[approval_id]
        if scope.cancelled_caught:
            return
        answer = {"id": approval_id, "decision": "allow-once" if decision == "allow" else "deny"}
        try:
            await self._require_client().request(
                "exec.approval.resolve", answer, self.request_timeout
            )
        except (GatewayClosed, GatewayError, TimeoutError) as exc:
            self._log.warning("openclaw_approval_reply_failed", error=str(exc))

    # -- helpers -------------------------------------------------------------------------------

    def _require_port(self) -> SessionPort:
        assert self._port is not None, "driver not running"
        return self._port

    def _require_client(self) -> GatewayClient:
        assert self._client is not None, "not connected"
        return self._client

    def _require_tg(self) -> TaskGroup:
        assert self._tg is not None, "driver not running"
        return self._tg


def _changed_files(
    tool: str, args: dict[str, Any], details: dict[str, Any]
) -> list[tuple[str, str]]:
    """The files a successful tool call changed, with how."""
    if tool in _FILE_TOOLS and args.get("path") and details.get("changed", True):
        return [(str(args["path"]), "created" if details.get("created") else "modified")]
    if tool == "apply_patch":
        patch = str(args.get("input") or args.get("patch") or "")
        return [(path.strip(), _PATCH_CHANGE[kind]) for kind, path in _PATCH_LINE.findall(patch)]
    return []

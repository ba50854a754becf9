"""Codex headless: ``codex app-server``, JSON-RPC over stdio.

- Readiness: ``initialize`` answered, ``initialized`` sent, a thread started (or resumed).
- Delivery: ``turn/start`` when idle; while a turn runs, ``steer`` and ``immediate`` use
  ``turn/steer`` (Codex adds the input to the running turn). The evidence is the
  server's acceptance of the request. ``-32001`` (overloaded) is retried with backoff.
- Busy/idle: ``turn/started`` → busy, ``turn/completed`` → idle (protocol signal).
- Events: ``item/*`` → transcript, ``commandExecution`` → command.* and tool.*,
  ``fileChange`` → file.changed per path, ``mcpToolCall`` → tool.*,
  ``thread/tokenUsage/updated`` → usage.updated.
- Approvals: ``item/commandExecution/requestApproval`` and
  ``item/fileChange/requestApproval`` (and their v1 forms) go to the session's policy.
- Release: stdin EOF ends the server.
"""

from __future__ import annotations

import re
from collections import deque
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import TaskStatus

from .. import __version__
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
from ..exceptions import DeliveryFailed, TransportClosed, TransportError
from ..transports.framing import FramingError
from ..transports.jsonrpc import METHOD_NOT_FOUND, JsonRpcError, JsonRpcPeer
from ..transports.process import ProcessHandle
from ..transports.stdio import StdioTransport
from .base import Driver, SessionPort

__all__ = ["CodexAppServerDriver"]

P = SignalSource.PROTOCOL
S = SessionState
_OVERLOADED = -32001
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
_CHANGE_KIND = {"add": "created", "delete": "deleted", "update": "modified"}


class CodexAppServerDriver(Driver):
    harness = "codex"
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
        executable: str,
        cwd: Path,
        env: dict[str, str],
        model: str | None = None,
        args: list[str] | None = None,
        resume: str | None = None,
        yolo: bool = False,
        request_timeout: float = 60.0,
    ) -> None:
        self.argv = [executable, "app-server", *(args or [])]
        self.cwd = cwd
        self.model = model
        self.resume = resume
        self.yolo = yolo
        self.request_timeout = request_timeout
        self.thread_id: str | None = None
        self._turn_id: str | None = None
        self._finished: deque[Any] = deque(maxlen=32)
        self._turn = 0
        self._transport = StdioTransport(
            self.argv, cwd=cwd, env=env, on_message=self._on_message, on_error=self._on_error
        )
        self._rpc = JsonRpcPeer(
            self._transport.send,
            on_notification=self._on_notification,
            on_request=self._on_request,
        )
        self._port: SessionPort | None = None

    @property
    def process(self) -> ProcessHandle | None:
        return self._transport.handle

    def logs(self) -> bytes:
        return self._transport.stderr.bytes()

    def failure_detail(self) -> str | None:
        return self._transport.stderr.text().strip()[-2000:] or None

    # -- life ------------------------------------------------------------------------------

    async def run(
        self, port: SessionPort, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        self._port = port
        async with anyio.create_task_group() as tg:
            self._rpc.bind(tg)

            def spawned() -> None:
                task_status.started()
                tg.start_soon(self._handshake)

            await self._transport.run(task_status=CallbackStatus(spawned))
            tg.cancel_scope.cancel()

    async def _handshake(self) -> None:
        port = self._require_port()
        try:
            client = {"name": "agent-relay-runtime", "title": "Agent Relay", "version": __version__}
            hello = await self._rpc.request(
                "initialize", {"clientInfo": client}, self.request_timeout
            )
            await self._rpc.notify("initialized")
            if await self._needs_login():
                version = _version_of(str((hello or {}).get("userAgent", "")))
                await port.fail(
                    f"codex{version} is not logged in: set OPENAI_API_KEY, run `codex login`, "
                    "or point it at another provider (-c model_provider=…)"
                )
                return
            thread = await self._open_thread()
        except (TransportError, TimeoutError) as exc:
            port.emit(ProtocolError, reason=f"codex app-server handshake failed: {exc}")
            return  # the ready timeout (or the exit) ends the session with this reason
        self.thread_id = str(thread["id"])
        port.set_conversation(self.thread_id)
        port.set_state(S.READY, f"thread {self.thread_id} open", P)

    async def _needs_login(self) -> bool:
        """True when Codex would call OpenAI's API and has no account to do it with."""
        try:
            account = await self._rpc.request("account/read", {}, self.request_timeout)
        except JsonRpcError:
            return False  # an older server without account/read: let the turn tell
        return bool(account.get("requiresOpenaiAuth")) and not account.get("account")

    async def _open_thread(self) -> dict[str, Any]:
        if self.resume:
            result = await self._rpc.request(
                "thread/resume", {"threadId": self.resume}, self.request_timeout
            )
        else:
            params: dict[str, Any] = {"cwd": str(self.cwd)}
            if self.model:
                params["model"] = self.model
            if self.yolo:
                params |= {"approvalPolicy": "never", "sandbox": "danger-full-access"}
            result = await self._rpc.request("thread/start", params, self.request_timeout)
        return dict(result["thread"])

    async def graceful_exit(self) -> None:
        await self._transport.close_stdin()

    # -- delivery ------------------------------------------------------------------------------

    async def inject(self, message: RelayMessage, mode: DeliveryMode) -> Evidence:
        port = self._require_port()
        text_input = [{"type": "text", "text": message.render()}]
        if mode != DeliveryMode.WAIT and port.state == S.BUSY and self._turn_id:
            params = {"threadId": self.thread_id, "input": text_input,
                      "expectedTurnId": self._turn_id}  # fmt: skip
            await self._call("turn/steer", params)
            return Evidence(
                kind="protocol_ack", detail=f"turn/steer accepted (turn {self._turn_id})"
            )
        result = await self._call("turn/start", {"threadId": self.thread_id, "input": text_input})
        turn = (result or {}).get("turn") or {}
        # The reader may have seen the whole (short) turn before this response is handled:
        # a finished turn must not be opened again.
        if turn.get("id") not in self._finished:
            self._begin_turn(turn.get("id"))
        return Evidence(kind="protocol_ack", detail=f"turn/start accepted (turn {turn.get('id')})")

    async def _call(self, method: str, params: dict[str, Any]) -> Any:
        delay = 0.2
        for attempt in range(6):
            try:
                return await self._rpc.request(method, params, self.request_timeout)
            except JsonRpcError as exc:
                if exc.rpc_code != _OVERLOADED or attempt == 5:
                    # Refused: the input did not go in, so sending it again is safe.
                    refused = f"codex refused {method}: {exc.message}"
                    raise DeliveryFailed(refused, retryable=True) from exc
                await anyio.sleep(delay)  # the server asked us to back off
                delay *= 2
            except TimeoutError:
                raise DeliveryFailed(
                    f"codex did not answer {method} within {self.request_timeout:g}s",
                    retryable=False,
                ) from None
            except TransportClosed as exc:
                closed = f"codex's stdin is closed: {exc.message}"
                raise DeliveryFailed(closed, retryable=False) from exc
        raise AssertionError("unreachable")

    # -- protocol in ---------------------------------------------------------------------------

    def _on_error(self, error: FramingError) -> None:
        self._require_port().emit(
            ProtocolError, reason=error.reason, size=error.size, preview=error.preview
        )

    def _on_message(self, message: dict[str, Any]) -> None:
        self._require_port().activity()
        self._rpc.feed(message)

    def _begin_turn(self, turn_id: str | None) -> None:
        port = self._require_port()
        if turn_id:
            self._turn_id = turn_id
        if port.state != S.BUSY:
            self._turn += 1
            port.set_state(S.BUSY, f"turn {turn_id} started", P)
            port.emit(TurnStarted, turn=self._turn)

    def _on_notification(self, method: str, params: dict[str, Any]) -> None:
        port = self._require_port()
        if method == "turn/started":
            self._begin_turn((params.get("turn") or {}).get("id"))
        elif method == "turn/completed":
            self._end_turn(params.get("turn") or {})
        elif method in ("item/started", "item/completed"):
            self._on_item(params.get("item") or {}, done=method == "item/completed")
        elif method == "thread/tokenUsage/updated":
            total = (params.get("tokenUsage") or {}).get("total") or {}
            port.emit(
                UsageUpdated,
                input_tokens=int(total.get("inputTokens") or 0),
                output_tokens=int(total.get("outputTokens") or 0),
                cache_read_tokens=int(total.get("cachedInputTokens") or 0),
                cache_write_tokens=int(total.get("cacheWriteInputTokens") or 0),
            )
        elif method == "error":
            error = params.get("error") or {}
            text = error.get("message") if isinstance(error, dict) else str(error)
            retry = " (codex will retry)" if params.get("willRetry") else ""
            port.emit(TranscriptChunk, role="system", text=f"codex error: {text}{retry}")

    def _end_turn(self, turn: dict[str, Any]) -> None:
        port = self._require_port()
        status = str(turn.get("status", "completed"))
        outcome = {"completed": "completed", "interrupted": "interrupted"}.get(status, "failed")
        error = turn.get("error")
        duration = turn.get("durationMs")
        port.emit(
            TurnCompleted,
            turn=self._turn,
            outcome=outcome,
            duration_ms=float(duration) if isinstance(duration, int | float) else None,
            detail=str(error.get("message")) if isinstance(error, dict) else None,
        )
        self._finished.append(turn.get("id"))
        self._turn_id = None
        port.set_state(S.IDLE, f"turn {status}", P)

    def _on_item(self, item: dict[str, Any], *, done: bool) -> None:
        port = self._require_port()
        kind, item_id = item.get("type"), str(item.get("id"))
        if kind == "commandExecution":
            command = item.get("command") or ""
            if not done:
                port.emit(ToolCalled, call_id=item_id, tool="shell", input={"command": command})
                port.emit(CommandStarted, call_id=item_id, command=command)
                return
            failed = item.get("status") in ("failed", "declined")
            output = item.get("aggregatedOutput")
            port.emit(
                CommandCompleted,
                call_id=item_id,
                command=command,
                exit_code=item.get("exitCode"),
                output=output,
                failed=failed,
            )
            result = ToolFailed if failed else ToolCompleted
            field = "error" if failed else "output"
            port.emit(result, call_id=item_id, tool="shell", **{field: output})
        elif kind == "fileChange":
            self._on_file_change(item, item_id, done)
        elif kind == "mcpToolCall":
            tool = f"{item.get('server')}/{item.get('tool')}"
            if not done:
                port.emit(ToolCalled, call_id=item_id, tool=tool, input=item.get("arguments") or {})
            elif item.get("error"):
                port.emit(ToolFailed, call_id=item_id, tool=tool, error=item.get("error"))
            else:
                port.emit(ToolCompleted, call_id=item_id, tool=tool, output=item.get("result"))
        elif done and kind == "agentMessage":
            port.emit(TranscriptChunk, role="assistant", text=str(item.get("text", "")))
        elif done and kind == "userMessage":
            texts = [c.get("text", "") for c in item.get("content") or [] if isinstance(c, dict)]
            port.emit(TranscriptChunk, role="user", text="".join(texts))
        elif done and kind == "reasoning":
            parts = [*(item.get("summary") or []), *(item.get("content") or [])]
            text = "\n".join(p if isinstance(p, str) else str(p.get("text", "")) for p in parts)
            if text:
                port.emit(TranscriptChunk, role="thinking", text=text)

    def _on_file_change(self, item: dict[str, Any], item_id: str, done: bool) -> None:
        port = self._require_port()
        changes = item.get("changes") or []
        paths = [str(c.get("path")) for c in changes]
        if not done:
            port.emit(ToolCalled, call_id=item_id, tool="apply_patch", input={"paths": paths})
            return
        if item.get("status") in ("failed", "declined"):
            port.emit(ToolFailed, call_id=item_id, tool="apply_patch", error=item.get("status"))
            return
        for change in changes:
            kind = (change.get("kind") or {}).get("type", "update")
            port.emit(
                FileChanged,
                path=str(change.get("path")),
                change=_CHANGE_KIND.get(kind, "modified"),
                call_id=item_id,
            )
        port.emit(ToolCompleted, call_id=item_id, tool="apply_patch", output={"paths": paths})

    async def _on_request(self, method: str, params: dict[str, Any]) -> Any:
        port = self._require_port()
        if method in ("item/commandExecution/requestApproval", "execCommandApproval"):
            command = params.get("command")
            decision = await port.request_approval(
                "shell",
                {"command": command, "cwd": params.get("cwd")},
                reason=params.get("reason"),
                call_id=params.get("itemId") or params.get("callId"),
            )
            return {"decision": _decision(method, decision)}
        if method in ("item/fileChange/requestApproval", "applyPatchApproval"):
            decision = await port.request_approval(
                "apply_patch",
                {"changes": params.get("fileChanges")},
                reason=params.get("reason"),
                call_id=params.get("itemId") or params.get("callId"),
            )
            return {"decision": _decision(method, decision)}
        raise JsonRpcError(METHOD_NOT_FOUND, f"agent-relay-runtime does not handle {method}")

    def _require_port(self) -> SessionPort:
        assert self._port is not None, "driver not running"
        return self._port


def _version_of(user_agent: str) -> str:
    """ " 0.169.0" from a user agent such as "name/0.169.0 (Debian…)", else ""."""
    match = re.search(r"/(\d+\.\d+\.\d+)", user_agent)
    return f" {match.group(1)}" if match else ""


def _decision(method: str, decision: str) -> str:
    """The v2 methods say accept/decline; the v1 ones approved/denied."""
    if method.startswith("item/"):
        return "accept" if decision == "allow" else "decline"
    return "approved" if decision == "allow" else "denied"

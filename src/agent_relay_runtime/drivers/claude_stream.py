"""Claude Code headless: one long-lived ``claude -p`` speaking stream-json on stdio.

- Readiness: the ``initialize`` control request is answered.
- Delivery: a ``user`` line; evidence is Claude replaying it (``--replay-user-messages``,
  ``isReplay: true``), or failing that, the first output of the turn it started.
- Busy/idle: a turn runs from that evidence to its ``result`` line (protocol signal).
- Steer: the ``interrupt`` control request, then the message once the turn has ended.
- Events: text and thinking → ``transcript.chunk``; ``tool_use``/``tool_result`` →
  ``tool.*``; Bash → ``command.*``; Write/Edit → ``file.changed``; ``result`` →
  ``turn.completed`` and ``usage.updated``.
- Release: closing stdin makes Claude flush its transcript and exit.
"""

from __future__ import annotations

import contextlib
import itertools
import uuid
from pathlib import Path
from time import monotonic
from typing import Any

import anyio
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
from ..transports.framing import FramingError
from ..transports.process import ProcessHandle
from ..transports.stdio import StdioTransport
from .base import Driver, SessionPort

__all__ = ["ClaudeStreamDriver"]

P = SignalSource.PROTOCOL
_FILE_TOOLS = {
    "Write": "written",
    "Edit": "modified",
    "MultiEdit": "modified",
    "NotebookEdit": "modified",
}


class _Ack:
    """Waits for Claude to acknowledge one user line."""

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.detail = ""

    def resolve(self, detail: str) -> None:
        if not self.event.is_set():
            self.detail = detail
            self.event.set()


class ClaudeStreamDriver(Driver):
    harness = "claude"
    mode = SessionMode.HEADLESS
    capabilities = Capabilities(
        delivery_modes=(DeliveryMode.WAIT, DeliveryMode.STEER, DeliveryMode.IMMEDIATE),
        events=dict.fromkeys(
            (
                "transcript.chunk",
                "tool.called",
                "tool.completed",
                "tool.failed",
                "file.changed",
                "command.started",
                "command.completed",
                "usage.updated",
                "turn.started",
                "turn.completed",
            ),
            Fidelity.EXACT,
        ),
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
        ack_timeout: float = 30.0,
        interrupt_timeout: float = 10.0,
    ) -> None:
        args = list(args or [])
        self.conversation_id: str | None = None
        argv = [
            executable,
            "-p",
            "--output-format",
            "stream-json",
            "--input-format",
            "stream-json",
            "--verbose",
            "--replay-user-messages",
        ]
        if model:
            argv += ["--model", model]
        if yolo:
            argv += ["--dangerously-skip-permissions"]
        else:
            # Permission prompts come to us as can_use_tool requests (instead of the
            # headless default, which denies them), and the session's policy answers.
            argv += ["--permission-prompt-tool", "stdio"]
        if resume:
            self.conversation_id = resume
            argv += ["--resume", resume]
        elif not any(a.split("=")[0] in ("--resume", "--session-id", "-r") for a in args):
            self.conversation_id = str(uuid.uuid4())
            argv += ["--session-id", self.conversation_id]
        self.argv = argv + args
        self.ack_timeout = ack_timeout
        self.interrupt_timeout = interrupt_timeout
        self._transport = StdioTransport(
            self.argv, cwd=cwd, env=env, on_message=self._on_message, on_error=self._on_error
        )
        self._port: SessionPort | None = None
        self._tg: TaskGroup | None = None
        self._ids = itertools.count(1)
        self._requests: dict[str, tuple[anyio.Event, list[dict[str, Any]]]] = {}
        # Lines written and not yet acknowledged, by the uuid they carry (Claude replays a
        # line with the uuid it was sent with).
        self._acks: dict[str, _Ack] = {}
        self._usage = dict.fromkeys(("input", "output", "read", "write"), 0)
        self._tools: dict[str, tuple[str, dict[str, Any]]] = {}
        self._turn = 0
        self._turn_started = 0.0

    @property
    def process(self) -> ProcessHandle | None:
        return self._transport.handle

    def logs(self) -> bytes:
        return self._transport.stderr.bytes()

    def failure_detail(self) -> str | None:
        tail = self._transport.stderr.text().strip()
        return tail[-2000:] or None

    # -- life ------------------------------------------------------------------------------

    async def run(
        self, port: SessionPort, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        self._port = port
        if self.conversation_id:
            port.set_conversation(self.conversation_id)
        async with anyio.create_task_group() as tg:
            self._tg = tg

            def spawned() -> None:
                task_status.started()
                tg.start_soon(self._initialize)

            await self._transport.run(task_status=CallbackStatus(spawned))
            tg.cancel_scope.cancel()

    async def _initialize(self) -> None:
        try:
            response = await self._request({"subtype": "initialize", "hooks": None}, None)
        except TransportClosed:
            return
        port = self._require_port()
        account = (response.get("response") or {}).get("account") or {}
        if _not_logged_in(account):
            await port.fail(
                "claude is not logged in (it reports no API key and no token): set "
                "ANTHROPIC_API_KEY, or run `claude` once and log in"
            )
        elif response.get("subtype") == "success":
            port.set_state(SessionState.READY, "initialize answered", P)
        else:
            port.set_state(SessionState.READY, f"initialize refused: {response.get('error')}", P)

    async def graceful_exit(self) -> None:
        await self._transport.close_stdin()

    # -- delivery ------------------------------------------------------------------------------

    async def inject(self, message: RelayMessage, mode: DeliveryMode) -> Evidence:
        port = self._require_port()
        if mode == DeliveryMode.STEER and port.state == SessionState.BUSY:
            await self._interrupt()
        ack, line_id = _Ack(), str(uuid.uuid4())
        self._acks[line_id] = ack
        line = {
            "type": "user",
            "message": {"role": "user", "content": message.render()},
            "parent_tool_use_id": None,
            "session_id": self.conversation_id or "default",
            "uuid": line_id,
        }
        try:
            await self._transport.send(line)
            with anyio.move_on_after(self.ack_timeout):
                await ack.event.wait()
        except TransportClosed as exc:
            raise DeliveryFailed(
                f"claude's stdin is closed: {exc.message}", retryable=False
            ) from exc
        finally:
            self._acks.pop(line_id, None)
        if not ack.event.is_set():
            raise DeliveryFailed(
                f"claude did not acknowledge the message within {self.ack_timeout:g}s",
                retryable=False,
            )
        return Evidence(kind="protocol_ack", detail=ack.detail)

    async def _interrupt(self) -> None:
        port = self._require_port()
        try:
            with anyio.move_on_after(self.interrupt_timeout):
                await self._request({"subtype": "interrupt"}, self.interrupt_timeout)
                await port.wait_state(lambda s: s != SessionState.BUSY, self.interrupt_timeout)
        except (TimeoutError, TransportClosed):
            pass  # the message then joins the running turn, which Claude allows

    async def _request(self, request: dict[str, Any], timeout: float | None) -> dict[str, Any]:
        request_id = f"req_{next(self._ids)}"
        done = anyio.Event()
        box: list[dict[str, Any]] = []
        self._requests[request_id] = (done, box)
        try:
            await self._transport.send(
                {"type": "control_request", "request_id": request_id, "request": request}
            )
            with anyio.fail_after(timeout):
                await done.wait()
        finally:
            self._requests.pop(request_id, None)
        return box[0]

    # -- protocol in ---------------------------------------------------------------------------

    def _on_error(self, error: FramingError) -> None:
        self._require_port().emit(
            ProtocolError, reason=error.reason, size=error.size, preview=error.preview
        )

    def _on_message(self, msg: dict[str, Any]) -> None:
        port = self._require_port()
        port.activity()
        kind = msg.get("type")
        if kind == "control_response":
            self._on_control_response(msg.get("response") or {})
        elif kind == "control_request":
            assert self._tg is not None
            self._tg.start_soon(self._answer_control, msg)
        elif kind == "system":
            if msg.get("subtype") == "init":
                self.conversation_id = msg.get("session_id") or self.conversation_id
                if self.conversation_id:
                    port.set_conversation(self.conversation_id)
                self._turn_output("system/init", acknowledges=True)
        elif kind == "user":
            self._on_user(msg)
        elif kind == "assistant":
            self._turn_output("assistant output", acknowledges=True)
            self._on_assistant(msg)
        elif kind == "result":
            self._on_result(msg)
        elif kind == "stream_event":
            self._turn_output("stream event", acknowledges=False)

    def _on_control_response(self, response: dict[str, Any]) -> None:
        pending = self._requests.get(str(response.get("request_id")))
        if pending is not None:
            pending[1].append(response)
            pending[0].set()

    async def _answer_control(self, msg: dict[str, Any]) -> None:
        request = msg.get("request") or {}
        subtype = request.get("subtype")
        response: dict[str, Any] = {"request_id": msg.get("request_id")}
        if subtype == "can_use_tool":
            tool_input = request.get("input") or {}
            decision = await self._require_port().request_approval(
                str(request.get("tool_name")),
                tool_input,
                reason=request.get("decision_reason") or request.get("blocked_path"),
                call_id=request.get("tool_use_id"),
            )
            verdict = (
                {"behavior": "allow", "updatedInput": tool_input}
                if decision == "allow"
                else {"behavior": "deny", "message": "denied by the agent-relay-runtime policy"}
            )
            response |= {"subtype": "success", "response": verdict}
        else:
            # Anything else is answered too, so that the CLI never waits on us.
            response |= {"subtype": "error", "error": f"unsupported control request: {subtype}"}
        with contextlib.suppress(TransportClosed):
            await self._transport.send({"type": "control_response", "response": response})

    def _turn_output(self, detail: str, *, acknowledges: bool) -> None:
        """Output that belongs to a turn: the turn has started (and, when ``acknowledges``,
        the oldest unacknowledged line was taken)."""
        port = self._require_port()
        pending = next((a for a in self._acks.values() if not a.event.is_set()), None)
        if acknowledges and pending is not None:
            # The replay comes only with the turn's first reply; its first output already
            # shows that the oldest waiting line was taken.
            pending.resolve(f"claude started the turn ({detail})")
        if port.state != SessionState.BUSY:
            self._turn += 1
            self._turn_started = monotonic()
            port.set_state(SessionState.BUSY, detail, P)
            port.emit(TurnStarted, turn=self._turn)

    def _on_user(self, msg: dict[str, Any]) -> None:
        port = self._require_port()
        content = (msg.get("message") or {}).get("content")
        if msg.get("isReplay"):
            ack = self._acks.get(str(msg.get("uuid")))
            if ack is not None:
                ack.resolve("claude replayed the user message")
            self._turn_output("user message taken", acknowledges=False)
            text = content if isinstance(content, str) else _texts(content)
            port.emit(TranscriptChunk, role="user", text=text)
            return
        for block in content if isinstance(content, list) else []:
            if isinstance(block, dict) and block.get("type") == "tool_result":
                self._on_tool_result(block, msg.get("tool_use_result"))

    def _on_assistant(self, msg: dict[str, Any]) -> None:
        port = self._require_port()
        for block in (msg.get("message") or {}).get("content") or []:
            kind = block.get("type")
            if kind == "text":
                port.emit(TranscriptChunk, role="assistant", text=block.get("text", ""))
            elif kind == "thinking":
                port.emit(TranscriptChunk, role="thinking", text=block.get("thinking", ""))
            elif kind == "tool_use":
                call_id, name = str(block.get("id")), str(block.get("name"))
                tool_input = block.get("input") or {}
                self._tools[call_id] = (name, tool_input)
                port.emit(ToolCalled, call_id=call_id, tool=name, input=tool_input)
                if name == "Bash":
                    command = str(tool_input.get("command", ""))
                    port.emit(CommandStarted, call_id=call_id, command=command)

    def _on_tool_result(self, block: dict[str, Any], structured: Any) -> None:
        port = self._require_port()
        call_id = str(block.get("tool_use_id"))
        name, tool_input = self._tools.pop(call_id, ("unknown", {}))
        output = block.get("content")
        failed = bool(block.get("is_error"))
        if failed:
            port.emit(ToolFailed, call_id=call_id, tool=name, error=output)
        else:
            port.emit(ToolCompleted, call_id=call_id, tool=name, output=structured or output)
        if name == "Bash":
            port.emit(
                CommandCompleted,
                call_id=call_id,
                command=str(tool_input.get("command", "")),
                output=output if isinstance(output, str) else _texts(output),
                failed=failed,
            )
        elif name in _FILE_TOOLS and not failed:
            path = tool_input.get("file_path") or tool_input.get("notebook_path")
            if path:
                port.emit(FileChanged, path=str(path), change=_FILE_TOOLS[name], call_id=call_id)

    def _on_result(self, msg: dict[str, Any]) -> None:
        port = self._require_port()
        subtype = str(msg.get("subtype", ""))
        interrupted = subtype == "error_during_execution"
        outcome = (
            "completed" if subtype == "success" else "interrupted" if interrupted else "failed"
        )
        duration = msg.get("duration_ms")
        port.emit(
            TurnCompleted,
            turn=self._turn,
            outcome=outcome,
            duration_ms=float(duration) if isinstance(duration, int | float) else None,
            detail=None if subtype == "success" else subtype,
        )
        # A result's usage is the turn's; usage.updated reports the session's totals.
        usage, totals = msg.get("usage") or {}, self._usage
        totals["input"] += int(usage.get("input_tokens") or 0)
        totals["output"] += int(usage.get("output_tokens") or 0)
        totals["read"] += int(usage.get("cache_read_input_tokens") or 0)
        totals["write"] += int(usage.get("cache_creation_input_tokens") or 0)
        port.emit(
            UsageUpdated,
            input_tokens=totals["input"],
            output_tokens=totals["output"],
            cache_read_tokens=totals["read"],
            cache_write_tokens=totals["write"],
            cost_usd=msg.get("total_cost_usd"),
        )
        port.set_state(SessionState.IDLE, f"turn ended ({subtype or 'result'})", P)

    def _require_port(self) -> SessionPort:
        assert self._port is not None, "driver not running"
        return self._port


def _not_logged_in(account: dict[str, Any]) -> bool:
    """Whether ``initialize``'s account shows no credentials for Anthropic's own API (a
    Bedrock or Vertex provider carries its own, and says so in ``apiProvider``)."""
    return (
        bool(account)
        and account.get("tokenSource") in (None, "none")
        and not account.get("apiKeySource")
        and account.get("apiProvider", "firstParty") == "firstParty"
    )


def _texts(content: Any) -> str:
    """The text of a content-block list (or a plain string)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    return "".join(
        str(b.get("text", "")) for b in content if isinstance(b, dict) and b.get("type") == "text"
    )

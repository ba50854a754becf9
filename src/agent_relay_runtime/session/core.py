"""`Session`: the one `AgentSession` implementation, wrapped around any `Driver`.

It owns the state machine, the delivery queue, event fan-out, the watchdog that gives
every waiting state a timeout, and release. Its life is `run`, started in the
supervisor's task group: ``task_status.started()`` comes once the process is spawned,
and `run` returns once the process has ended and everything it started was swept.
"""

from __future__ import annotations

import contextlib
import math
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from time import monotonic
from typing import Any, TypeVar

import anyio
import psutil
from anyio.abc import TaskGroup, TaskStatus
from pydantic import BaseModel

from ..aio import CallbackStatus, collapse_single
from ..contract import (
    AgentIdentity,
    Capabilities,
    DeliveryMode,
    EventHandler,
    Evidence,
    ExitInfo,
    MessageContext,
    MessageReceipt,
    RelayMessage,
    SessionMode,
    SessionState,
    SignalSource,
    new_id,
)
from ..drivers.base import Driver
from ..events import (
    RECEIPT_EVENTS,
    SessionBlocked,
    SessionExited,
    SessionFailed,
    SessionReady,
    SessionStarted,
    StatusChanged,
)
from ..exceptions import SessionClosed, SessionStartFailed
from ..logs import get_logger
from ..observe.screen import ScreenSnapshot
from ..transports.process import (
    EscalationPolicy,
    descendants,
    escalate,
    exit_reason,
    marked_processes,
)
from .approvals import ApprovalPolicy, Approvals, Decision
from .delivery import DeliveryQueue
from .state import StateMachine

__all__ = ["Session", "SessionOptions"]

E = TypeVar("E", bound=BaseModel)
S = SessionState


@dataclass
class SessionOptions:
    """Bounds of a session's waiting states and queues, in seconds and items."""

    ready_timeout: float = 60.0
    stall_timeout: float = 600.0
    escalation: EscalationPolicy = field(default_factory=EscalationPolicy)
    queue_limit: int = 1000
    approval_policy: ApprovalPolicy = ApprovalPolicy.ASK
    approval_timeout: float = 600.0


class Session:
    """A managed agent session (implements `AgentSession` and the driver's `SessionPort`)."""

    def __init__(
        self,
        *,
        name: str,
        driver: Driver,
        session_id: str | None = None,
        options: SessionOptions | None = None,
        own_children: set[int] | None = None,
    ) -> None:
        self.driver = driver
        self.options = options or SessionOptions()
        self._identity = AgentIdentity(
            name=name,
            harness=driver.harness,
            session_id=session_id or new_id("ses"),
            mode=driver.mode,
        )
        self.log = get_logger(session=name, harness=driver.harness)
        self._handlers: list[EventHandler] = []
        self._machine = StateMachine(self._on_transition, driver.capabilities.idle_signal)
        self._queue = DeliveryQueue(
            session=name,
            state=self._machine,
            inject=self._inject,
            on_receipt=self._on_receipt,
            maxlen=self.options.queue_limit,
        )
        self.approvals = Approvals(
            policy=self.options.approval_policy,
            timeout=self.options.approval_timeout,
            emit=self.emit,
            waiting=self._approval_waiting,
        )
        self.cleanups: list[Callable[[], None]] = []
        self._own_children = own_children if own_children is not None else set()
        self._started_at = monotonic()
        self._last_activity = monotonic()
        self._tg: TaskGroup | None = None
        self._release_lock = anyio.Lock()
        self._releasing = False
        self._done = anyio.Event()
        self.exit: ExitInfo | None = None
        self.end_reason: str | None = None

    # -- AgentSession -------------------------------------------------------------------

    @property
    def identity(self) -> AgentIdentity:
        return self._identity

    @property
    def capabilities(self) -> Capabilities:
        return self.driver.capabilities

    @property
    def state(self) -> SessionState:
        return self._machine.state

    @property
    def name(self) -> str:
        return self._identity.name

    @property
    def idle_epoch(self) -> int:
        return self._machine.idle_epoch

    @property
    def done(self) -> bool:
        return self._done.is_set()

    @property
    def pending_messages(self) -> int:
        return self._queue.pending

    async def receive_message(
        self, message: RelayMessage, ctx: MessageContext | None = None
    ) -> MessageReceipt:
        if message.mode not in self.capabilities.delivery_modes:
            modes = ", ".join(self.capabilities.delivery_modes) or "none"
            raise SessionClosed(
                f"session {self.name} does not take {message.mode.value!r} messages "
                f"(it takes: {modes})"
            )
        return self._queue.submit(message, ctx or MessageContext())

    def on_event(self, handler: EventHandler) -> Callable[[], None]:
        self._handlers.append(handler)

        def unsubscribe() -> None:
            if handler in self._handlers:
                self._handlers.remove(handler)

        return unsubscribe

    async def wait_ready(self, timeout: float | None = None) -> None:
        try:
            state = await self._machine.wait_for(
                lambda s: s.is_idle or s.is_final or self._machine.was_ready, timeout
            )
        except TimeoutError:
            raise SessionStartFailed(
                f"session {self.name} not ready after {timeout:g}s (state {self.state})"
            ) from None
        if not (state.is_idle or self._machine.was_ready):
            raise SessionStartFailed(
                f"session {self.name} did not become ready: {self.end_reason or state.value}"
            )

    async def release(self, reason: str | None = None) -> ExitInfo:
        """Escalate until every process of the session is gone; safe to call twice."""
        with anyio.CancelScope(shield=True):
            async with self._release_lock:
                if not self._done.is_set():
                    self._releasing = True
                    why = reason or "release requested"
                    self._machine.set(S.RELEASING, why, SignalSource.RUNTIME)
                    self._queue.close(f"session {self.name} released")
                    info = await self._escalate(graceful=True)
                    info.reason = f"released: {why}"
                    self._end(info, failed=bool(info.survivors), reason=info.reason)
                await self._done.wait()
        assert self.exit is not None
        return self.exit

    def kill_now(self) -> None:
        """SIGKILL every process of the session at once, without waiting (forced shutdown).

        A release in progress then sees the exits and finishes quickly.
        """
        process = self.driver.process
        if process is None:
            return
        doomed = descendants(process.pid) + marked_processes(self._identity.session_id)
        if not process.exited:
            process.signal(signal.SIGKILL)
        for proc in doomed:
            with contextlib.suppress(psutil.Error):
                proc.kill()

    # -- SessionPort ----------------------------------------------------------------------

    def set_state(self, target: SessionState, reason: str, signal: SignalSource) -> bool:
        return self._machine.set(target, reason, signal)

    def emit(self, cls: type[E], **fields: Any) -> E:
        event = cls(session=self.name, harness=self.driver.harness, **fields)
        for handler in list(self._handlers):
            try:
                handler(event)  # type: ignore[arg-type]  # E is always a SessionEvent class
            except Exception:
                self.log.exception("event_handler_failed", event_type=getattr(event, "type", "?"))
        return event

    def activity(self) -> None:
        self._last_activity = monotonic()

    def set_conversation(self, conversation_id: str) -> None:
        self._identity.conversation_id = conversation_id

    async def request_approval(
        self,
        tool: str,
        tool_input: dict[str, Any],
        *,
        reason: str | None = None,
        call_id: str | None = None,
    ) -> Decision:
        return await self.approvals.request(tool, tool_input, reason=reason, call_id=call_id)

    def _approval_waiting(self, reason: str | None) -> None:
        if reason is not None:
            self._machine.set(S.BLOCKED, reason, SignalSource.RUNTIME)
        elif self._machine.state == S.BLOCKED:
            self._machine.set(S.BUSY, "approval answered", SignalSource.RUNTIME)

    async def wait_state(
        self, predicate: Callable[[SessionState], bool], timeout: float | None
    ) -> SessionState:
        return await self._machine.wait_for(predicate, timeout)

    # -- views -------------------------------------------------------------------------------

    def screen(self) -> ScreenSnapshot | None:
        return self.driver.screen()

    def logs(self) -> bytes:
        return self.driver.logs()

    async def send_keys(self, keys: bytes) -> None:
        """Type raw keys into the session's terminal (not a message: no receipt, no
        sanitizing; for a person answering what the runtime cannot)."""
        if not self.state.is_open:
            raise SessionClosed(f"session {self.name} is {self.state.value}")
        self.log.info("keys_sent", size=len(keys))
        await self.driver.send_keys(keys)

    def info(self) -> dict[str, Any]:
        """A JSON-ready summary for `ps` and the control API."""
        return {
            **self._identity.model_dump(mode="json"),
            "state": self.state.value,
            "pending": self._queue.pending,
            "command": self.driver.argv,
            "capabilities": self.capabilities.model_dump(mode="json"),
            "uptime_s": round(monotonic() - self._started_at, 3),
            "exit": self.exit.model_dump(mode="json") if self.exit else None,
            "reason": self.end_reason,
        }

    # -- life ---------------------------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Spawn and supervise; signals started once spawned; returns when all is over."""
        with collapse_single():
            async with anyio.create_task_group() as tg:
                self._tg = tg
                await tg.start(self._drive)
                self._identity.pid = self.driver.process.pid if self.driver.process else None
                self.emit(
                    SessionStarted,
                    pid=self._identity.pid,
                    mode=self.driver.mode,
                    command=self.driver.argv,
                )
                self.log.info("session_started", pid=self._identity.pid)
                tg.start_soon(self._queue.run)
                tg.start_soon(self._watchdog)
                task_status.started()

    async def _drive(self, *, task_status: TaskStatus[None]) -> None:
        """Run the driver; once its process ends (or the driver breaks), wind down."""
        started = False

        def mark_started() -> None:
            nonlocal started
            started = True
            task_status.started()

        failure: str | None = None
        try:
            await self.driver.run(self, task_status=CallbackStatus(mark_started))
        except Exception as exc:
            if not started:
                raise
            self.log.exception("driver_failed")
            failure = f"driver error: {exc}"
        with anyio.CancelScope(shield=True):
            await self._wind_down(failure)
        assert self._tg is not None
        self._tg.cancel_scope.cancel()

    async def _wind_down(self, failure: str | None) -> None:
        if self._releasing:
            await self._done.wait()  # release() reports the end
            return
        # The process ended by itself (or the driver broke): sweep what it left behind.
        self._queue.close(f"session {self.name} ended")
        info = await self._escalate(graceful=False)
        code = self.driver.process.returncode if self.driver.process else None
        # An attached process is not ours: its exit code is unknown and its exit normal.
        normal = code == 0 or (code is None and self.driver.mode == SessionMode.ATTACHED)
        if failure is None and normal:
            info.reason = f"process exited ({exit_reason(code)})"
            self._end(info, failed=False, reason=info.reason)
            return
        phase = "before it was ready" if not self._machine.was_ready else "unexpectedly"
        info.reason = failure or f"process exited {phase}: {exit_reason(code)}"
        self._end(info, failed=True, reason=info.reason)

    async def _escalate(self, *, graceful: bool) -> ExitInfo:
        process = self.driver.process
        if process is None:
            # Nothing of ours runs (an attached server): the goodbye is all there is.
            if graceful:
                with anyio.move_on_after(self.options.escalation.graceful_timeout):
                    await self.driver.graceful_exit()
            return ExitInfo(graceful=graceful, reason="detached")
        return await escalate(
            process,
            graceful=self.driver.graceful_exit if graceful else None,
            policy=self.options.escalation,
            marker=self._identity.session_id,
            own_children=self._own_children,
        )

    def _end(self, info: ExitInfo, *, failed: bool, reason: str) -> None:
        if self._done.is_set():
            return
        self.exit = info
        self.end_reason = reason
        if failed:
            detail = self.driver.failure_detail()
            self._machine.set(S.FAILED, reason, SignalSource.PROCESS)
            self.emit(
                SessionFailed,
                reason=reason,
                exit_code=self.driver.process.returncode if self.driver.process else None,
                detail=detail,
            )
            self.log.warning("session_failed", reason=reason)
        else:
            self._machine.set(S.EXITED, reason, SignalSource.PROCESS)
            self.log.info("session_exited", reason=reason)
        self.emit(SessionExited, exit=info)
        for cleanup in self.cleanups:
            try:
                cleanup()
            except Exception:
                self.log.exception("session_cleanup_failed")
        self._done.set()

    async def fail(self, reason: str) -> None:
        """End the session as failed (a start that never became ready, say). Shielded:
        the caller may be a task of the driver, which ends with the process."""
        with anyio.CancelScope(shield=True):
            async with self._release_lock:
                if self._done.is_set():
                    return
                self._releasing = True
                self._machine.set(S.RELEASING, reason, SignalSource.RUNTIME)
                self._queue.close(f"session {self.name} failed: {reason}")
                info = await self._escalate(graceful=False)
                info.reason = reason
                self._end(info, failed=True, reason=reason)

    # -- internals ---------------------------------------------------------------------------

    async def _inject(self, message: RelayMessage, mode: DeliveryMode) -> Evidence:
        return await self.driver.inject(message, mode)

    def _on_receipt(self, receipt: MessageReceipt) -> None:
        self.emit(RECEIPT_EVENTS[receipt.status], receipt=receipt)

    def _on_transition(
        self, previous: SessionState, state: SessionState, reason: str, signal: SignalSource
    ) -> None:
        self.activity()
        self.emit(StatusChanged, previous=previous, state=state, reason=reason, signal=signal)
        self.log.debug("status_changed", previous=previous.value, state=state.value, reason=reason)
        if state == S.READY:
            after = round((monotonic() - self._started_at) * 1000, 3)
            self.emit(SessionReady, after_ms=after)
        elif state == S.BLOCKED:
            snapshot = self.driver.screen()
            self.emit(SessionBlocked, reason=reason, screen=snapshot.text if snapshot else None)
        self._queue.poke()

    def _deadline(self) -> tuple[float, str] | None:
        """When the current state times out, and what happens then."""
        state = self._machine.state
        if not self._machine.was_ready and state in (S.STARTING, S.BLOCKED):
            return self._started_at + self.options.ready_timeout, "ready"
        if state == S.BUSY:
            return max(self._machine.entered_at, self._last_activity) + (
                self.options.stall_timeout
            ), "stall"
        return None

    async def _watchdog(self) -> None:
        while not self._done.is_set():
            deadline = self._deadline()
            delay = math.inf if deadline is None else max(0.0, deadline[0] - monotonic())
            with anyio.move_on_after(delay):
                await self._machine.changed()
                continue
            current = self._deadline()
            if current is None or current[0] > monotonic():
                continue  # activity moved the deadline
            if current[1] == "ready":
                snapshot = self.driver.screen()
                seen = f"; screen: {snapshot.text[-500:]!r}" if snapshot else ""
                reason = f"not ready after {self.options.ready_timeout:g}s{seen}"
                assert self._tg is not None
                self._tg.start_soon(self.fail, reason)
                await self._done.wait()
                return
            self._machine.set(
                S.BLOCKED,
                f"no activity for {self.options.stall_timeout:g}s while busy",
                SignalSource.RUNTIME,
            )

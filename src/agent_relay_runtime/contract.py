"""The session contract: what a harness creates and what the runtime may ask of a session.

These are the public, stable shapes. Receipts and identities are pydantic models whose
JSON field names do not change; `Harness` and `AgentSession` are protocols so that a
third-party harness needs nothing from this package but the models.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, field_validator

if TYPE_CHECKING:
    from .events import SessionEvent

__all__ = [
    "Accepted",
    "AgentIdentity",
    "AgentSession",
    "Capabilities",
    "Deferred",
    "Delivered",
    "DeliveryMode",
    "Evidence",
    "ExitInfo",
    "Failed",
    "Fidelity",
    "Harness",
    "McpServer",
    "MessageContext",
    "MessageReceipt",
    "RelayMessage",
    "SessionMode",
    "SessionSpec",
    "SessionState",
    "SignalSource",
    "new_id",
    "utcnow",
]


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id(prefix: str) -> str:
    """A short random identifier such as ``msg_3f9a0c2b1d4e5f60``."""
    return f"{prefix}_{secrets.token_hex(8)}"


class DeliveryMode(StrEnum):
    """How a message meets a busy session.

    ``wait`` injects at the next idle boundary, ``steer`` interrupts the running turn and
    injects now, ``immediate`` injects now without interrupting (the agent queues it).
    """

    WAIT = "wait"
    STEER = "steer"
    IMMEDIATE = "immediate"


class Fidelity(StrEnum):
    """``exact`` comes from a protocol, hook or transcript file; ``inferred`` from a screen."""

    EXACT = "exact"
    INFERRED = "inferred"


class SignalSource(StrEnum):
    """Where a state change was learned, strongest first (see `strength`)."""

    PROTOCOL = "protocol"
    HOOK = "hook"
    TRANSCRIPT = "transcript"
    SCREEN = "screen"
    PROCESS = "process"
    RUNTIME = "runtime"

    @property
    def strength(self) -> int:
        return _STRENGTH[self]


_STRENGTH = {
    SignalSource.PROTOCOL: 4,
    SignalSource.HOOK: 3,
    SignalSource.TRANSCRIPT: 2,
    SignalSource.SCREEN: 1,
    # Process exit and the runtime's own decisions (release, timeouts) always apply.
    SignalSource.PROCESS: 9,
    SignalSource.RUNTIME: 9,
}


class SessionMode(StrEnum):
    PTY = "pty"
    HEADLESS = "headless"
    ATTACHED = "attached"


class SessionState(StrEnum):
    """Lifecycle: starting → ready → busy ⇄ idle → releasing → exited | failed.

    ``blocked`` means the agent waits for something the runtime cannot answer (an unknown
    dialog, a stall); ``ready`` and ``idle`` are both idle boundaries.
    """

    STARTING = "starting"
    READY = "ready"
    BUSY = "busy"
    IDLE = "idle"
    BLOCKED = "blocked"
    RELEASING = "releasing"
    EXITED = "exited"
    FAILED = "failed"

    @property
    def is_idle(self) -> bool:
        return self in (SessionState.READY, SessionState.IDLE)

    @property
    def is_final(self) -> bool:
        return self in (SessionState.EXITED, SessionState.FAILED)

    @property
    def is_open(self) -> bool:
        """Whether the session can still take messages."""
        return self not in (SessionState.RELEASING, SessionState.EXITED, SessionState.FAILED)


class Capabilities(BaseModel):
    """What a session can do, stated honestly by its driver."""

    model_config = ConfigDict(frozen=True)

    delivery_modes: tuple[DeliveryMode, ...]
    events: dict[str, Fidelity] = Field(default_factory=dict)
    idle_signal: SignalSource
    interactive: bool = False
    resumable: bool = False


class AgentIdentity(BaseModel):
    """Who a session is. ``conversation_id`` is the harness's own id once it is known."""

    name: str
    harness: str
    session_id: str
    mode: SessionMode
    pid: int | None = None
    agent_id: str | None = None
    conversation_id: str | None = None


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(
            f"invalid session name {name!r}: use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


class RelayMessage(BaseModel):
    """A message addressed to a session. ``id`` (or ``idempotency_key``) deduplicates."""

    id: str = Field(default_factory=lambda: new_id("msg"))
    text: str
    sender: str | None = None
    channel: str | None = None
    thread_id: str | None = None
    mode: DeliveryMode = DeliveryMode.WAIT
    idempotency_key: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    metadata: dict[str, Any] = Field(default_factory=dict)

    @property
    def dedup_key(self) -> str:
        return self.idempotency_key or self.id

    def render(self) -> str:
        """The text as the agent sees it: a one-line header when it comes from someone."""
        if not self.sender:
            return self.text
        where = f" in #{self.channel}" if self.channel else ""
        thread = f" (thread {self.thread_id})" if self.thread_id else ""
        return f"Relay message from {self.sender}{where}{thread} [{self.id}]: {self.text}"


class MessageContext(BaseModel):
    """Delivery bookkeeping that travels with a message into a session."""

    delivery_id: str = Field(default_factory=lambda: new_id("dlv"))
    seq: int | None = None
    attempt: int = 1


class Evidence(BaseModel):
    """Why the runtime believes the agent took a message."""

    kind: Literal["protocol_ack", "hook", "screen_busy", "screen_change", "transcript"]
    detail: str = ""


class _Receipt(BaseModel):
    model_config = ConfigDict(frozen=True)

    message_id: str
    delivery_id: str
    session: str
    at: datetime = Field(default_factory=utcnow)

    @property
    def final(self) -> bool:
        return False


class Accepted(_Receipt):
    """Taken into the queue and going in now."""

    status: Literal["accepted"] = "accepted"


class Deferred(_Receipt):
    """Queued until the session's next idle boundary (or until it is ready)."""

    status: Literal["deferred"] = "deferred"
    reason: str
    available_at: datetime | None = None


class Delivered(_Receipt):
    """The agent took it: ``evidence`` says how that was observed."""

    status: Literal["delivered"] = "delivered"
    evidence: Evidence

    @property
    def final(self) -> bool:
        return True


class Failed(_Receipt):
    """Not delivered. ``retryable`` is False when the text may have reached the agent."""

    status: Literal["failed"] = "failed"
    reason: str
    retryable: bool

    @property
    def final(self) -> bool:
        return True


MessageReceipt = Annotated[Accepted | Deferred | Delivered | Failed, Field(discriminator="status")]


class ExitInfo(BaseModel):
    """How a session's process ended and what release had to do to end it."""

    exit_code: int | None = None
    signal: int | None = None
    reason: str = ""
    graceful: bool = False
    signals_sent: list[str] = Field(default_factory=list)
    swept: list[int] = Field(default_factory=list)
    survivors: list[int] = Field(default_factory=list)
    duration_ms: float = 0.0


class McpServer(BaseModel):
    """A stdio MCP server a session is given (``agent-relay`` for the relay's tools). Each
    harness passes it in its own form (a flag, a config override, its own config file),
    never by editing the user's config files. ``env`` holds no secret: it may show in a
    process list (the relay token is read from a 0600 file named in ``args``)."""

    model_config = ConfigDict(extra="forbid")

    command: str
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)


class SessionSpec(BaseModel):
    """Everything needed to create a session (the control API's create body).

    ``resume`` continues a conversation of the harness's own (a Claude session id, a Codex
    thread id, an OpenCode session id). ``endpoint`` (with ``password``) attaches to a
    server that already runs (``opencode serve``) instead of starting one.

    ``isolated`` gives the CLI a config/state dir of its own (seeded so that first-run
    dialogs do not block; removed on release unless ``keep_state``). ``yolo`` passes the
    harness's permission-bypass flag; otherwise tool approvals that arrive through a
    protocol are answered by ``approvals``: ``ask`` (a person, via the control API, within
    ``approval_timeout`` seconds, else denied), ``allow`` or ``deny``.
    """

    model_config = ConfigDict(extra="forbid")

    harness: str
    name: str | None = None
    mode: SessionMode | None = None
    cwd: Path | None = None
    model: str | None = None
    task: str | None = None
    resume: str | None = None
    endpoint: str | None = None
    password: str | None = Field(default=None, repr=False)
    command: str | None = None
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    idle_after: float | None = Field(default=None, gt=0, le=3600)
    ready_timeout: float | None = Field(default=None, gt=0, le=3600)
    isolated: bool = False
    keep_state: bool = False
    yolo: bool = False
    approvals: Literal["ask", "allow", "deny"] = "ask"
    approval_timeout: float = Field(default=600.0, gt=0, le=86400)
    mcp_servers: dict[str, McpServer] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str | None) -> str | None:
        return None if value is None else check_name(value)


EventHandler = Callable[["SessionEvent"], None]


@runtime_checkable
class AgentSession(Protocol):
    """A live agent session as the runtime and the relay see it."""

    @property
    def identity(self) -> AgentIdentity: ...

    @property
    def capabilities(self) -> Capabilities: ...

    @property
    def state(self) -> SessionState: ...

    async def receive_message(
        self, message: RelayMessage, ctx: MessageContext | None = None
    ) -> MessageReceipt:
        """Queue a message; answer ``accepted``, ``deferred`` or ``failed`` at once."""
        ...

    def on_event(self, handler: EventHandler) -> Callable[[], None]:
        """Call ``handler`` (synchronously, must not block) for every event; returns unsubscribe."""
        ...

    async def wait_ready(self, timeout: float | None = None) -> None:
        """Return once the session is ready; raise `SessionStartFailed` if it never will be."""
        ...

    async def release(self, reason: str | None = None) -> ExitInfo:
        """Stop the session and every process it started; idempotent."""
        ...


class Harness(Protocol):
    """Creates sessions of one kind of agent. How it does so is its own business."""

    name: str

    async def create(self, spec: SessionSpec, ctx: HarnessContext) -> AgentSession: ...


class HarnessContext(Protocol):
    """What the runtime lends a harness while it creates a session."""

    data_dir: Path

    async def start_session(self, run: Callable[..., Awaitable[None]], name: str) -> None:
        """Start ``run(task_status=…)`` in the runtime's task group; returns once it signals."""
        ...

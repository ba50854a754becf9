"""Normalized session events: what every harness reports, in one vocabulary.

Each event is a frozen pydantic model with a literal ``type`` (its stable wire name), the
``session`` and ``harness`` it belongs to, a timestamp ``at``, and a ``seq`` that the
runtime's event log assigns. `SessionEvent` is the discriminated union of all of them and
`parse_event` turns JSON back into the right class.

Event names:

=====================  ===========================================================
``session.started``    the process is running (pid, mode, command)
``session.ready``      first idle boundary reached
``session.blocked``    the agent waits for something the runtime cannot answer
``session.exited``     the process ended (exit code, what release had to do)
``session.failed``     the session ended abnormally (crash, never ready, …)
``status.changed``     every state transition, with its reason and signal source
``turn.started``       the agent started working on input
``turn.completed``     a turn ended (completed / interrupted / failed)
``transcript.chunk``   text the agent or user produced
``tool.called``        a tool call with its input
``tool.completed``     its result
``tool.failed``        its error
``tool.approval.*``    a tool asked for approval (requested), and the answer (resolved)
``file.changed``       a file the agent wrote
``command.started``    a shell command the agent runs
``command.completed``  its exit code and output
``usage.updated``      token and cost totals
``delivery.*``         a message receipt: accepted / deferred / delivered / failed
``protocol.error``     a line or frame the runtime could not use (reported, skipped)
=====================  ===========================================================
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from .contract import (
    Accepted,
    Deferred,
    Delivered,
    ExitInfo,
    Failed,
    Fidelity,
    SessionMode,
    SessionState,
    SignalSource,
    utcnow,
)

__all__ = [
    "ApprovalRequested",
    "ApprovalResolved",
    "CommandCompleted",
    "CommandStarted",
    "DeliveryAccepted",
    "DeliveryDeferred",
    "DeliveryDelivered",
    "DeliveryFailed",
    "FileChanged",
    "ProtocolError",
    "SessionBlocked",
    "SessionEvent",
    "SessionExited",
    "SessionFailed",
    "SessionReady",
    "SessionStarted",
    "StatusChanged",
    "ToolCalled",
    "ToolCompleted",
    "ToolFailed",
    "TranscriptChunk",
    "TurnCompleted",
    "TurnStarted",
    "UsageUpdated",
    "parse_event",
]


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True)

    session: str
    harness: str
    at: datetime = Field(default_factory=utcnow)
    seq: int | None = None


class _Observed(_Event):
    """Content events say how they were learned."""

    fidelity: Fidelity = Fidelity.EXACT


class SessionStarted(_Event):
    type: Literal["session.started"] = "session.started"
    pid: int | None
    mode: SessionMode
    command: list[str] = Field(default_factory=list)


class SessionReady(_Event):
    type: Literal["session.ready"] = "session.ready"
    after_ms: float


class SessionBlocked(_Event):
    type: Literal["session.blocked"] = "session.blocked"
    reason: str
    screen: str | None = None


class SessionExited(_Event):
    type: Literal["session.exited"] = "session.exited"
    exit: ExitInfo


class SessionFailed(_Event):
    type: Literal["session.failed"] = "session.failed"
    reason: str
    exit_code: int | None = None
    detail: str | None = None


class StatusChanged(_Event):
    type: Literal["status.changed"] = "status.changed"
    previous: SessionState
    state: SessionState
    reason: str
    signal: SignalSource


class TurnStarted(_Observed):
    type: Literal["turn.started"] = "turn.started"
    turn: int


class TurnCompleted(_Observed):
    type: Literal["turn.completed"] = "turn.completed"
    turn: int
    outcome: Literal["completed", "interrupted", "failed"]
    duration_ms: float | None = None
    detail: str | None = None


class TranscriptChunk(_Observed):
    type: Literal["transcript.chunk"] = "transcript.chunk"
    role: Literal["assistant", "user", "system", "thinking"]
    text: str


class ToolCalled(_Observed):
    type: Literal["tool.called"] = "tool.called"
    call_id: str
    tool: str
    input: dict[str, Any] = Field(default_factory=dict)


class ToolCompleted(_Observed):
    type: Literal["tool.completed"] = "tool.completed"
    call_id: str
    tool: str
    output: Any = None


class ToolFailed(_Observed):
    type: Literal["tool.failed"] = "tool.failed"
    call_id: str
    tool: str
    error: Any = None


class ApprovalRequested(_Observed):
    type: Literal["tool.approval.requested"] = "tool.approval.requested"
    approval_id: str
    tool: str
    input: dict[str, Any] = Field(default_factory=dict)
    reason: str | None = None
    call_id: str | None = None
    policy: str


class ApprovalResolved(_Observed):
    type: Literal["tool.approval.resolved"] = "tool.approval.resolved"
    approval_id: str
    tool: str
    decision: Literal["allow", "deny"]
    by: str


class FileChanged(_Observed):
    type: Literal["file.changed"] = "file.changed"
    path: str
    change: Literal["created", "modified", "deleted", "written"] = "written"
    call_id: str | None = None


class CommandStarted(_Observed):
    type: Literal["command.started"] = "command.started"
    call_id: str
    command: str


class CommandCompleted(_Observed):
    type: Literal["command.completed"] = "command.completed"
    call_id: str
    command: str
    exit_code: int | None = None
    output: str | None = None
    failed: bool = False


class UsageUpdated(_Observed):
    type: Literal["usage.updated"] = "usage.updated"
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float | None = None


class DeliveryAccepted(_Event):
    type: Literal["delivery.accepted"] = "delivery.accepted"
    receipt: Accepted


class DeliveryDeferred(_Event):
    type: Literal["delivery.deferred"] = "delivery.deferred"
    receipt: Deferred


class DeliveryDelivered(_Event):
    type: Literal["delivery.delivered"] = "delivery.delivered"
    receipt: Delivered


class DeliveryFailed(_Event):
    type: Literal["delivery.failed"] = "delivery.failed"
    receipt: Failed


class ProtocolError(_Event):
    type: Literal["protocol.error"] = "protocol.error"
    reason: str
    size: int | None = None
    preview: str | None = None


SessionEvent = Annotated[
    SessionStarted
    | SessionReady
    | SessionBlocked
    | SessionExited
    | SessionFailed
    | StatusChanged
    | TurnStarted
    | TurnCompleted
    | TranscriptChunk
    | ToolCalled
    | ToolCompleted
    | ToolFailed
    | ApprovalRequested
    | ApprovalResolved
    | FileChanged
    | CommandStarted
    | CommandCompleted
    | UsageUpdated
    | DeliveryAccepted
    | DeliveryDeferred
    | DeliveryDelivered
    | DeliveryFailed
    | ProtocolError,
    Field(discriminator="type"),
]

_ADAPTER: TypeAdapter[SessionEvent] = TypeAdapter(SessionEvent)

ReceiptEvent = DeliveryAccepted | DeliveryDeferred | DeliveryDelivered | DeliveryFailed

RECEIPT_EVENTS: dict[str, type[_Event]] = {
    "accepted": DeliveryAccepted,
    "deferred": DeliveryDeferred,
    "delivered": DeliveryDelivered,
    "failed": DeliveryFailed,
}


def parse_event(data: str | bytes | dict[str, Any]) -> SessionEvent:
    """Rebuild an event from its JSON text or dict."""
    if isinstance(data, dict):
        return _ADAPTER.validate_python(data)
    return _ADAPTER.validate_json(data)

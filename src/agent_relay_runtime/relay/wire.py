"""The node control protocol (``/v1/node/ws``), relaycast-compatible, as typed frames.

Every frame is a JSON object with ``"v": 1`` (a frame without ``v`` is taken as version 1,
as relaycast-sdk sends some) and a ``type``. A request may carry an
``id``, answered by a `Reply` (``ok: true``, ``data``) or an `Error` (``ok: false``,
``code``, ``message``) with the same ``id``.

node → relay: `NodeRegister`, `NodeHeartbeat`, `NodeDeregister`, `AgentRegister`,
`AgentDeregister`, `DeliveryAck` (cumulative ``up_to_seq``), `ActionResult`,
`InventorySync`. relay → node: `Deliver`, `ActionInvoke`, `Ping`; both ways: `Reply`,
`Error`. Extensions this runtime's nodes send (a relaycast relay without them answers
``unknown_type`` and the node carries on): `DeliveryReceipt`, `AgentEvents`,
`NodeCapabilities`. relaycast-sdk also sends `NodeSpawn` and receives `ContextUpdate`.

Frames keep fields they do not know (a newer peer's additions) and give them back on
encode, and encode only the fields that were present, so a frame read and written again
is the same JSON. `decode` raises `WireError` (with the protocol's error ``code``) for
anything that is not a valid frame.
"""

from __future__ import annotations

import contextlib
import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

__all__ = [
    "ActionInvoke",
    "ActionResult",
    "AgentDeregister",
    "AgentEvents",
    "AgentRegister",
    "Capability",
    "ContextUpdate",
    "Deliver",
    "DeliverPayload",
    "DeliveryAck",
    "DeliveryReceipt",
    "Error",
    "Frame",
    "InventoryAgent",
    "InventorySync",
    "NodeCapabilities",
    "NodeDeregister",
    "NodeHeartbeat",
    "NodeRegister",
    "NodeSpawn",
    "Ping",
    "Pong",
    "Reply",
    "WireError",
    "decode",
    "encode",
]

VERSION: Literal[1] = 1
MAX_FRAME = 16 << 20


class WireError(ValueError):
    """A frame that cannot be accepted; ``code`` is the protocol error code to answer."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class _Part(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class _Frame(_Part):
    v: Literal[1] = VERSION
    id: str | None = None


class Capability(_Part):
    """Something a node can do for the relay (``spawn:codex``, ``run:test``)."""

    name: str
    kind: str
    metadata: dict[str, Any] | None = None


class InventoryAgent(_Part):
    agent_id: str
    name: str
    invocation_id: str | None = None
    session_ref: str | None = None


class NodeRegister(_Frame):
    type: Literal["node.register"] = "node.register"
    name: str
    node_id: str | None = None
    capabilities: list[Capability] = []
    max_agents: int | None = None
    tags: list[str] | None = None
    version: str | None = None
    resume_cursor: str | int | None = None


class NodeHeartbeat(_Frame):
    type: Literal["node.heartbeat"] = "node.heartbeat"
    name: str | None = None
    node_id: str | None = None
    capabilities: list[Capability] | None = None
    max_agents: int | None = None
    version: str | None = None
    load: float | None = None
    active_agents: int | None = None
    handlers_live: bool | None = None


class NodeDeregister(_Frame):
    type: Literal["node.deregister"] = "node.deregister"


class AgentRegister(_Frame):
    """A session the node hosts; answered with ``{agent_id, token, name, delivery_ack_seq?}``."""

    type: Literal["agent.register"] = "agent.register"
    name: str
    invocation_id: str | None = None
    session_ref: str | None = None
    resumable: bool | None = None


class AgentDeregister(_Frame):
    type: Literal["agent.deregister"] = "agent.deregister"
    agent_id: str | None = None
    name: str | None = None
    # Extension: the agent never ran (its spawn failed); the relay removes it if it can.
    forget: bool = False


class DeliveryAck(_Frame):
    """Every delivery to ``agent`` up to and including ``up_to_seq`` was taken."""

    type: Literal["delivery.ack"] = "delivery.ack"
    agent: str
    up_to_seq: int = Field(ge=0)


class ActionResult(_Frame):
    """The end of an invocation: ``output`` (the handler's return value) or ``error``."""

    type: Literal["action.result"] = "action.result"
    invocation_id: str
    output: Any = None
    error: str | None = None

    @model_validator(mode="after")
    def _one_outcome(self) -> ActionResult:
        if ("output" in self.model_fields_set) == ("error" in self.model_fields_set):
            raise ValueError("an action.result carries either output or error")
        return self


class InventorySync(_Frame):
    type: Literal["inventory.sync"] = "inventory.sync"
    agents: list[InventoryAgent]


class DeliverPayload(_Part):
    type: str
    data: dict[str, Any]


class Deliver(_Frame):
    """A message for one agent of the node; ``seq`` counts per agent."""

    type: Literal["deliver"] = "deliver"
    delivery_id: str
    agent_id: str
    agent: str
    msg_id: str
    seq: int = Field(ge=0)
    mode: Literal["wait", "steer"] = "wait"
    payload: DeliverPayload


class ActionInvoke(_Frame):
    type: Literal["action.invoke"] = "action.invoke"
    invocation_id: str
    action: str
    input: dict[str, Any] = {}
    agent_id: str | None = None
    agent_name: str | None = None


class DeliveryReceipt(_Frame):
    """Extension: where the runtime's delivery of ``seq`` to ``agent`` stands (accepted,
    deferred with ``available_at``, delivered with ``evidence``, failed with
    ``retryable``). An ack still follows a final receipt."""

    type: Literal["delivery.receipt"] = "delivery.receipt"
    agent: str
    seq: int = Field(ge=1)
    status: Literal["accepted", "deferred", "delivered", "failed"]
    reason: str | None = None
    retryable: bool | None = None
    available_at: str | None = None
    evidence: str | None = None


class AgentEvent(_Part):
    type: str


class AgentEvents(_Frame):
    """Extension: session events (status, transcript, tools, files) of the node's agents,
    for the workspace's event log."""

    type: Literal["agent.events"] = "agent.events"
    agent: str
    events: list[AgentEvent] = Field(max_length=1000)


class NodeCapabilities(_Frame):
    """Extension: the node's whole capability set from now on (actions added or
    dropped); answered like ``node.register`` with ``accepted_capabilities``."""

    type: Literal["node.capabilities"] = "node.capabilities"
    capabilities: list[Capability]


class NodeSpawn(_Frame):
    """relaycast-sdk's NodeProvider asks the relay to spawn an agent (not served here)."""

    type: Literal["node.spawn"] = "node.spawn"
    input: Any = None


class ContextUpdate(_Frame):
    type: Literal["context.update"] = "context.update"
    event: str
    data: dict[str, Any] = {}


class Ping(_Frame):
    type: Literal["ping"] = "ping"


class Pong(_Frame):
    type: Literal["pong"] = "pong"


class Reply(_Frame):
    type: Literal["reply"] = "reply"
    ok: Literal[True] = True
    data: Any = None


class Error(_Frame):
    type: Literal["error"] = "error"
    ok: Literal[False] = False
    code: str
    message: str


Frame = Annotated[
    NodeRegister
    | NodeHeartbeat
    | NodeDeregister
    | AgentRegister
    | AgentDeregister
    | DeliveryAck
    | ActionResult
    | InventorySync
    | Deliver
    | ActionInvoke
    | DeliveryReceipt
    | AgentEvents
    | NodeCapabilities
    | NodeSpawn
    | ContextUpdate
    | Ping
    | Pong
    | Reply
    | Error,
    Field(discriminator="type"),
]
_FRAME: TypeAdapter[Frame] = TypeAdapter(Frame)
_TYPES = {
    cls.model_fields["type"].default
    for cls in (
        NodeRegister, NodeHeartbeat, NodeDeregister, AgentRegister, AgentDeregister,
        DeliveryAck, ActionResult, InventorySync, Deliver, ActionInvoke, DeliveryReceipt,
        AgentEvents, NodeCapabilities, NodeSpawn, ContextUpdate, Ping, Pong, Reply, Error,
    )
}  # fmt: skip


def decode(raw: str | bytes | dict[str, Any]) -> Frame:
    """One frame from its JSON text (or already-parsed object)."""
    if isinstance(raw, (str, bytes)):
        if len(raw) > MAX_FRAME:
            raise WireError("frame_too_large", f"frame of {len(raw)} bytes (limit {MAX_FRAME})")
        with contextlib.suppress(ValidationError):
            # Parsed and validated in one pass by pydantic-core (~3 µs for an ack, against
            # ~8.5 through json.loads first): a node sends one or more frames a delivery.
            # A frame it refuses is looked at again below, to name the problem precisely.
            return _FRAME.validate_json(raw)
        try:
            raw = json.loads(raw)
        except ValueError as exc:
            raise WireError("invalid_json", f"frame is not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise WireError("invalid_frame", "frame is not a JSON object")
    # relaycast-sdk 1.0.0 sends some frames (pong, subscribe) without "v": version 1.
    if raw.get("v", VERSION) != VERSION:
        raise WireError("unsupported_version", f"frame version {raw.get('v')!r}, expected 1")
    kind = raw.get("type")
    if kind not in _TYPES:
        raise WireError("unknown_type", f"unknown frame type {kind!r}")
    try:
        return _FRAME.validate_python(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'][1:]) or 'frame'}: {err['msg']}"
            for err in exc.errors()
        )
        raise WireError("invalid_frame", f"{kind}: {problems}") from None


def encode(frame: Frame) -> str:
    """The frame's JSON text: the fields it was given (``v`` and ``type`` always)."""
    data = frame.model_dump(mode="json", exclude_unset=True)
    head: dict[str, Any] = {"v": frame.v, "type": frame.type}
    if isinstance(frame, (Reply, Error)):
        head["ok"] = frame.ok
    data = {**head, **data}
    return json.dumps(data, separators=(",", ":"))

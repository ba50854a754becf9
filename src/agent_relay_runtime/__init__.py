"""agent-relay-runtime: hosts AI coding agents as managed sessions of an Agent Relay workspace.

The public API: the session contract (`Harness`, `AgentSession`, messages, receipts,
capabilities), the event models, and the `Supervisor` that runs sessions.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .contract import (
    Accepted,
    AgentIdentity,
    AgentSession,
    Capabilities,
    Deferred,
    Delivered,
    DeliveryMode,
    Evidence,
    ExitInfo,
    Failed,
    Fidelity,
    Harness,
    MessageContext,
    MessageReceipt,
    RelayMessage,
    SessionMode,
    SessionSpec,
    SessionState,
    SignalSource,
)
from .events import SessionEvent, parse_event
from .exceptions import RuntimeErrorBase
from .supervisor import Supervisor

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
    "MessageContext",
    "MessageReceipt",
    "RelayMessage",
    "RuntimeErrorBase",
    "SessionEvent",
    "SessionMode",
    "SessionSpec",
    "SessionState",
    "SignalSource",
    "Supervisor",
    "__version__",
    "parse_event",
]

"""agent-relay-runtime: hosts AI coding agents as managed sessions of an Agent Relay workspace.

The public API: the session contract (`Harness`, `AgentSession`, messages, receipts,
capabilities), the event models, and the `Supervisor` that runs sessions.
"""

from __future__ import annotations

__version__ = "0.1.0"

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

# Names are imported on first use, so that the CLI starts without loading the runtime.
_LAZY = {
    **dict.fromkeys(
        [
            "Accepted", "AgentIdentity", "AgentSession", "Capabilities", "Deferred",
            "Delivered", "DeliveryMode", "Evidence", "ExitInfo", "Failed", "Fidelity",
            "Harness", "MessageContext", "MessageReceipt", "RelayMessage", "SessionMode",
            "SessionSpec", "SessionState", "SignalSource",
        ],
        "contract",
    ),
    "SessionEvent": "events",
    "parse_event": "events",
    "RuntimeErrorBase": "exceptions",
    "Supervisor": "supervisor",
}  # fmt: skip


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f".{module}", __name__), name)


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

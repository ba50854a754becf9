"""What a driver is: the harness-specific half of a session.

A `Session` (state machine, delivery queue, events, release) is the same for every
agent. The `Driver` knows what to run and how to read it: it spawns through a transport,
reports what it learns through the `SessionPort`, injects messages with evidence, and
says goodbye in its harness's own way when released.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, Literal, Protocol, TypeVar

import anyio
from anyio.abc import TaskStatus
from pydantic import BaseModel

from ..contract import (
    Capabilities,
    DeliveryMode,
    Evidence,
    RelayMessage,
    SessionMode,
    SessionState,
    SignalSource,
)
from ..exceptions import InvalidRequest
from ..observe.screen import ScreenSnapshot
from ..transports.process import ProcessHandle

__all__ = ["Driver", "SessionPort"]

E = TypeVar("E", bound=BaseModel)


class SessionPort(Protocol):
    """The part of a session a driver may use."""

    @property
    def name(self) -> str: ...

    @property
    def state(self) -> SessionState: ...

    @property
    def idle_epoch(self) -> int: ...

    def set_state(self, target: SessionState, reason: str, signal: SignalSource) -> bool:
        """Request a transition; ignored when illegal or when ``signal`` is too weak."""
        ...

    def emit(self, cls: type[E], **fields: Any) -> E:
        """Build an event of type ``cls`` for this session and publish it."""
        ...

    def activity(self) -> None:
        """Note that the agent did something (resets the stall timer)."""
        ...

    def set_conversation(self, conversation_id: str) -> None:
        """Record the harness's own conversation/session id (for resume)."""
        ...

    async def fail(self, reason: str) -> None:
        """End the session as failed with ``reason`` (a start that cannot succeed)."""
        ...

    async def request_approval(
        self,
        tool: str,
        tool_input: dict[str, Any],
        *,
        reason: str | None = None,
        call_id: str | None = None,
    ) -> Literal["allow", "deny"]:
        """Ask the session's policy (or a person) whether a tool may run."""
        ...

    async def wait_state(
        self, predicate: Callable[[SessionState], bool], timeout: float | None
    ) -> SessionState:
        """Wait until ``predicate(state)``; raise TimeoutError after ``timeout``."""
        ...


class Driver(ABC):
    """The harness-specific side of a session. One driver instance drives one session."""

    harness: str
    mode: SessionMode
    capabilities: Capabilities
    argv: list[str]

    @property
    @abstractmethod
    def process(self) -> ProcessHandle | None:
        """The session's leading process, once spawned."""

    @abstractmethod
    async def run(
        self, port: SessionPort, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Spawn, call ``task_status.started()``, report until the process ends, return.

        Raise before ``started()`` if the process cannot be spawned.
        """

    @abstractmethod
    async def inject(self, message: RelayMessage, mode: DeliveryMode) -> Evidence:
        """Give ``message`` to the agent; return the evidence that it took it.

        Raise `DeliveryFailed` (with ``retryable`` False whenever the text may have
        landed) if there is no such evidence within the driver's bound.
        """

    async def graceful_exit(self) -> None:  # noqa: B027 - optional hook, default is none
        """Ask the agent to exit in its own way (release waits, bounded, for the exit)."""

    def screen(self) -> ScreenSnapshot | None:
        """What the terminal shows, for PTY drivers."""
        return None

    async def send_keys(self, keys: bytes) -> None:
        """Type ``keys`` into the terminal as they are (a person answering a dialog)."""
        raise InvalidRequest(f"{self.harness} {self.mode.value} sessions have no terminal")

    def logs(self) -> bytes:
        """Recent raw output (PTY scrollback, or stderr for protocol drivers)."""
        return b""

    def failure_detail(self) -> str | None:
        """What to quote when the session fails: stderr tail or the screen."""
        return None

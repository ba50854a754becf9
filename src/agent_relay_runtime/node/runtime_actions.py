"""The actions a runtime registers on its workspace so that agents (through MCP) and apps
(through the SDK) can spawn and stop agents on it: ``agent.create``, ``agent.release``,
``agent.status``, ``agent.list``, ``agent.attach``.

Their inputs are pydantic models, so the relay checks every call against their JSON
Schema before a handler runs, and an MCP client sees the same schema as a tool. A
handler's error (``name in use``, ``harness 'x' not installed on this node``, ``cwd not
found``) becomes the invocation's ``action.failed`` reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..contract import SessionMode, SessionSpec, check_name
from ..exceptions import ConfigError
from .fleet import Fleet

if TYPE_CHECKING:
    from ..sdk import ActionCall, ActionHandle, AgentRelay

__all__ = [
    "AgentName",
    "AttachAgent",
    "CreateAgent",
    "ListAgents",
    "ReleaseAgent",
    "register_runtime_actions",
]

# Readiness of a real CLI can take a minute; the relay fails the call after this.
CREATE_TIMEOUT = 300.0


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")

    node: str | None = Field(
        default=None, description="The node (runtime) that must do it; any when omitted."
    )


class _Named(_Input):
    name: str = Field(description="The agent's name in the workspace.")

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        return check_name(value)


class CreateAgent(_Named):
    """``agent.create``: spawn an agent, wait until it is ready, register it, join its
    channels and give it ``task`` as its first message."""

    harness: str = Field(description="claude, codex, opencode, openclaw, or a profile name.")
    mode: Literal["headless", "pty"] | None = None
    cwd: str | None = Field(default=None, description="Working directory (on that node).")
    model: str | None = None
    task: str | None = Field(default=None, description="The first message it gets.")
    args: list[str] = Field(default_factory=list, description="Extra CLI arguments.")
    channels: list[str] = Field(default_factory=list, description="Channels it joins.")

    def spec(self) -> SessionSpec:
        mode = SessionMode(self.mode) if self.mode else None
        return SessionSpec(
            harness=self.harness, name=self.name, mode=mode, model=self.model, task=self.task,
            cwd=Path(self.cwd) if self.cwd else None, args=self.args,
        )  # fmt: skip


class ReleaseAgent(_Named):
    """``agent.release``: stop an agent's session (gracefully, then by force)."""

    reason: str | None = None


class AgentName(_Named):
    """``agent.status``: idle / busy / blocked / offline / unknown, and its last activity."""


class ListAgents(_Input):
    """``agent.list``: the agents this node hosts, with their status."""


class AttachAgent(_Named):
    """``agent.attach``: make something that exists an agent of the workspace: a server
    that runs (``endpoint``), a process (``pid``), or a conversation (``session_id``) of
    the harness, resumed."""

    harness: str
    endpoint: str | None = None
    password: str | None = None
    pid: int | None = Field(default=None, gt=0)
    session_id: str | None = None
    cwd: str | None = None
    channels: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_target(self) -> AttachAgent:
        given = [k for k in ("endpoint", "pid", "session_id") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of endpoint, pid, session_id")
        return self

    def spec(self) -> SessionSpec:
        return SessionSpec(
            harness=self.harness, name=self.name, endpoint=self.endpoint,
            password=self.password, resume=self.session_id,
            cwd=Path(self.cwd) if self.cwd else None,
        )  # fmt: skip


def register_runtime_actions(
    relay: AgentRelay, fleet: Fleet, *, available_to: list[dict[str, Any]] | None = None
) -> list[ActionHandle]:
    """Handle the ``agent.*`` actions for ``fleet`` through ``relay``."""

    def here(given: _Input) -> None:
        if given.node is not None and given.node != fleet.node:
            raise ConfigError(f"node {given.node!r}: this runtime is node {fleet.node!r}")

    async def create(call: ActionCall) -> dict[str, Any]:
        given: CreateAgent = call.input
        here(given)
        return await fleet.create(given.spec(), channels=given.channels, invoker=call.agent.name)

    async def attach(call: ActionCall) -> dict[str, Any]:
        given: AttachAgent = call.input
        here(given)
        return await fleet.attach(given.spec(), pid=given.pid, channels=given.channels)

    async def release(call: ActionCall) -> dict[str, Any]:
        given: ReleaseAgent = call.input
        here(given)
        return await fleet.release(given.name, given.reason)

    async def status(call: ActionCall) -> dict[str, Any]:
        here(call.input)
        return await fleet.status(call.input.name)

    async def listing(call: ActionCall) -> dict[str, Any]:
        here(call.input)
        return {"node": fleet.node, "agents": fleet.list()}

    table: list[tuple[str, type[BaseModel], Any, float | None]] = [
        ("agent.create", CreateAgent, create, CREATE_TIMEOUT),
        ("agent.attach", AttachAgent, attach, CREATE_TIMEOUT),
        ("agent.release", ReleaseAgent, release, 60.0),
        ("agent.status", AgentName, status, 30.0),
        ("agent.list", ListAgents, listing, 30.0),
    ]
    handles = []
    for name, model, handler, timeout in table:
        description = (model.__doc__ or "").strip()
        handle = relay.register_action(
            name=name, description=description, input=model, handler=handler,
            available_to=available_to, timeout=timeout,
        )  # fmt: skip
        handles.append(handle)
    return handles

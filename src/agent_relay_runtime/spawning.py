"""Spawning agents from Python, as action handlers do:

    from agent_relay_runtime.harnesses import claude
    agent = await claude.create(relay=relay, model="sonnet")      # spawns AND registers
    await relay.messages.send(to=f"@{agent.handle}", text="…")

In this process by default (the process hosts the session as a runtime node of its own,
no daemon needed), or on a running daemon with ``on="workspace"`` (or ``node="NAME"``):
then the ``agent.create`` action that `serve` registers does it, and its result comes back
the same way. Either way ``create`` returns once the agent is ready and registered.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from .contract import SessionMode, SessionSpec

if TYPE_CHECKING:
    from .sdk import AgentRelay

__all__ = ["Agent", "Create", "create_agent", "creator"]


@dataclass
class Agent:
    """An agent spawned into the workspace: ``handle`` is its name there."""

    name: str
    id: str
    harness: str
    node: str
    session: str | None
    state: str
    task: dict[str, Any] | None = None
    _relay: AgentRelay | None = field(default=None, repr=False)
    _local: bool = field(default=True, repr=False)

    @property
    def handle(self) -> str:
        return self.name

    async def send(self, text: str) -> dict[str, Any]:
        """A DM to the agent from the app, through the relay."""
        assert self._relay is not None
        return await self._relay.messages.send(to=f"@{self.name}", text=text)

    async def release(self, reason: str | None = None) -> dict[str, Any]:
        assert self._relay is not None
        if self._local:
            return await (await self._relay.fleet()).release(self.name, reason)
        result = await self._relay.call("agent.release", {"name": self.name, "reason": reason})
        return dict(result)

    async def status(self) -> dict[str, Any]:
        """idle / busy / blocked / offline / unknown, with its last activity."""
        assert self._relay is not None
        if self._local:
            return await (await self._relay.fleet()).status(self.name)
        return dict(await self._relay.call("agent.status", {"name": self.name}))


async def create_agent(
    relay: AgentRelay,
    harness: str,
    *,
    name: str | None = None,
    model: str | None = None,
    mode: Literal["headless", "pty"] | None = None,
    cwd: str | Path | None = None,
    task: str | None = None,
    args: Sequence[str] = (),
    channels: Sequence[str] = (),
    on: Literal["process", "workspace"] = "process",
    node: str | None = None,
    **spec: Any,
) -> Agent:
    """Spawn a ``harness`` agent in ``relay``'s workspace; ready and registered on return.

    ``on="process"`` hosts it here; ``on="workspace"`` (implied by ``node``) asks a running
    runtime through ``agent.create``. Other keywords are `SessionSpec` fields (``env``,
    ``isolated``, ``yolo``, ``command`` …), for the in-process way only.
    """
    if on == "workspace" or node is not None:
        if spec:
            raise TypeError(f"agent.create takes no {', '.join(sorted(spec))}")
        given = {
            "name": name, "harness": harness, "model": model, "mode": mode,
            "cwd": str(cwd) if cwd else None, "task": task, "args": list(args),
            "channels": list(channels), "node": node,
        }  # fmt: skip
        if name is None:
            raise TypeError("agent.create needs a name")
        result = await relay.call("agent.create", {k: v for k, v in given.items() if v is not None})
        return _agent(result, relay, local=False)
    session = SessionSpec(
        harness=harness, name=name, model=model, mode=SessionMode(mode) if mode else None,
        cwd=Path(cwd) if cwd else None, task=task, args=list(args), **spec,
    )  # fmt: skip
    fleet = await relay.fleet()
    created = await fleet.create(session, channels=channels, invoker=relay.as_name)
    return _agent(created, relay, local=True)


class Create(Protocol):
    async def __call__(self, *, relay: AgentRelay, **options: Any) -> Agent: ...


def creator(harness: str) -> Create:
    """``create(relay=…, **options)`` for one harness (each harness module exports one)."""

    async def create(*, relay: AgentRelay, **options: Any) -> Agent:
        return await create_agent(relay, harness, **options)

    create.__doc__ = f"Spawn a {harness} agent in ``relay``'s workspace: see `create_agent`."
    return create


def _agent(result: dict[str, Any], relay: AgentRelay, *, local: bool) -> Agent:
    return Agent(
        name=result["agent"], id=result["agent_id"], harness=result["harness"],
        node=result["node"], session=result.get("session"), state=result["status"],
        task=result.get("task"), _relay=relay, _local=local,
    )  # fmt: skip

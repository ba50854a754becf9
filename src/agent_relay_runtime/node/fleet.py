"""The agents this node hosts, as the workspace asks for them: create, attach, release,
status, list. The one implementation behind the ``agent.*`` actions a daemon registers and
behind ``claude.create(relay=…)`` in a Python process.

Creating is spawn *and* register, in an order that leaves nothing behind when a step
fails: the agent is registered first (so that its session can be given its own relay
token for the ``agent-relay`` MCP server), then the session starts and becomes ready,
then it joins its channels and gets its task. A failure at any step releases the
session (if it started), deregisters the agent and removes its token file, and is
raised with the reason.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio

from ..contract import McpServer, RelayMessage, SessionSpec, SessionState
from ..events import SessionEvent
from ..exceptions import ConfigError, NameInUse, SessionNotFound
from ..fsutil import write_private
from ..harnesses import TerminalHarness
from ..harnesses.context import resolve_cwd, resolve_executable
from ..harnesses.mcp_wiring import RELAY_MCP
from ..relay.client import RelayClient, RelayError
from ..session.core import Session
from ..supervisor import Supervisor
from .hosting import HostedAgent, RelayHost

__all__ = ["STATUS_OF", "Fleet"]

# What the workspace is told of a session's state.
STATUS_OF = {
    SessionState.STARTING: "busy", SessionState.READY: "idle", SessionState.IDLE: "idle",
    SessionState.BUSY: "busy", SessionState.BLOCKED: "blocked",
    SessionState.RELEASING: "offline", SessionState.EXITED: "offline",
    SessionState.FAILED: "offline",
}  # fmt: skip

REGISTER_TIMEOUT = 30.0


class Fleet:
    """Hosts agents of a workspace on ``supervisor``, joined to it through ``host``."""

    def __init__(
        self, supervisor: Supervisor, host: RelayHost, relay_url: str, key: str, data_dir: Path
    ) -> None:
        self.supervisor, self.host = supervisor, host
        self.relay = RelayClient(relay_url, key)
        self.relay_url = relay_url
        self.agents_dir = data_dir / "agents"
        self._last: dict[str, datetime] = {}
        self._unsubscribe = supervisor.subscribe(self._seen)

    @property
    def node(self) -> str:
        return self.host.link.name

    async def aclose(self) -> None:
        self._unsubscribe()
        await self.relay.aclose()

    # -- create and attach ------------------------------------------------------------------

    async def create(
        self, spec: SessionSpec, *, channels: Sequence[str] = (), invoker: str | None = None
    ) -> dict[str, Any]:
        """Spawn ``spec`` as an agent of the workspace, ready, in ``channels``, with
        ``spec.task`` as its first message (from ``invoker``). What `agent.create` answers."""
        name = spec.name or self.supervisor.auto_name(spec.harness)
        task = spec.task  # given once ready and in its channels, not at start
        spec = spec.model_copy(update={"name": name, "task": None})
        self._check_launchable(spec)
        return await self._host(name, spec, channels, task, invoker)

    async def attach(
        self, spec: SessionSpec, *, pid: int | None = None, channels: Sequence[str] = ()
    ) -> dict[str, Any]:
        """Adopt what runs already (a server at ``spec.endpoint``, a process ``pid``) or
        resume a conversation (``spec.resume``) as an agent of the workspace."""
        name = spec.name or self.supervisor.auto_name(spec.harness)
        spec = spec.model_copy(update={"name": name})
        if pid is None and not spec.endpoint:
            self._check_launchable(spec)
        return await self._host(name, spec, channels, None, None, pid=pid)

    async def _host(
        self,
        name: str,
        spec: SessionSpec,
        channels: Sequence[str],
        task: str | None,
        invoker: str | None,
        *,
        pid: int | None = None,
    ) -> dict[str, Any]:
        await self._check_free(name)
        async with self._registered(name) as (hosted, token_file):
            if pid is None:
                servers = {**spec.mcp_servers, RELAY_MCP: self._mcp_server(name, token_file)}
                spec = spec.model_copy(update={"mcp_servers": servers})
            session: Session | None = None
            try:
                if pid is None:
                    session = await self.supervisor.create(spec)
                else:
                    session = await self.supervisor.attach(name, pid, spec.harness)
                session.cleanups.append(lambda: shutil.rmtree(token_file.parent, True))
                await self._join(hosted.token, channels)
                receipt = None
                if task:
                    message = RelayMessage(text=task, sender=invoker)
                    receipt = (await session.receive_message(message)).model_dump(mode="json")
            except BaseException:
                if session is not None:
                    with anyio.CancelScope(shield=True):
                        await session.release("agent.create failed")
                raise
        if session.done:  # ended while starting: the host let its registration be
            await self.host.deregister(name)
        return {**self._view(session), "agent_id": hosted.agent_id, "task": receipt}

    @contextlib.asynccontextmanager
    async def _registered(self, name: str) -> AsyncIterator[tuple[HostedAgent, Path]]:
        """The agent registered and its token in a 0600 file, both undone on failure.
        Until the block ends the host holds deliveries to it (the task goes in first) and
        leaves its registration to this block."""
        with self.host.starting(name):
            with anyio.fail_after(REGISTER_TIMEOUT):
                await self.host.link.connected.wait()
                hosted = await self.host.register(name)
            folder = self.agents_dir / name
            try:
                folder.mkdir(parents=True, exist_ok=True, mode=0o700)
                token_file = folder / "token"
                write_private(token_file, hosted.token)
                yield hosted, token_file
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await self.host.deregister(name, forget=True)
                shutil.rmtree(folder, ignore_errors=True)
                raise

    def _mcp_server(self, name: str, token_file: Path) -> McpServer:
        """``agent-relay-runtime mcp`` as this agent: its token is read from the file."""
        return McpServer(
            command=sys.executable,
            args=["-m", "agent_relay_runtime", "mcp", "--relay-url", self.relay_url,
                  "--token-file", str(token_file)],
            env={"RELAY_AGENT_NAME": name},
        )  # fmt: skip

    async def _join(self, token: str, channels: Sequence[str]) -> None:
        """Join each channel as the agent; one that does not exist yet is created."""
        if not channels:
            return
        agent = self.relay.as_agent(token)
        try:
            for channel in channels:
                name = channel.removeprefix("#")
                try:
                    await agent.call("POST", f"/v1/channels/{name}/join", {})
                except RelayError as exc:
                    if exc.code != "channel_not_found":
                        raise
                    await agent.call("POST", "/v1/channels", {"name": name})
        finally:
            await agent.aclose()

    # -- checks -----------------------------------------------------------------------------

    def _check_launchable(self, spec: SessionSpec) -> None:
        """Precise errors before anything is registered or spawned."""
        harness = self.supervisor.harnesses.get(spec.harness)  # unknown harness
        resolve_cwd(spec)  # cwd not found
        if spec.endpoint:
            return
        if isinstance(harness, TerminalHarness):
            executable = (
                spec.command
                or self.supervisor.harnesses.profiles.load(spec.harness).resolve_executable()
            )
        else:
            executable = spec.command or harness.executable
        try:
            resolve_executable(executable or spec.harness, {**os.environ, **spec.env})
        except ConfigError as exc:
            raise ConfigError(
                f"harness {spec.harness!r} not installed on this node {self.node!r}: {exc}"
            ) from None

    async def _check_free(self, name: str) -> None:
        if any(s.name == name for s in self.supervisor.sessions()):
            raise NameInUse(f"name in use: agent {name!r} runs on this node")
        try:
            agent = await self.relay.call("GET", f"/v1/agents/{name}")
        except RelayError as exc:
            if exc.status == 404:
                return
            raise
        if agent.get("type") != "agent":
            raise NameInUse(f"name in use: {name!r} is a {agent.get('type')} of the workspace")
        if agent.get("status") == "online" and name not in self.host.agents:
            raise NameInUse(f"name in use: agent {name!r} is online on another node")

    # -- release, status, list --------------------------------------------------------------

    async def release(self, name: str, reason: str | None = None) -> dict[str, Any]:
        exit_info = await self.supervisor.release(name, reason or "released by agent.release")
        return {"agent": name, "released": True, "exit": exit_info.model_dump(mode="json")}

    async def status(self, name: str) -> dict[str, Any]:
        """idle / busy / blocked / offline / unknown, with the last activity."""
        try:
            return self._view(self.supervisor.get(name))
        except SessionNotFound:
            if any(e.get("name") == name for e in self.supervisor.ended()):
                return {
                    "agent": name, "status": "offline", "node": self.node,
                    "last_activity": self._last_activity(name),
                }  # fmt: skip
        try:
            agent = await self.relay.call("GET", f"/v1/agents/{name}")
        except RelayError as exc:
            if exc.status != 404:
                raise
            return {"agent": name, "status": "unknown", "node": None, "last_activity": None}
        # Hosted by another node: the relay knows it is online, not what it is doing.
        online = agent.get("status") == "online"
        return {
            "agent": name, "status": "unknown" if online else "offline", "online": online,
            "node": None, "last_activity": agent.get("last_seen"),
        }  # fmt: skip

    def list(self) -> list[dict[str, Any]]:
        return [self._view(s) for s in self.supervisor.sessions()]

    def _last_activity(self, name: str) -> str | None:
        last = self._last.get(name)
        return last.isoformat() if last else None

    def _view(self, session: Session) -> dict[str, Any]:
        return {
            "agent": session.name, "status": STATUS_OF[session.state],
            "state": session.state.value, "harness": session.identity.harness,
            "session": session.identity.session_id, "node": self.node,
            "mode": session.identity.mode, "pid": session.identity.pid,
            "last_activity": self._last_activity(session.name),
        }  # fmt: skip

    def _seen(self, event: SessionEvent) -> None:
        self._last[event.session] = event.at

"""A workspace on a real embedded relay (in the test process), agents with tokens of
their own, and the MCP server run as `agent-relay-runtime mcp` in a subprocess, driven by
the official `mcp` client. No child process may outlive a test."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import psutil
import pytest
from mcp import ClientSession, StdioServerParameters, types
from mcp.client.stdio import stdio_client

from agent_relay_runtime.relay.client import RelayClient
from agent_relay_runtime.sdk import AgentRelay
from agent_relay_runtime.transports.process import alive

SERVER = [sys.executable, "-m", "agent_relay_runtime", "mcp"]


@pytest.fixture
async def workspace(tmp_path: Path) -> AsyncIterator[AgentRelay]:
    app = await AgentRelay.create_workspace("mcp", data_dir=tmp_path / "relay")
    try:
        yield app
    finally:
        await app.close()


@pytest.fixture(autouse=True)
def no_child_left() -> Iterator[None]:
    """Every process a test starts (the MCP server, a fake agent) has ended with it."""
    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}
    yield
    left = [p for p in me.children(recursive=True) if p.pid not in before and alive(p)]
    for proc in left:  # one failure must not poison the next tests
        with contextlib.suppress(psutil.Error):
            proc.kill()
    assert not left, f"processes left behind: {[p.pid for p in left]}"


async def agent(workspace: AgentRelay, name: str) -> tuple[str, RelayClient]:
    """A new agent of the workspace: its token, and a client acting as it."""
    token = str((await workspace.client.register(name))["token"])
    return token, workspace.client.as_agent(token)


def server_env(workspace: AgentRelay, token: str | None = None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_")}
    env["RELAY_BASE_URL"] = workspace.workspace.relay_url
    if token is not None:
        env["RELAY_AGENT_TOKEN"] = token
    return {**env, **extra}


@dataclass
class Connected:
    """An MCP client session with the server, what it said on initialize, and the
    notifications it sent."""

    session: ClientSession
    info: types.InitializeResult
    notices: list[str] = field(default_factory=list)
    _noticed: anyio.Event = field(default_factory=anyio.Event)

    async def call(self, tool: str, arguments: dict[str, Any] | None = None) -> Any:
        """The tool's answer, decoded; fails the test on a tool error."""
        result = await self.session.call_tool(tool, arguments or {})
        assert not result.isError, f"{tool}: {text_of(result)}"
        return json.loads(text_of(result))

    async def refused(self, tool: str, arguments: dict[str, Any]) -> str:
        """The error text of a call that must fail."""
        result = await self.session.call_tool(tool, arguments)
        assert result.isError, f"{tool} should have failed: {text_of(result)}"
        return text_of(result)

    async def tool_names(self) -> set[str]:
        return {tool.name for tool in (await self.session.list_tools()).tools}

    async def notice(self, method: str, timeout: float = 10) -> None:
        with anyio.fail_after(timeout):
            while method not in self.notices:
                await self._noticed.wait()

    async def _on_message(self, message: Any) -> None:
        if isinstance(message, types.ServerNotification):
            self.notices.append(message.root.method)
            self._noticed.set()
            self._noticed = anyio.Event()


def text_of(result: types.CallToolResult) -> str:
    return "".join(c.text for c in result.content if isinstance(c, types.TextContent))


@contextlib.asynccontextmanager
async def connect(
    workspace: AgentRelay, token: str | None, *args: str, **env: str
) -> AsyncIterator[Connected]:
    """The MCP server of the agent whose token this is, started and initialized."""
    params = StdioServerParameters(
        command=SERVER[0], args=[*SERVER[1:], *args], env=server_env(workspace, token, **env)
    )
    async with stdio_client(params) as (read, write):
        holder: list[Connected] = []

        async def on_message(message: Any) -> None:
            if holder:
                await holder[0]._on_message(message)

        async with ClientSession(read, write, message_handler=on_message) as session:
            connected = Connected(session, await session.initialize())
            holder.append(connected)
            yield connected

"""The fake Claude Code as an MCP client: `--mcp-config` starts `agent-relay-runtime mcp`
for its `mcp:` directive, and the call reaches the relay; the server never outlives it."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream

from agent_relay_runtime.sdk import AgentRelay

from ..conftest import FAKE_CLAUDE, read_trace
from .conftest import SERVER, agent

pytestmark = pytest.mark.anyio


def directive(tool: str, arguments: dict[str, Any]) -> str:
    encoded = base64.urlsafe_b64encode(json.dumps(arguments).encode()).decode().rstrip("=")
    return f"mcp:agent-relay/{tool}/{encoded}"


class FakeClaude:
    """The fake's stdio as stream-json turns; its stderr drained until it closes, which
    is when every process holding it (the fake, the MCP server) has ended."""

    def __init__(self, process: anyio.abc.Process) -> None:
        assert process.stdin and process.stdout and process.stderr
        self.process = process
        self.stdout = BufferedByteReceiveStream(process.stdout)
        self.stderr = b""
        self.stderr_closed = anyio.Event()

    async def drain_stderr(self) -> None:
        assert self.process.stderr is not None
        with contextlib.suppress(anyio.EndOfStream, anyio.ClosedResourceError):
            async for chunk in self.process.stderr:
                self.stderr += chunk
        self.stderr_closed.set()

    async def turn(self, text: str) -> list[dict[str, Any]]:
        """The lines answering a user message, up to its `result`."""
        assert self.process.stdin is not None
        user = {"type": "user", "message": {"role": "user", "content": text}}
        await self.process.stdin.send((json.dumps(user) + "\n").encode())
        lines: list[dict[str, Any]] = []
        with anyio.fail_after(60):
            while not lines or lines[-1]["type"] != "result":
                lines.append(json.loads(await self.stdout.receive_until(b"\n", 1 << 24)))
        return lines


@contextlib.asynccontextmanager
async def fake_claude(config: dict[str, Any], trace: Path) -> AsyncIterator[FakeClaude]:
    command = [
        sys.executable, str(FAKE_CLAUDE), "-p", "--input-format", "stream-json",
        "--output-format", "stream-json", "--verbose", "--strict-mcp-config",
        "--mcp-config", json.dumps(config),
    ]  # fmt: skip
    env = {**os.environ, "FAKE_AGENT_SCRIPT": json.dumps({"trace_file": str(trace)})}
    process = await anyio.open_process(command, env=env, stderr=subprocess.PIPE)
    fake = FakeClaude(process)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(fake.drain_stderr)
            yield fake
            with anyio.fail_after(20):
                await fake.stderr_closed.wait()
    finally:
        if process.returncode is None:
            process.kill()
        await process.aclose()


@contextlib.contextmanager
def watching(pid: int) -> Iterator[Callable[[], Awaitable[None]]]:
    """A wait for the end of process ``pid`` (a pidfd turns readable when it exits, a
    zombie nobody reaps included: PID 1 here reaps no orphans)."""
    fd = os.pidfd_open(pid)

    async def ended() -> None:
        with anyio.fail_after(20):
            await anyio.wait_readable(fd)

    try:
        yield ended
    finally:
        os.close(fd)


def server_config(workspace: AgentRelay, token: str) -> dict[str, Any]:
    env = {"RELAY_BASE_URL": workspace.workspace.relay_url, "RELAY_AGENT_TOKEN": token}
    return {"mcpServers": {"agent-relay": {"command": SERVER[0], "args": SERVER[1:], "env": env}}}


def tool_calls(lines: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(tool_use, tool_result) blocks of a turn, paired."""
    uses = [
        block
        for line in lines
        if line["type"] == "assistant"
        for block in line["message"]["content"]
        if block["type"] == "tool_use"
    ]
    results = {
        block["tool_use_id"]: block
        for line in lines
        if line["type"] == "user"
        for block in line["message"]["content"]
        if block["type"] == "tool_result"
    }
    return [(use, results[use["id"]]) for use in uses]


async def test_fake_claude_sends_a_message_through_the_mcp_server(
    workspace: AgentRelay, tmp_path: Path
) -> None:
    token, _ = await agent(workspace, "alice")
    _, bob = await agent(workspace, "bob")
    trace = tmp_path / "trace.jsonl"
    hello = {"to": "@bob", "text": "hello from claude"}
    config = server_config(workspace, token)
    with contextlib.ExitStack() as stack:
        async with fake_claude(config, trace) as claude:
            first = await claude.turn(f"tell bob {directive('send_message', hello)}")
            [start] = [e for e in read_trace(trace) if e["event"] == "mcp_start"]
            server = stack.enter_context(watching(start["pid"]))
            init = first[0]
            assert init["mcp_servers"] == [{"name": "agent-relay", "status": "pending"}]
            [(use, result)] = tool_calls(first)
            assert (use["name"], use["input"]) == ("mcp__agent-relay__send_message", hello)
            assert result["is_error"] is False
            [block] = result["content"]
            sent = json.loads(block["text"])
            assert first[-1]["subtype"] == "success"

            # The server is kept for the session; raw JSON works as the argument too.
            nope = 'mcp:agent-relay/send_message/{"to":"#nope","text":"x"}'
            second = await claude.turn(
                f"mcp:agent-relay/list_agents/{{}} {nope} mcp:agent-relay/no_such_tool"
            )
            assert second[0]["mcp_servers"] == [{"name": "agent-relay", "status": "connected"}]
            assert "mcp__agent-relay__send_message" in second[0]["tools"]
            agents, refused, unknown = tool_calls(second)
            assert {a["name"] for a in json.loads(agents[1]["content"][0]["text"])} == {
                "alice", "bob",
            }  # fmt: skip
            assert refused[1]["is_error"] is True
            assert (
                refused[1]["content"][0]["text"]
                == "relay: no channel named 'nope' (channel_not_found)"
            )
            assert unknown[1] == {
                "tool_use_id": unknown[0]["id"], "type": "tool_result", "is_error": True,
                "content": "<tool_use_error>Error: No such tool available: "
                           "mcp__agent-relay__no_such_tool</tool_use_error>",
            }  # fmt: skip
            assert claude.process.stdin is not None
            await claude.process.stdin.aclose()  # end of input: the fake exits, stopping the server
            assert await claude.process.wait() == 0
            await server()

    [dm] = await bob.dm_messages(sent["relay"]["conversation_id"])
    assert (dm["id"], dm["agent_name"], dm["text"]) == (sent["message_id"], "alice", hello["text"])
    events = read_trace(trace)
    assert start["server"] == "agent-relay"
    calls = [e for e in events if e["event"] == "mcp_call"]
    assert calls[0]["tool"] == "send_message" and calls[0]["arguments"] == hello
    outcomes = [e["is_error"] for e in events if e["event"] == "mcp_result"]
    assert outcomes == [False, False, True, True]
    assert events[-1] == {**events[-1], "event": "exit", "code": 0}


async def test_the_mcp_server_ends_with_a_fake_killed_at_once(
    workspace: AgentRelay, tmp_path: Path
) -> None:
    token, _ = await agent(workspace, "alice")
    trace = tmp_path / "trace.jsonl"
    async with fake_claude(server_config(workspace, token), trace) as claude:
        [(_, result)] = tool_calls(await claude.turn("mcp:agent-relay/list_channels/{}"))
        assert result["is_error"] is False
        [start] = [e for e in read_trace(trace) if e["event"] == "mcp_start"]
        with watching(start["pid"]) as server:
            claude.process.send_signal(signal.SIGKILL)
            assert await claude.process.wait() == -signal.SIGKILL
            await server()  # its stdin closed with the fake: it ends on its own

"""A real Claude Code session spawned into a workspace talks through the runtime's MCP
server: its scripted model calls ``mcp__agent-relay__send_message``, and the message
arrives in a second session with a ``delivered`` receipt."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agent_relay_runtime.harnesses import claude
from agent_relay_runtime.sdk import AgentRelay
from agent_relay_runtime.testing import EventRecorder

from ..conftest import FAKE_CLAUDE, read_trace, script_env
from .conftest import claude_env, cli_path

pytestmark = [pytest.mark.anyio, pytest.mark.realcli]


async def test_real_claude_sends_a_message_through_the_mcp_server(
    model_server: Any, work: Path, tmp_path: Path
) -> None:
    executable = cli_path("claude")
    tool = {"name": "mcp__agent-relay__send_message",
            "input": {"to": "@bob", "text": "hello bob, from alice"}}  # fmt: skip
    model_server.add_turns({"text": "Telling bob.", "tool": tool}, {"text": "Told him."})
    trace = tmp_path / "bob.jsonl"
    async with await AgentRelay.create_workspace("mcp-real", data_dir=tmp_path / "ws") as relay:
        fleet = await relay.fleet()
        events = EventRecorder()
        fleet.supervisor.subscribe(events)
        await claude.create(
            relay=relay, name="bob", command=str(FAKE_CLAUDE), env=script_env(trace_file=str(trace))
        )
        await claude.create(
            relay=relay, name="alice", command=executable, env=claude_env(model_server.url),
            cwd=work, isolated=True, task="Say hello to bob.",
        )  # fmt: skip

        # Alice's model called the tool; the runtime's MCP server posted as alice.
        called = await events.wait_for(
            "tool.called", session="alice", where=lambda e: "send_message" in e.tool, timeout=120
        )
        done = await events.wait_for(
            "tool.completed", session="alice", where=lambda e: e.call_id == called.call_id,
            timeout=60,
        )  # fmt: skip
        answer = json.loads(done.output[0]["text"])
        assert answer["relay"]["agent_name"] == "alice"
        # The message went into bob's session, with a delivered receipt in the relay.
        got = await events.wait_for("delivery.delivered", session="bob", timeout=60)
        submits = [t for t in read_trace(trace) if t["event"] == "submit"]
        assert any("hello bob, from alice" in str(s["text"]) for s in submits)
        assert "from alice" in str(submits[-1]["text"])
        assert got.receipt.message_id == answer["message_id"]
        final = await relay.client.wait_final(answer["message_id"], 30)
        assert [(r["agent_name"], r["status"]) for r in final] == [("bob", "delivered")]

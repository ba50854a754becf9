"""Spawning agents from Python (``claude.create(relay=…)``) in this process: spawn and
register in one step, the relay's MCP server wired in with the agent's own token,
channels joined, the task given; and a spawn that fails half way leaves nothing."""

from __future__ import annotations

import base64
import json
import stat
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import psutil
import pytest

from agent_relay_runtime.contract import SessionSpec
from agent_relay_runtime.exceptions import RuntimeErrorBase
from agent_relay_runtime.harnesses import claude, codex
from agent_relay_runtime.node.runtime_actions import AttachAgent
from agent_relay_runtime.relay.client import RelayClient, RelayError
from agent_relay_runtime.sdk import AgentRelay
from agent_relay_runtime.spawning import create_agent
from agent_relay_runtime.testing import EventRecorder

from .conftest import (
    FAKE_CLAUDE,
    FAKE_CODEX,
    openclaw_spec,
    opencode_spec,
    read_trace,
    script_env,
    tui_spec,
)
from .test_opencode_server import running_server

__all__ = ["running_server"]  # a fixture this module uses

pytestmark = pytest.mark.anyio


@pytest.fixture
async def relay(tmp_path: Path) -> AsyncIterator[AgentRelay]:
    app = await AgentRelay.create_workspace("spawning", data_dir=tmp_path / "ws")
    try:
        yield app
    finally:
        await app.close()


async def test_claude_create_spawns_registers_joins_and_gives_the_task(
    relay: AgentRelay, tmp_path: Path
) -> None:
    trace = tmp_path / "trace.jsonl"
    fleet = await relay.fleet()
    events = EventRecorder()
    fleet.supervisor.subscribe(events)
    agent = await claude.create(
        relay=relay, name="worker", command=str(FAKE_CLAUDE), channels=["ops"],
        task="look at issue 7", env=script_env(trace_file=str(trace)),
    )  # fmt: skip
    assert (agent.handle, agent.harness) == ("worker", "claude") and agent.id.startswith("agt")
    assert agent.task is not None and agent.task["status"] in ("accepted", "delivered")

    # Registered and online in the workspace, and a member of #ops.
    seen = await relay.client.call("GET", "/v1/agents/worker")
    assert seen["status"] == "online"
    members = await relay.client.call("GET", "/v1/channels/ops/members")
    assert "worker" in {m.get("agent_name") or m.get("name") for m in members}

    # The task went in as the first message, from the app that created it.
    await events.wait_for("turn.completed", session="worker", timeout=15)
    [submit] = [t for t in read_trace(trace) if t["event"] == "submit"]
    assert "look at issue 7" in str(submit["text"])
    assert f"from {relay.as_name}" in str(submit["text"])
    session = fleet.supervisor.get("worker")

    # The relay's MCP server, as this agent: its token in a 0600 file the config names.
    argv = session.driver.argv
    config = json.loads(argv[argv.index("--mcp-config") + 1])
    server = config["mcpServers"]["agent-relay"]
    assert server["args"][:3] == ["-m", "agent_relay_runtime", "mcp"]
    token_file = Path(server["args"][server["args"].index("--token-file") + 1])
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert "--allowedTools=mcp__agent-relay" in argv
    as_agent = RelayClient(relay.workspace.relay_url, token_file.read_text())
    try:
        sent = await as_agent.send("#ops", "hello from the worker's own token")
        assert sent["agent_name"] == "worker"
    finally:
        await as_agent.aclose()

    # Released: offline in the workspace, the token file gone with the session.
    await agent.release("done")
    assert not token_file.exists()
    status = await agent.status()
    assert status["status"] == "offline"


async def test_a_codex_agent_gets_the_mcp_server_as_config_overrides(
    relay: AgentRelay, tmp_path: Path
) -> None:
    agent = await codex.create(relay=relay, name="coder", command=str(FAKE_CODEX), env=script_env())
    argv = (await relay.fleet()).supervisor.get("coder").driver.argv
    overrides = [argv[i + 1] for i, a in enumerate(argv) if a == "-c"]
    assert any(o.startswith("mcp_servers.agent-relay.command=") for o in overrides)
    assert any("--token-file" in o for o in overrides if ".args=" in o)
    await agent.release()


async def test_a_spawn_that_fails_half_way_leaves_no_agent_no_process_no_token(
    relay: AgentRelay, tmp_path: Path
) -> None:
    failing = tmp_path / "crashes-at-start"
    failing.write_text("#!/bin/sh\necho 'no model configured' >&2\nexit 3\n")
    failing.chmod(0o755)
    with pytest.raises(RuntimeErrorBase, match="exit code 3"):
        await claude.create(relay=relay, name="ghost", command=str(failing))
    with pytest.raises(RelayError) as missing:
        await relay.client.call("GET", "/v1/agents/ghost")
    assert missing.value.status == 404
    fleet = await relay.fleet()
    assert not (fleet.agents_dir / "ghost").exists()
    assert fleet.supervisor.sessions() == []


async def test_precise_errors_before_anything_is_spawned(relay: AgentRelay, tmp_path: Path) -> None:
    with pytest.raises(RuntimeErrorBase, match="cwd not found"):
        await claude.create(relay=relay, name="a1", command=str(FAKE_CLAUDE), cwd=tmp_path / "no")
    with pytest.raises(RuntimeErrorBase, match="harness 'claude' not installed on this node"):
        await claude.create(relay=relay, name="a2", command=str(tmp_path / "no-such-claude"))
    with pytest.raises(RuntimeErrorBase, match="unknown harness"):
        await create_agent(relay, "no-such-harness", name="a3")
    first = await claude.create(relay=relay, name="twin", command=str(FAKE_CLAUDE))
    with pytest.raises(RuntimeErrorBase, match="name in use"):
        await claude.create(relay=relay, name="twin", command=str(FAKE_CLAUDE))
    await relay.client.register("alice", kind="human")
    with pytest.raises(RuntimeErrorBase, match="name in use: 'alice' is a human"):
        await claude.create(relay=relay, name="alice", command=str(FAKE_CLAUDE))
    await first.release()
    for name in ("a1", "a2", "a3"):
        with pytest.raises(RelayError):
            await relay.client.call("GET", f"/v1/agents/{name}")


def mcp(tool: str, **args: object) -> str:
    """A fake agent's directive to call one of the relay's MCP tools (JSON as base64url)."""
    encoded = base64.urlsafe_b64encode(json.dumps(args).encode()).decode().rstrip("=")
    return f"mcp:agent-relay/{tool}/{encoded}"


async def test_spawned_agents_talk_and_watch_each_other_through_their_mcp_server(
    relay: AgentRelay, tmp_path: Path
) -> None:
    """A fake agent acting as an MCP client with the config its session was given: it
    asks to be told when bob is idle, then DMs bob; bob gets the DM with a delivered
    receipt, and alice gets the relay's notice that bob is idle."""
    fleet = await relay.fleet()
    events = EventRecorder()
    fleet.supervisor.subscribe(events)
    traces = {name: tmp_path / f"{name}.jsonl" for name in ("alice", "bob")}
    await claude.create(
        relay=relay, name="bob", command=str(FAKE_CLAUDE),
        env=script_env(trace_file=str(traces["bob"])),
    )  # fmt: skip
    task = " ".join([
        mcp("notify_when", agent="bob", on="delivered"),
        mcp("send_message", to="bob", text="can-you-review-pr-3"),
    ])  # fmt: skip
    await claude.create(
        relay=relay, name="alice", command=str(FAKE_CLAUDE), task=task,
        env=script_env(trace_file=str(traces["alice"])),
    )  # fmt: skip
    got = await events.wait_for("delivery.delivered", session="bob", timeout=30)
    [sent] = [t for t in read_trace(traces["bob"]) if t["event"] == "submit"]
    assert "can-you-review-pr-3" in str(sent["text"]) and "from alice" in str(sent["text"])
    final = await relay.client.wait_final(got.receipt.message_id, 30)
    assert [(r["agent_name"], r["status"]) for r in final] == [("bob", "delivered")]
    # The watch fired: the relay's notice went into alice's session as a message.
    with anyio.fail_after(30):
        async for event in relay.client.follow(0, types=["watch.fired"]):
            notice_id = event["data"]["dm_id"]
            break
    await events.wait_for(
        "delivery.delivered", session="alice",
        where=lambda e: e.receipt.message_id == notice_id, timeout=30,
    )  # fmt: skip
    texts = [str(t["text"]) for t in read_trace(traces["alice"]) if t["event"] == "submit"]
    assert any("from relay" in t and "@bob took message" in t for t in texts), texts


async def test_attach_adopts_a_running_process_and_resumes_a_conversation(
    relay: AgentRelay, tmp_path: Path
) -> None:
    fleet = await relay.fleet()
    running = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        adopted = await fleet.attach(
            SessionSpec(harness="process", name="adopted"), pid=running.pid
        )
        assert (adopted["agent"], adopted["mode"], adopted["pid"]) == (
            "adopted", "attached", running.pid,
        )  # fmt: skip
        assert (await relay.client.call("GET", "/v1/agents/adopted"))["status"] == "online"
        await fleet.release("adopted", "test over")
        assert running.wait(10) is not None  # released: the process ends
    finally:
        if running.poll() is None:
            running.kill()
            running.wait()
    # A conversation of the harness, resumed under a new agent name.
    resumed = await fleet.attach(
        SessionSpec(harness="claude", name="again", command=str(FAKE_CLAUDE), resume="conv-42")
    )
    argv = fleet.supervisor.get("again").driver.argv
    assert argv[argv.index("--resume") + 1] == "conv-42" and resumed["status"] == "idle"
    await fleet.release("again")
    with pytest.raises(ValueError, match="exactly one of endpoint, pid, session_id"):
        AttachAgent(name="x", harness="claude")


async def test_an_app_observes_a_spawned_agent_through_listeners(
    relay: AgentRelay, tmp_path: Path
) -> None:
    """Transcript, tool calls, file changes, deliveries and status of one agent, as the
    workspace's event log carries them to an app's listeners."""
    seen: dict[str, list[dict[str, object]]] = {}
    arrived = anyio.Event()
    watched = relay.agent("observed")
    selectors = {
        "tool_called": watched.tool_called(), "file_changed": watched.file_changed(),
        "transcript": watched.transcript(), "delivered": watched.delivered(),
        "idle": watched.idle(), "busy": watched.busy(),
    }  # fmt: skip
    for key, selector in selectors.items():

        def record(event: dict[str, object], key: str = key) -> None:
            seen.setdefault(key, []).append(event)
            if len(seen) == len(selectors):
                arrived.set()

        relay.add_listener(selector, record)
    relay.add_listener(
        relay.agent("someone-else").tool_called(), lambda e: seen.setdefault("x", [])
    )
    work = tmp_path / "work"
    work.mkdir()
    await claude.create(
        relay=relay, name="observed", command=str(FAKE_CLAUDE), cwd=work,
        task="write:notes.txt bash:ls",
    )  # fmt: skip
    await relay.messages.send(to="@observed", text="and one through the relay")
    with anyio.move_on_after(30):
        await arrived.wait()
    assert set(seen) == set(selectors)
    assert {e["data"]["tool"] for e in seen["tool_called"]} >= {"Write", "Bash"}  # type: ignore[index]
    assert [Path(str(e["data"]["path"])).name for e in seen["file_changed"]] == ["notes.txt"]  # type: ignore[index]
    assert all(e["agent"] == "observed" for events in seen.values() for e in events)
    assert "x" not in seen  # filtered by agent


@pytest.mark.parametrize("harness", ["opencode", "openclaw", "fake-tui"])
async def test_every_harness_gets_the_relay_mcp_server_its_own_way(
    relay: AgentRelay, harness: str
) -> None:
    """OpenCode: OPENCODE_CONFIG_CONTENT; OpenClaw: the gateway config the runtime
    writes; any other profile: AGENT_RELAY_MCP_CONFIG. Read from the live process."""
    spec = {"opencode": opencode_spec, "openclaw": openclaw_spec, "fake-tui": tui_spec}[harness]()
    fleet = await relay.fleet()
    created = await fleet.create(spec.model_copy(update={"name": f"{harness}-1"}))
    environ = psutil.Process(created["pid"]).environ()
    if harness == "opencode":
        server = json.loads(environ["OPENCODE_CONFIG_CONTENT"])["mcp"]["agent-relay"]
        command = server["command"]
    elif harness == "openclaw":
        config = json.loads(Path(environ["OPENCLAW_CONFIG_PATH"]).read_text())
        server = config["mcp"]["servers"]["agent-relay"]
        command = [server["command"], *server["args"]]
    else:
        server = json.loads(environ["AGENT_RELAY_MCP_CONFIG"])["mcpServers"]["agent-relay"]
        command = [server["command"], *server["args"]]
    assert command[1:4] == ["-m", "agent_relay_runtime", "mcp"] and "--token-file" in command
    await fleet.release(f"{harness}-1")


async def test_attach_adopts_a_running_server_as_an_agent(
    relay: AgentRelay, running_server: tuple[str, str, subprocess.Popen[str]]
) -> None:
    endpoint, password, server = running_server
    fleet = await relay.fleet()
    spec = SessionSpec(harness="opencode", name="served", endpoint=endpoint, password=password)
    attached = await fleet.attach(spec)
    assert (attached["agent"], attached["status"]) == ("served", "idle")
    assert (await relay.client.call("GET", "/v1/agents/served"))["status"] == "online"
    await fleet.release("served")
    assert server.poll() is None  # released: detached, the server it did not start runs on

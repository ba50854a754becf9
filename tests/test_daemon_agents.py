"""The agent.* actions a daemon registers on its workspace, invoked as another process
would: create (spawn, ready, registered, in its channels, task given), status, list,
release; precise failures that leave nothing behind; the policy of --agent-actions-for."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from agent_relay_runtime.harnesses import claude
from agent_relay_runtime.relay.client import RelayError
from agent_relay_runtime.sdk import ActionFailed, AgentRelay

from .conftest import FAKE_CLAUDE, read_trace
from .test_daemon import Daemon, short_dir, start_daemon

__all__ = ["short_dir"]  # a fixture this module uses

pytestmark = pytest.mark.anyio


@pytest.fixture
def fake_path(short_dir: Path) -> Path:
    """A PATH dir where ``claude`` is the fake Claude Code."""
    bin_dir = short_dir / "bin"
    bin_dir.mkdir()
    (bin_dir / "claude").symlink_to(FAKE_CLAUDE)
    return bin_dir


@pytest.fixture
def daemon(short_dir: Path, fake_path: Path) -> Iterator[Daemon]:
    env = {
        "PATH": f"{fake_path}{os.pathsep}{os.environ['PATH']}",
        "FAKE_AGENT_SCRIPT": json.dumps({"trace_file": str(short_dir / "trace.jsonl")}),
    }
    d = start_daemon(short_dir / "data", "--agent-actions-for", "lead", env=env)
    try:
        yield d
    finally:
        assert d.stop() == 0


@pytest.fixture
async def lead(daemon: Daemon) -> AsyncIterator[AgentRelay]:
    info = json.loads(daemon.ok("workspace", "--json"))
    relay = await AgentRelay.join(
        workspace_key=info["key"], base_url=info["relay_url"], as_name="lead"
    )
    try:
        yield relay
    finally:
        await relay.close()


async def test_create_status_list_release_through_the_workspace(
    lead: AgentRelay, short_dir: Path
) -> None:
    actions = {a["name"] for a in await lead.client.call("GET", "/v1/actions")}
    assert {"agent.create", "agent.release", "agent.status", "agent.list", "agent.attach"} <= (
        actions
    )
    # claude.create(on="workspace") invokes the daemon's agent.create and waits for it.
    worker = await claude.create(
        relay=lead, name="worker", on="workspace", channels=["ops"], task="triage #12"
    )
    assert (worker.handle, worker.harness) == ("worker", "claude")
    assert worker.session and worker.id.startswith("agt") and worker.node
    assert worker.task is not None and worker.task["status"] in ("accepted", "delivered")
    assert (await lead.client.call("GET", "/v1/agents/worker"))["status"] == "online"
    members = await lead.client.call("GET", "/v1/channels/ops/members")
    assert "worker" in {m["agent_name"] for m in members}

    status = await lead.call("agent.status", {"name": "worker"})
    assert status["status"] in ("idle", "busy") and status["last_activity"]
    listed = await lead.call("agent.list", {})
    assert [a["agent"] for a in listed["agents"]] == ["worker"]

    # The task was the first message, from the one who asked.
    submits = [t for t in read_trace(short_dir / "trace.jsonl") if t["event"] == "submit"]
    assert "triage #12" in str(submits[0]["text"]) and "from lead" in str(submits[0]["text"])

    assert (await worker.status())["status"] in ("idle", "busy")
    released = await worker.release("done")
    assert released["released"] is True
    assert (await lead.call("agent.status", {"name": "worker"}))["status"] == "offline"
    assert (await lead.call("agent.status", {"name": "nobody"}))["status"] == "unknown"


async def test_precise_failures_leave_nothing_behind(lead: AgentRelay, daemon: Daemon) -> None:
    first = await lead.call("agent.create", {"name": "twin", "harness": "claude"})
    assert first["agent"] == "twin"
    cases = {
        "name in use": {"name": "twin", "harness": "claude"},
        "harness 'gemini' not installed on this node": {"name": "g1", "harness": "gemini"},
        "cwd not found": {"name": "c1", "harness": "claude", "cwd": "/no/such/dir"},
        "unknown harness": {"name": "u1", "harness": "no-such-cli"},
    }
    for reason, given in cases.items():
        with pytest.raises(ActionFailed, match=reason):
            await lead.call("agent.create", given)
    # Input that fails the schema: refused by the relay, the handler never runs.
    with pytest.raises(RelayError) as refused:
        await lead.call("agent.create", {"name": "x1"})
    assert refused.value.code == "invalid_input"
    for name in ("g1", "c1", "u1", "x1"):
        with pytest.raises(RelayError):
            await lead.client.call("GET", f"/v1/agents/{name}")
    assert [a["agent"] for a in (await lead.call("agent.list", {}))["agents"]] == ["twin"]
    assert daemon.ok("ps").count("twin") == 1


async def test_only_the_named_participants_may_spawn(lead: AgentRelay) -> None:
    mallory = lead.client.as_agent((await lead.client.register("mallory"))["token"])
    try:
        with pytest.raises(RelayError) as denied:
            await mallory.invoke("agent.create", {"name": "evil", "harness": "claude"})
        assert denied.value.status == 403
    finally:
        await mallory.aclose()
    events, _ = await lead.client.events_page(0, types=["action.denied"])
    assert [e["data"]["action"] for e in events] == ["agent.create"]
    assert [a["agent"] for a in (await lead.call("agent.list", {}))["agents"]] == []

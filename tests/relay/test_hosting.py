"""The runtime as a node: sessions become agents, relay messages go into sessions with
receipts the relay stores, session events reach the workspace's log."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest
from relay_sdk import AsyncRelay

from agent_relay_runtime.node.hosting import RelayHost
from agent_relay_runtime.supervisor import Supervisor
from agent_relay_runtime.testing import EventRecorder

from ..conftest import claude_spec
from .conftest import RunningRelay

pytestmark = pytest.mark.anyio


@pytest.fixture
async def host(relay: RunningRelay, supervisor: Supervisor) -> AsyncIterator[RelayHost]:
    node = RelayHost(supervisor, relay.url, relay.key, "test-node")
    async with anyio.create_task_group() as tg:
        await tg.start(node.run)
        yield node
        tg.cancel_scope.cancel()


async def wait_registered(host: RelayHost, name: str) -> None:
    with anyio.fail_after(10):
        while not (name in host.agents and host.agents[name].agent_id):
            await host.registered.waiter().wait()


async def receipts(relay: RunningRelay, message_id: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=relay.url) as http:
        got = await http.get(
            f"/v1/messages/{message_id}/receipts",
            headers={"authorization": f"Bearer {relay.key}"},
        )
    return list(got.json()["data"])


async def wait_acked(relay: RunningRelay, message_id: str) -> dict[str, Any]:
    with anyio.fail_after(15):
        while True:
            waiter = relay.store.committed.waiter()
            found = await receipts(relay, message_id)
            if found and found[0]["acked"]:
                return found[0]
            await waiter.wait()


async def test_a_relay_message_is_delivered_into_the_session_once(
    relay: RunningRelay, supervisor: Supervisor, recorder: EventRecorder, host: RelayHost
) -> None:
    await supervisor.create(claude_spec("worker"))
    await wait_registered(host, "worker")
    client = AsyncRelay(api_key=relay.key, base_url=relay.url)
    alice = client.as_agent((await client.agents.register("alice")).token)
    await alice.channels.create("general")
    sent = await alice.send("general", "@worker hello there")
    receipt = await wait_acked(relay, sent.id)
    assert receipt["status"] == "delivered" and receipt["evidence"].startswith("protocol_ack")
    delivered = recorder.matching("delivery.delivered")
    assert [e.receipt.message_id for e in delivered] == [sent.id]
    users = [e.text for e in recorder.matching("transcript.chunk") if e.role == "user"]
    assert any("hello there" in text and "alice" in text for text in users)
    # The agent is online and its session's events are in the workspace's log.
    assert (await client.agents.get("worker")).status == "online"
    events, _ = await relay.store.events_after(relay.workspace_id, 0, agent="worker")
    kinds = {e.type for e in events}
    assert {"session.started", "status.changed", "turn.started"} <= kinds
    assert "delivery.delivered" in kinds  # the relay's own receipt event, named for the agent


async def test_a_message_waits_for_an_agent_whose_session_is_gone(
    relay: RunningRelay, supervisor: Supervisor, host: RelayHost
) -> None:
    await supervisor.create(claude_spec("worker"))
    await wait_registered(host, "worker")
    await supervisor.release("worker")
    client = AsyncRelay(api_key=relay.key, base_url=relay.url)
    with anyio.fail_after(10):
        while True:
            waiter = relay.store.committed.waiter()
            if (await client.agents.get("worker")).status == "offline":
                break
            await waiter.wait()
    alice = client.as_agent((await client.agents.register("alice")).token)
    await alice.channels.create("general")
    sent = await alice.send("general", "@worker are you there?")
    [pending] = await receipts(relay, sent.id)
    assert (pending["status"], pending["acked"]) == ("pending", False)

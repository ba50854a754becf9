"""/v1/node/ws against a raw node: registration, pushes, receipts, acks, bad frames."""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import pytest
from relay_sdk import AsyncRelay
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from agent_relay_runtime.node.link import node_socket_url
from agent_relay_runtime.relay import node_server

from .conftest import RunningRelay
from .nodes import raw_node

pytestmark = pytest.mark.anyio


async def sender(relay: RunningRelay, name: str = "alice") -> Any:
    client = AsyncRelay(api_key=relay.key, base_url=relay.url)
    registered = await client.agents.register(name)
    me = client.as_agent(registered.token)
    await me.channels.create("general")
    return me


async def test_a_node_registers_hosts_an_agent_and_gets_its_deliveries(relay: RunningRelay) -> None:
    me = await sender(relay)
    caps = [{"name": "spawn:claude", "kind": "spawn"}]
    async with raw_node(relay.url, relay.key, capabilities=caps) as (node, reply):
        assert reply["type"] == "reply" and reply["data"]["name"] == "node-1"
        assert reply["data"]["accepted_capabilities"] == [
            {"name": "spawn:claude", "accepted": True, "kind": "spawn"}
        ]
        agent = await node.request({"type": "agent.register", "name": "worker"})
        data = agent["data"]
        assert data["name"] == "worker" and data["token"].startswith("at_live_")
        assert data["delivery_ack_seq"] == 0
        # The hosted agent's own token works on REST.
        async with httpx.AsyncClient(base_url=relay.url) as http:
            mine = await http.get("/v1/agent", headers={"authorization": f"Bearer {data['token']}"})
            assert mine.json()["data"]["status"] == "online"
        sent = await me.send("general", "@worker please look")
        deliver = await node.next_of("deliver")
        assert (deliver["agent"], deliver["msg_id"], deliver["seq"]) == ("worker", sent.id, 1)
        payload = deliver["payload"]
        assert payload["type"] == "message.created"
        assert payload["data"]["from_name"] == "alice"
        assert payload["data"]["channel_name"] == "general"
        assert payload["data"]["text"] == "@worker please look"

        await node.send({"type": "delivery.receipt", "agent": "worker", "seq": 1,
                         "status": "accepted"})  # fmt: skip
        done = {"type": "delivery.receipt", "agent": "worker", "seq": 1, "status": "delivered",
                "evidence": "protocol_ack: turn started"}  # fmt: skip
        assert (await node.request(done))["type"] == "reply"
        assert (await node.request({"type": "delivery.ack", "agent": "worker", "up_to_seq": 1}))[
            "type"
        ] == "reply"
        async with httpx.AsyncClient(base_url=relay.url) as http:
            got = await http.get(
                f"/v1/messages/{sent.id}/receipts", headers={"authorization": f"Bearer {relay.key}"}
            )
        [receipt] = got.json()["data"]
        assert (receipt["agent_name"], receipt["status"], receipt["acked"]) == (
            "worker", "delivered", True,
        )  # fmt: skip
        assert receipt["evidence"] == "protocol_ack: turn started"


async def test_unacked_deliveries_come_again_on_the_next_connection(relay: RunningRelay) -> None:
    me = await sender(relay)
    async with raw_node(relay.url, relay.key) as (node, _):
        await node.request({"type": "agent.register", "name": "worker"})
        first = await me.send("general", "@worker one")
        second = await me.send("general", "@worker two")
        assert (await node.next_of("deliver"))["msg_id"] == first.id
        assert (await node.next_of("deliver"))["msg_id"] == second.id
        await node.request({"type": "delivery.ack", "agent": "worker", "up_to_seq": 1})
    # Offline: the message waits for the agent.
    third = await me.send("general", "@worker three")
    async with raw_node(relay.url, relay.key) as (node, _):
        again = await node.request({"type": "agent.register", "name": "worker"})
        assert again["data"]["delivery_ack_seq"] == 1
        got = [await node.next_of("deliver") for _ in range(2)]
        assert [(d["seq"], d["msg_id"]) for d in got] == [(2, second.id), (3, third.id)]


async def test_bad_frames_get_error_frames_and_the_node_carries_on(relay: RunningRelay) -> None:
    me = await sender(relay)
    async with raw_node(relay.url, relay.key) as (node, _):
        await node.ws.send("{not json")
        assert (await node.next_of("error"))["code"] == "invalid_json"
        await node.ws.send('{"v": 1, "type": "teleport", "id": "x1"}')
        error = await node.next_of("error")
        assert (error["code"], error["id"]) == ("unknown_type", "x1")
        refused = await node.request({"type": "delivery.ack", "agent": "ghost", "up_to_seq": 1})
        assert (refused["type"], refused["code"]) == ("error", "agent_not_hosted")
        await node.request({"type": "agent.register", "name": "worker"})
        beyond = await node.request({"type": "delivery.ack", "agent": "worker", "up_to_seq": 5})
        assert beyond["code"] == "ack_out_of_range"
        await me.send("general", "@worker hi")
        await node.next_of("deliver")
        await node.request({"type": "delivery.ack", "agent": "worker", "up_to_seq": 1})
        replay = await node.request({"type": "delivery.ack", "agent": "worker", "up_to_seq": 1})
        assert (replay["code"], "replay" in replay["message"]) == ("ack_out_of_range", True)
        # Still serving: another message arrives.
        await me.send("general", "@worker still there")
        assert (await node.next_of("deliver"))["seq"] == 2


async def test_a_wrong_key_is_refused_at_the_handshake(relay: RunningRelay) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(node_socket_url(relay.url, "relay_ws_wrong")):
            pass
    assert refused.value.response.status_code == 403


async def test_the_first_frame_must_register(relay: RunningRelay) -> None:
    async with connect(node_socket_url(relay.url, relay.key)) as ws:
        await ws.send('{"v": 1, "type": "agent.register", "name": "x", "id": "a"}')
        frame = await ws.recv()
        assert '"not_registered"' in str(frame)


async def registered(relay: RunningRelay, name: str) -> bool:
    """Whether the workspace has an agent named ``name``."""
    async with httpx.AsyncClient(base_url=relay.url) as http:
        got = await http.get(f"/v1/agents/{name}", headers={"authorization": f"Bearer {relay.key}"})
    assert got.status_code in (200, 404), got.text
    return got.status_code == 200


async def test_a_node_hosts_no_more_agents_than_its_max_agents(relay: RunningRelay) -> None:
    async with raw_node(relay.url, relay.key, max_agents=2) as (node, _):
        for name in ("a", "b"):
            assert (await node.request({"type": "agent.register", "name": name}))["type"] == "reply"
        full = await node.request({"type": "agent.register", "name": "c"})
        assert (full["type"], full["code"]) == ("error", "node_capacity_exceeded")
        assert "'node-1'" in full["message"] and "max_agents is 2" in full["message"]
        assert not await registered(relay, "c")
        # One it hosts already, registered again, is not a new one.
        again = await node.request({"type": "agent.register", "name": "a"})
        assert (again["type"], again["data"]["name"]) == ("reply", "a")
        # Room again once one leaves: by agent.deregister, or missing from an inventory.
        await node.request({"type": "agent.deregister", "name": "b"})
        assert (await node.request({"type": "agent.register", "name": "c"}))["type"] == "reply"
        assert (await node.request({"type": "agent.register", "name": "d"}))["code"] == (
            "node_capacity_exceeded"
        )
        inventory = [{"agent_id": again["data"]["agent_id"], "name": "a"}]
        await node.request({"type": "inventory.sync", "agents": inventory})
        assert (await node.request({"type": "agent.register", "name": "d"}))["type"] == "reply"
    # Reconnected: the node registers its agents again, and the limit is the same.
    async with raw_node(relay.url, relay.key, max_agents=2) as (node, _):
        for name in ("a", "d"):
            assert (await node.request({"type": "agent.register", "name": name}))["type"] == "reply"
        assert (await node.request({"type": "agent.register", "name": "b"}))["code"] == (
            "node_capacity_exceeded"
        )


async def test_max_agents_0_or_missing_is_no_limit(relay: RunningRelay) -> None:
    for register in ({"max_agents": 0}, {}):
        async with raw_node(relay.url, relay.key, **register) as (node, _):
            for name in ("a", "b", "c"):
                answer = await node.request({"type": "agent.register", "name": name})
                assert answer["type"] == "reply", (register, answer)


async def test_a_node_silent_for_dead_after_is_dropped_and_one_that_talks_is_kept(
    relay: RunningRelay, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(node_server, "DEAD_AFTER", 1.0)
    async with (
        raw_node(relay.url, relay.key, name="talker") as (talker, _),
        raw_node(relay.url, relay.key, name="silent") as (silent, _),
    ):
        started = anyio.current_time()
        closed = anyio.Event()

        async def dropped() -> None:
            await silent.ws.wait_closed()
            closed.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(dropped)
            with anyio.fail_after(10):
                while not closed.is_set():  # a heartbeat every 0.2 s until the other goes
                    assert (await talker.request({"type": "node.heartbeat"}))["type"] == "reply"
                    with anyio.move_on_after(0.2):
                        await closed.wait()
        assert silent.ws.close_code == 4008 and "no frame for 1 s" in silent.ws.close_reason
        assert anyio.current_time() - started >= 0.9
        # The talker, silent for at most 0.2 s, is still served.
        assert (await talker.request({"type": "node.heartbeat"}))["type"] == "reply"

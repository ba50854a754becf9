"""A node's acks are stored in batches (the ones that come during a commit go into the
next), each judged as if alone, and frames keep their order; a deliver frame's text is
what `wire.encode` writes."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import anyio
import httpx
import pytest
from relay_sdk import AsyncRelay

from agent_relay_runtime.aio import Notifier
from agent_relay_runtime.relay import node_server
from agent_relay_runtime.relay.hub import Hub, Outgoing, deliver_text, payload_text
from agent_relay_runtime.relay.store import Agent
from agent_relay_runtime.relay.wire import Deliver, DeliverPayload, encode

from .conftest import RunningRelay
from .nodes import raw_node

pytestmark = pytest.mark.anyio


async def test_acks_that_come_during_a_commit_are_stored_together_in_order(
    relay: RunningRelay, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = relay.store
    read = Notifier()
    count = 0
    receive = node_server.NodeLink._receive

    async def counted(self: node_server.NodeLink) -> str | None:
        nonlocal count
        raw = await receive(self)
        if raw is not None and '"delivery.ack"' in raw:
            count += 1
            read.notify()
        return raw

    monkeypatch.setattr(node_server.NodeLink, "_receive", counted)
    batches: list[list[tuple[str, int]]] = []
    ack_many = store.ack_many

    async def held(acks: Sequence[tuple[str, int]]) -> Any:
        batches.append(list(acks))
        if len(batches) == 1:  # the first commit lasts until every ack has been read
            while count < 22:
                waiter = read.waiter()
                if count < 22:
                    await waiter.wait()
        return await ack_many(acks)

    monkeypatch.setattr(store, "ack_many", held)
    async with AsyncRelay(api_key=relay.key, base_url=relay.url) as client:
        alice = client.as_agent((await client.agents.register("alice")).token)
        await alice.channels.create("general")
        async with raw_node(relay.url, relay.key) as (node, _):
            hosted = await node.request({"type": "agent.register", "name": "worker"})
            await client.as_agent(hosted["data"]["token"]).channels.join("general")
            for n in range(20):
                await alice.send("general", f"m{n}")
            seqs = [(await node.next_of("deliver"))["seq"] for _ in range(20)]
            assert seqs == list(range(1, 21))
            for seq in seqs[:10]:
                await node.send({"type": "delivery.ack", "agent": "worker", "up_to_seq": seq})
            await node.send({"type": "delivery.ack", "agent": "worker", "up_to_seq": 4,
                             "id": "replay"})  # fmt: skip
            for seq in seqs[10:]:
                await node.send({"type": "delivery.ack", "agent": "worker", "up_to_seq": seq})
            await node.send({"type": "delivery.ack", "agent": "worker", "up_to_seq": 20,
                             "id": "last"})  # fmt: skip
            # Answered only once every ack before it is stored.
            reply = await node.request({"type": "node.heartbeat"})
            assert reply["type"] == "reply"
            agent_id = hosted["data"]["agent_id"]
            assert await store.acked_seq(agent_id) == 20
    assert len(batches) == 2  # what came during the first commit went into one more
    assert [seq for _, seq in batches[0] + batches[1]] == [*range(1, 11), 4, *range(11, 21), 20]


async def test_a_refused_ack_in_a_batch_is_answered_alone(relay: RunningRelay) -> None:
    async with AsyncRelay(api_key=relay.key, base_url=relay.url) as client:
        alice = client.as_agent((await client.agents.register("alice")).token)
        await alice.channels.create("general")
        async with raw_node(relay.url, relay.key) as (node, _):
            hosted = await node.request({"type": "agent.register", "name": "worker"})
            await client.as_agent(hosted["data"]["token"]).channels.join("general")
            for n in range(3):
                await alice.send("general", f"m{n}")
            for _ in range(3):
                await node.next_of("deliver")
            frames = [
                {"type": "delivery.ack", "agent": "worker", "up_to_seq": 2, "id": "a"},
                {"type": "delivery.ack", "agent": "worker", "up_to_seq": 1, "id": "b"},
                {"type": "delivery.ack", "agent": "worker", "up_to_seq": 9, "id": "c"},
                {"type": "delivery.ack", "agent": "worker", "up_to_seq": 3, "id": "d"},
            ]
            for frame in frames:
                await node.send(frame)
            answers = {}
            while len(answers) < 4:
                got = await node.expect(lambda f: f.get("id") in {"a", "b", "c", "d"})
                answers[got["id"]] = got
            assert [answers[k]["type"] for k in "abcd"] == ["reply", "error", "error", "reply"]
            assert answers["b"]["code"] == answers["c"]["code"] == "ack_out_of_range"
            assert "replay" in answers["b"]["message"] and "seq 3" in answers["c"]["message"]
            assert await relay.store.acked_seq(hosted["data"]["agent_id"]) == 3
            unknown = await node.request({"type": "delivery.ack", "agent": "nobody",
                                          "up_to_seq": 1})  # fmt: skip
            assert (unknown["type"], unknown["code"]) == ("error", "agent_not_hosted")


def test_a_deliver_frame_is_written_as_wire_encode_writes_it() -> None:
    agent = Agent(id="agt_1", workspace_id="ws_1", name='wörker "7"', kind="agent",
                  created_at="2026-01-01T00:00:00.000Z")  # fmt: skip
    payload = {"id": "msg_1", "text": 'héllo "there"', "attachments": [], "blocks": None}
    frame = Deliver(
        delivery_id="del_1_7", agent_id=agent.id, agent=agent.name, msg_id="msg_1", seq=7,
        mode="steer", payload=DeliverPayload(type="message.created", data=payload),
    )  # fmt: skip
    text = deliver_text(agent, Outgoing(7, "msg_1", "steer", payload_text(payload)))
    assert json.loads(text) == json.loads(encode(frame))


async def test_nothing_waits_on_a_connection_with_no_acks(relay: RunningRelay) -> None:
    # A frame other than an ack, with no ack before it, is answered at once.
    async with raw_node(relay.url, relay.key) as (node, _):
        with anyio.fail_after(5):
            assert (await node.request({"type": "node.heartbeat"}))["type"] == "reply"


async def test_a_node_that_goes_away_mid_frame_handles_nothing_more(relay: RunningRelay) -> None:
    # The node's last frame (its capabilities again) is still being handled when its
    # socket closes: an invocation made after the close finds no handler, and the
    # frame's handler, when it finishes, does not bring the node's action back.
    capability = {"name": "deploy", "kind": "action", "metadata": {"description": "ship it"}}
    headers = {"authorization": f"Bearer {relay.key}"}
    async with httpx.AsyncClient(base_url=relay.url) as http:
        async with raw_node(relay.url, relay.key, capabilities=[capability]) as (node, _):
            await node.send({"type": "node.capabilities", "capabilities": [capability]})
        for _ in range(3):
            invoked = await http.post("/v1/actions/deploy/invoke", json={"input": {}},
                                      headers=headers)  # fmt: skip
            assert invoked.status_code == 202, invoked.text
            data = invoked.json()["data"]
            assert data["status"] == "failed" and "no handler" in data["error"]


async def test_the_hub_takes_nothing_more_for_a_link_that_is_gone(relay: RunningRelay) -> None:
    class FakeLink:
        node_id = "node_1"

    hub = Hub(relay.store)
    link = FakeLink()
    hub.node_connected(link)  # type: ignore[arg-type]
    hub.handle("ws_1", ["deploy"], link)  # type: ignore[arg-type]
    assert hub.handler("ws_1", "deploy") is link
    assert hub.node_gone(link) is True  # type: ignore[arg-type]
    assert hub.handler("ws_1", "deploy") is None
    hub.handle("ws_1", ["deploy"], link)  # a frame's handler finishing late
    assert hub.handler("ws_1", "deploy") is None

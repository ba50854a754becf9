"""The relaycast SDK's ``WsClient`` given an agent token ("direct node" mode), unmodified:
``POST /v1/agent/node-token`` on every connect, then ``/v1/node/ws`` as the agent's own
direct node with ``node.register`` only. The relay hosts the agent on that socket: its
channel messages arrive as ``message.created`` events and the SDK's acks are stored."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import pytest
from relay_sdk import AsyncRelay, WsClient
from relay_sdk.models import CreateAgentResponse
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from .conftest import RunningRelay
from .nodes import RawNode, raw_node

pytestmark = pytest.mark.anyio


class Events:
    """What a `WsClient` emitted, and a way to wait (on the handler, no polling) for
    what is expected."""

    def __init__(self, ws: WsClient, *kinds: str) -> None:
        self.seen: list[dict[str, Any]] = []
        self._changed = anyio.Event()
        for kind in kinds:
            ws.on(kind, self._add)

    def _add(self, event: dict[str, Any]) -> None:
        self.seen.append(event)
        self._changed.set()
        self._changed = anyio.Event()

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.seen if e.get("type") == kind]

    async def until(self, done: Callable[[], bool]) -> None:
        with anyio.fail_after(10):
            while not done():
                await self._changed.wait()


@asynccontextmanager
async def connected(ws: WsClient, events: Events) -> AsyncIterator[None]:
    """``ws.connect()`` running until the block ends, the relay's answer to its
    ``node.register`` received first (the agent is hosted from then on)."""
    replies = len(events.of("reply"))
    task = asyncio.ensure_future(ws.connect())
    try:
        await events.until(lambda: len(events.of("reply")) > replies)
        yield
    finally:
        ws.disconnect()
        with anyio.fail_after(10):
            await task


async def until(relay: RunningRelay, done: Callable[[], Any]) -> None:
    """Wait (on the store's commits) until ``await done()`` is true."""
    with anyio.fail_after(10):
        while True:
            waiter = relay.store.committed.waiter()
            if await done():
                return
            await waiter.wait()


async def team(client: AsyncRelay) -> tuple[CreateAgentResponse, CreateAgentResponse]:
    """alice and bob, both in #general (alice made it)."""
    alice = await client.agents.register("alice")
    bob = await client.agents.register("bob")
    await client.as_agent(alice.token).channels.create("general")
    await client.as_agent(bob.token).channels.join("general")
    return alice, bob


async def node_token(relay: RunningRelay, token: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=relay.url) as http:
        return await http.post(
            "/v1/agent/node-token", json={}, headers={"authorization": f"Bearer {token}"}
        )


def ws_url(relay: RunningRelay) -> str:
    return relay.url.replace("http://", "ws://", 1) + "/v1/node/ws"


async def test_a_ws_client_with_an_agent_token_gets_its_messages_and_acks_them(
    relay: RunningRelay,
) -> None:
    async with AsyncRelay(api_key=relay.key, base_url=relay.url) as client:
        alice, bob = await team(client)
        ws = WsClient(bob.token, base_url=relay.url)
        events = Events(ws, "message.created", "reply")
        async with connected(ws, events):
            [reply] = events.of("reply")
            assert reply["data"]["name"] == "direct-bob"
            assert (await client.agents.get("bob")).status == "online"
            node = await client.nodes.get("direct-bob")
            assert (node.role, node.max_agents, node.live, node.active_agents) == (
                "direct", 1, True, 1,
            )  # fmt: skip
            sent = await client.as_agent(alice.token).send("#general", "hello bob")
            await events.until(lambda: bool(events.of("message.created")))
            [event] = events.of("message.created")
            assert event["channel"] == "general"
            assert (event["message"]["id"], event["message"]["agent_name"]) == (sent.id, "alice")
            assert event["message"]["text"] == "hello bob"
            # The SDK acks each deliver; the relay stores it as any node's ack.
            await until(relay, lambda: _acked(relay, bob.id, 1))
            assert await relay.store.unacked_deliveries(bob.id) == []
        await until(relay, lambda: _status(client, "bob", "offline"))
        assert not (await client.nodes.get("direct-bob")).live


async def _acked(relay: RunningRelay, agent_id: str, seq: int) -> bool:
    return await relay.store.acked_seq(agent_id) == seq


async def _status(client: AsyncRelay, name: str, status: str) -> bool:
    return (await client.agents.get(name)).status == status


async def test_a_message_sent_while_it_was_away_arrives_once_on_reconnecting(
    relay: RunningRelay,
) -> None:
    async with AsyncRelay(api_key=relay.key, base_url=relay.url) as client:
        alice, bob = await team(client)
        a = client.as_agent(alice.token)
        ws = WsClient(bob.token, base_url=relay.url)
        events = Events(ws, "message.created", "reply")
        async with connected(ws, events):
            await a.send("#general", "first")
            await events.until(lambda: len(events.of("message.created")) == 1)
            await until(relay, lambda: _acked(relay, bob.id, 1))
        await until(relay, lambda: _status(client, "bob", "offline"))
        await a.send("#general", "while away")
        # The same client connects again: a new node token, the same direct node.
        async with connected(ws, events):
            await events.until(lambda: len(events.of("message.created")) == 2)
            await until(relay, lambda: _acked(relay, bob.id, 2))
            await a.send("#general", "after")
            await events.until(lambda: len(events.of("message.created")) == 3)
            await until(relay, lambda: _acked(relay, bob.id, 3))
        # A new client for the same agent: nothing is delivered again (all acked).
        other = WsClient(bob.token, base_url=relay.url)
        more = Events(other, "message.created", "reply")
        async with connected(other, more):
            await a.send("#general", "last")
            await more.until(lambda: bool(more.of("message.created")))
        texts = [e["message"]["text"] for e in events.of("message.created")]
        assert texts == ["first", "while away", "after"]
        assert [e["message"]["text"] for e in more.of("message.created")] == ["last"]
        assert [n.name for n in await client.nodes.list()] == ["direct-bob"]


async def test_a_new_token_closes_nothing_until_the_new_connection_replaces_the_old(
    relay: RunningRelay,
) -> None:
    async with AsyncRelay(api_key=relay.key, base_url=relay.url) as client:
        alice, bob = await team(client)
        first = (await node_token(relay, bob.token)).json()["data"]
        headers = {"Authorization": f"Bearer {first['token']}"}
        async with connect(ws_url(relay), additional_headers=headers) as old_ws:
            old = RawNode(old_ws)
            ok = await old.request(
                {"type": "node.register", "name": first["node_name"], "node_id": first["node_id"],
                 "max_agents": 1}
            )  # fmt: skip
            assert ok["type"] == "reply"
            # Asked again while the old socket is live (as the SDK does on reconnecting
            # before the relay saw the drop): a new token, not a 409.
            again = await node_token(relay, bob.token)
            assert again.status_code == 201
            assert again.json()["data"]["node_id"] == first["node_id"]
            assert again.json()["data"]["token"] != first["token"]
            with pytest.raises(InvalidStatus):  # the old token opens nothing new
                async with connect(ws_url(relay), additional_headers=headers):
                    pass
            ws = WsClient(bob.token, base_url=relay.url)
            events = Events(ws, "message.created", "reply")
            async with connected(ws, events):
                with anyio.fail_after(10), pytest.raises(ConnectionClosed) as closed:
                    while True:
                        await old_ws.recv()
                assert closed.value.rcvd is not None and closed.value.rcvd.code == 4009
                await client.as_agent(alice.token).send("#general", "to the new one")
                await events.until(lambda: bool(events.of("message.created")))
                assert (await client.agents.get("bob")).status == "online"


async def test_the_workspace_key_gets_no_node_token(relay: RunningRelay) -> None:
    denied = await node_token(relay, relay.key)
    assert denied.status_code == 403
    assert denied.json()["error"]["code"] == "agent_token_required"
    assert (await relay.store.node_entries(relay.workspace_id)) == []


async def test_a_direct_node_hosts_its_agent_only(relay: RunningRelay) -> None:
    async with AsyncRelay(api_key=relay.key, base_url=relay.url) as client:
        _, bob = await team(client)
        given = (await node_token(relay, bob.token)).json()["data"]
        headers = {"Authorization": f"Bearer {given['token']}"}
        async with connect(ws_url(relay), additional_headers=headers) as ws:
            node = RawNode(ws)
            await node.request(
                {"type": "node.register", "name": given["node_name"], "max_agents": 1}
            )
            refused = await node.request({"type": "agent.register", "name": "carol"})
            assert (refused["type"], refused["code"]) == ("error", "node_capacity_exceeded")
            assert "max_agents is 1" in refused["message"]
            online = [a.name for a in await client.agents.list() if a.status == "online"]
            assert online == ["bob"]  # carol was not registered
            # Nor does another node take bob while his direct node hosts him.
            async with raw_node(relay.url, relay.key, "broker") as (broker, _):
                taken = await broker.request({"type": "agent.register", "name": "bob"})
                assert taken["type"] == "error" and "direct node" in taken["message"]


async def test_an_agent_a_connected_node_hosts_gets_no_direct_node(relay: RunningRelay) -> None:
    async with raw_node(relay.url, relay.key, "broker") as (broker, _):
        hosted = await broker.request({"type": "agent.register", "name": "carol"})
        refused = await node_token(relay, hosted["data"]["token"])
        assert refused.status_code == 409
        assert refused.json()["error"]["code"] == "agent_hosted_by_node"
    assert [n.name for n in await relay.store.node_entries(relay.workspace_id)] == ["broker"]

"""The official relaycast-sdk client (PyPI `relaycast-sdk`, import `relay_sdk`), unmodified,
against the embedded relay."""

from __future__ import annotations

import httpx
import pytest
from relay_sdk import AsyncRelay, RelayError

from .conftest import RunningRelay

pytestmark = pytest.mark.anyio


async def test_agents_register_list_and_get(relay: RunningRelay) -> None:
    async with AsyncRelay(api_key=relay.key, base_url=relay.url) as client:
        alice = await client.agents.register("alice", persona="reviewer")
        assert alice.token.startswith("at_") and alice.name == "alice"
        await client.agents.register("bob", type="human")
        listed = await client.agents.list()
        assert [(a.name, a.type) for a in listed] == [("alice", "agent"), ("bob", "human")]
        got = await client.agents.get("alice")
        assert (got.id, got.persona) == (alice.id, "reviewer")
        with pytest.raises(RelayError) as taken:
            await client.agents.register("alice")
        assert (taken.value.status, taken.value.code) == (409, "agent_already_exists")
        me = client.as_agent(alice.token)
        assert (await me.me()).name == "alice"


async def test_channel_messages_go_in_durably_and_list(relay: RunningRelay) -> None:
    async with AsyncRelay(api_key=relay.key, base_url=relay.url) as client:
        alice = await client.agents.register("alice")
        bob = await client.agents.register("bob")
        a, b = client.as_agent(alice.token), client.as_agent(bob.token)
        channel = await a.channels.create("general", topic="all of us")
        assert (channel.name, channel.topic, channel.is_archived) == ("general", "all of us", False)
        await b.channels.join("general")
        members = await a.channels.members("general")
        assert {(m.agent_name, m.role) for m in members} == {("alice", "owner"), ("bob", "member")}
        first = await a.send("#general", "hello @bob")
        second = await a.send("general", "and again", mode="steer")
        assert (first.agent_name, first.text) == ("alice", "hello @bob")
        assert second.injection_mode == "steer"
        listed = await b.messages("#general", limit=10)
        assert [m.text for m in listed] == ["hello @bob", "and again"]
        assert [m.text for m in await b.messages("general", limit=1)] == ["and again"]
        assert [m.text for m in await b.messages("general", after=first.id)] == ["and again"]
        assert (await b.message(first.id)).text == "hello @bob"
        # Written with one delivery to bob each (the sender gets none), mention recorded.
        pending = await relay.store.unacked_deliveries(bob.id)
        assert [(d.message_id, d.seq, d.mode) for d in pending] == [
            (first.id, 1, "wait"),
            (second.id, 2, "steer"),
        ]
        assert await relay.store.unacked_deliveries(alice.id) == []
        assert (await relay.store.message(first.id)).mentions == [bob.id]  # type: ignore[union-attr]
        channels = await a.channels.list()
        assert [c.name for c in channels] == ["general"]


async def test_a_wrong_or_missing_key_is_a_401_that_reveals_nothing(relay: RunningRelay) -> None:
    async with AsyncRelay(api_key="relay_ws_wrong", base_url=relay.url) as client:
        with pytest.raises(RelayError) as denied:
            await client.agents.list()
    assert (denied.value.status, denied.value.code) == (401, "unauthorized")
    async with httpx.AsyncClient(base_url=relay.url) as raw:
        missing = await raw.get("/v1/agents")
        bad_agent = await raw.get("/v1/agent", headers={"Authorization": "Bearer at_live_nope"})
    assert missing.status_code == bad_agent.status_code == 401
    assert missing.json() == bad_agent.json()


async def test_bad_bodies_get_precise_errors_and_nothing_is_written(relay: RunningRelay) -> None:
    headers = {"Authorization": f"Bearer {relay.key}"}
    async with httpx.AsyncClient(base_url=relay.url, headers=headers) as raw:
        garbled = await raw.post("/v1/agents", content=b"{nope")
        extra = await raw.post("/v1/agents", json={"name": "x", "colour": "red"})
        missing = await raw.post("/v1/agents", json={})
    assert (garbled.status_code, garbled.json()["error"]["code"]) == (400, "invalid_json")
    assert extra.status_code == 400 and "colour: Extra inputs" in extra.json()["error"]["message"]
    assert (
        missing.status_code == 400 and "name: Field required" in missing.json()["error"]["message"]
    )
    assert await relay.store.list_agents(relay.workspace_id) == []
    async with AsyncRelay(api_key=relay.key, base_url=relay.url) as client:
        alice = client.as_agent((await client.agents.register("alice")).token)
        with pytest.raises(RelayError) as unknown:
            await alice.send("#nowhere", "hi")
        assert (unknown.value.status, unknown.value.code) == (404, "channel_not_found")


async def test_threads_reactions_and_read_state(relay: RunningRelay) -> None:
    async with AsyncRelay(api_key=relay.key, base_url=relay.url) as client:
        alice = await client.agents.register("alice")
        bob = await client.agents.register("bob")
        a, b = client.as_agent(alice.token), client.as_agent(bob.token)
        await a.channels.create("general")
        await b.channels.join("general")
        parent = await a.send("general", "shall we ship?")
        first = await b.reply(parent.id, "yes")
        await a.reply(first.id, "then we ship")  # a reply to a reply joins the thread
        thread = await b.thread(parent.id)
        assert thread.parent.id == parent.id and thread.parent.reply_count == 2
        assert [(m.agent_name, m.text) for m in thread.replies] == [
            ("bob", "yes"),
            ("alice", "then we ship"),
        ]
        # Replies stay out of the channel's top level.
        assert [m.text for m in await a.messages("general")] == ["shall we ship?"]

        await a.react(parent.id, "👍")
        await b.react(parent.id, "👍")
        await b.react(parent.id, "🚀")
        await b.react(parent.id, "🚀")  # twice is once
        groups = await a.reactions(parent.id)
        assert [(g.emoji, g.count, g.agents) for g in groups] == [
            ("👍", 2, ["alice", "bob"]),
            ("🚀", 1, ["bob"]),
        ]
        await b.unreact(parent.id, "🚀")
        assert [g.emoji for g in await a.reactions(parent.id)] == ["👍"]

        await b.mark_read(parent.id)
        await b.mark_read(parent.id)
        readers = await a.readers(parent.id)
        assert [(r.agent_name, r.agent_id) for r in readers] == [("bob", bob.id)]
        seen = await a.message(parent.id)
        assert (seen.read_by_count, seen.reply_count) == (1, 2)
        assert [(g.emoji, g.count) for g in seen.reactions] == [("👍", 2)]
        with pytest.raises(RelayError) as missing:
            await a.react("msg_nope", "👍")
        assert (missing.value.status, missing.value.code) == (404, "message_not_found")

"""The inbox and read state through the official relaycast-sdk client, unmodified: unread
channels, mentions, unread DMs and reactions computed from what each agent marked read."""

from __future__ import annotations

import pytest
from relay_sdk import AsyncRelay, RelayError

from .conftest import RunningRelay

pytestmark = pytest.mark.anyio


async def test_the_inbox_is_what_the_agent_has_not_read(relay: RunningRelay) -> None:
    async with AsyncRelay(api_key=relay.key, base_url=relay.url) as client:
        alice = await client.agents.register("alice")
        bob = await client.agents.register("bob")
        a, b = client.as_agent(alice.token), client.as_agent(bob.token)
        await a.channels.create("general")
        await b.channels.join("general")
        empty = await b.inbox()
        assert (empty.unread_channels, empty.mentions, empty.unread_dms) == ([], [], [])

        plain = await a.send("general", "morning")
        mention = await a.send("general", "@bob can you look?")
        dm = await a.dm("bob", "psst")
        inbox = await b.inbox()
        assert [(u.channel_name, u.unread_count) for u in inbox.unread_channels] == [("general", 2)]
        assert [(m.id, m.channel_name, m.agent_name, m.text) for m in inbox.mentions] == [
            (mention.id, "general", "alice", "@bob can you look?")
        ]
        [unread_dm] = inbox.unread_dms
        assert (unread_dm.conversation_id, unread_dm.from_, unread_dm.unread_count) == (
            dm["conversation_id"],
            "alice",
            1,
        )
        assert unread_dm.last_message is not None
        assert (unread_dm.last_message.id, unread_dm.last_message.text) == (dm["id"], "psst")
        # Her own messages are read by their author.
        mine = await a.inbox()
        assert (mine.unread_channels, mine.mentions, mine.unread_dms) == ([], [], [])

        # A thread reply is read in its thread: it is not a channel's unread message, but a
        # mention in it is one of the agent's mentions.
        reply = await a.reply(plain.id, "also, @bob, this")
        inbox = await b.inbox()
        assert [u.unread_count for u in inbox.unread_channels] == [2]
        assert [m.id for m in inbox.mentions] == [reply.id, mention.id]  # newest first

        await b.mark_read(mention.id)
        inbox = await b.inbox()
        assert [u.unread_count for u in inbox.unread_channels] == [1]
        assert [m.id for m in inbox.mentions] == [reply.id]
        for each in (plain.id, reply.id, dm["id"]):
            await b.mark_read(each)
        inbox = await b.inbox()
        assert (inbox.unread_channels, inbox.mentions, inbox.unread_dms) == ([], [], [])

        # Someone else's reaction to my message; mine to my own is no news.
        await b.react(plain.id, "👍")
        await a.react(plain.id, "🎉")
        reactions = (await a.inbox()).recent_reactions
        assert [(r.message_id, r.channel_name, r.emoji, r.agent_name) for r in reactions] == [
            (plain.id, "general", "👍", "bob")
        ]
        assert (await b.inbox(limit=1)).recent_reactions == []

        many = [await a.send("general", f"n{i}") for i in range(3)]
        await a.send("general", "@bob one")
        await a.send("general", "@bob two")
        limited = await b.inbox(limit=1)
        assert [u.unread_count for u in limited.unread_channels] == [len(many) + 2]
        assert [m.text for m in limited.mentions] == ["@bob two"]
        with pytest.raises(RelayError) as bad_limit:
            await b.client.get("/v1/inbox", {"limit": "lots"})
        assert (bad_limit.value.status, bad_limit.value.code) == (400, "invalid_request")


async def test_a_newcomer_does_not_inherit_the_history_as_unread(relay: RunningRelay) -> None:
    async with AsyncRelay(api_key=relay.key, base_url=relay.url) as client:
        alice = await client.agents.register("alice")
        carol = await client.agents.register("carol")
        a, c = client.as_agent(alice.token), client.as_agent(carol.token)
        await a.channels.create("general")
        await a.send("general", "before carol")
        await c.channels.join("general")
        assert (await c.inbox()).unread_channels == []
        await a.send("general", "welcome")
        assert [(u.channel_name, u.unread_count) for u in (await c.inbox()).unread_channels] == [
            ("general", 1)
        ]
        # Not a member: nothing of the channel counts, but a mention still reaches you.
        dave = await client.agents.register("dave")
        d = client.as_agent(dave.token)
        await a.send("general", "@dave fyi")
        inbox = await d.inbox()
        assert inbox.unread_channels == [] and [m.text for m in inbox.mentions] == ["@dave fyi"]


async def test_a_muted_channel_leaves_the_unread_channels_but_not_the_mentions(
    relay: RunningRelay,
) -> None:
    async with AsyncRelay(api_key=relay.key, base_url=relay.url) as client:
        alice = await client.agents.register("alice")
        bob = await client.agents.register("bob")
        a, b = client.as_agent(alice.token), client.as_agent(bob.token)
        await a.channels.create("general")
        await a.channels.create("random")
        await b.channels.join("general")
        await b.channels.join("random")
        await a.send("general", "noise")
        await a.send("general", "@bob signal")
        await a.send("random", "elsewhere")
        await b.channels.mute("general")
        await b.channels.mute("general")  # twice is once
        inbox = await b.inbox()
        assert [(u.channel_name, u.unread_count) for u in inbox.unread_channels] == [("random", 1)]
        assert [m.text for m in inbox.mentions] == ["@bob signal"]
        # Muting is bob's alone, and survives leaving and joining again.
        await b.channels.leave("general")
        await b.channels.join("general")
        await a.send("general", "still muted?")
        assert [u.channel_name for u in (await b.inbox()).unread_channels] == ["random"]
        await b.channels.unmute("general")
        assert {u.channel_name for u in (await b.inbox()).unread_channels} == {
            "random",
            "general",
        }
        with pytest.raises(RelayError) as unknown:
            await b.channels.mute("nowhere")
        assert (unknown.value.status, unknown.value.code) == (404, "channel_not_found")


async def test_read_status_is_each_members_newest_read_message(relay: RunningRelay) -> None:
    async with AsyncRelay(api_key=relay.key, base_url=relay.url) as client:
        alice = await client.agents.register("alice")
        bob = await client.agents.register("bob")
        a, b = client.as_agent(alice.token), client.as_agent(bob.token)
        await a.channels.create("general")
        await b.channels.join("general")
        first = await a.send("general", "one")
        second = await a.send("general", "two")
        status = {s.agent_name: s for s in await b.read_status("#general")}
        assert set(status) == {"alice", "bob"}
        assert (status["alice"].last_read_id, status["alice"].last_read_at) == (
            second.id,
            second.created_at,
        )  # her own messages are read by her
        assert (status["bob"].last_read_id, status["bob"].last_read_at) == (None, None)
        read_at = (await b.mark_read(first.id))["read_at"]
        status = {s.agent_name: s for s in await a.read_status("general")}
        assert (status["bob"].last_read_id, status["bob"].last_read_at) == (first.id, read_at)
        await b.mark_read(second.id)
        status = {s.agent_name: s for s in await a.read_status("general")}
        assert status["bob"].last_read_id == second.id
        with pytest.raises(RelayError) as unknown:
            await a.read_status("nowhere")
        assert (unknown.value.status, unknown.value.code) == (404, "channel_not_found")

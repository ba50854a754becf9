"""Channel operations (leave, invite, topic, update, archive, mute) and presence through
the official relaycast-sdk client, unmodified, against the embedded relay."""

from __future__ import annotations

import httpx
import pytest
from relay_sdk import AsyncRelay, RelayError

from .conftest import RunningRelay

pytestmark = pytest.mark.anyio


async def test_members_leave_invite_and_change_the_topic_and_metadata(
    relay: RunningRelay,
) -> None:
    async with AsyncRelay(api_key=relay.key, base_url=relay.url) as client:
        alice = await client.agents.register("alice")
        bob = await client.agents.register("bob")
        carol = await client.agents.register("carol")
        a, b, c = (client.as_agent(x.token) for x in (alice, bob, carol))
        await a.channels.create("general", topic="all of us")

        invited = await a.channels.invite("general", "bob")
        again = await a.channels.invite("general", "bob")
        assert (invited["agent_name"], invited["invited"], again["invited"]) == ("bob", True, False)
        members = {m.agent_name for m in await a.channels.members("general")}
        assert members == {"alice", "bob"}
        message = await a.send("general", "for members")
        assert [d.message_id for d in await relay.store.unacked_deliveries(bob.id)] == [message.id]

        with pytest.raises(RelayError) as outsider_invites:
            await c.channels.invite("general", "carol")
        with pytest.raises(RelayError) as unknown_agent:
            await a.channels.invite("general", "nobody")
        with pytest.raises(RelayError) as outsider_topic:
            await c.channels.set_topic("general", "mine now")
        assert (outsider_invites.value.status, outsider_invites.value.code) == (
            403,
            "not_a_member",
        )
        assert (unknown_agent.value.status, unknown_agent.value.code) == (404, "agent_not_found")
        assert (outsider_topic.value.status, outsider_topic.value.code) == (403, "not_a_member")

        topic = await b.channels.set_topic("general", "shipping")
        assert (topic.name, topic.topic) == ("general", "shipping")
        updated = await b.channels.update("general", metadata={"team": "core"})
        assert (updated.topic, updated.metadata) == ("shipping", {"team": "core"})
        updated = await b.channels.update("general", topic="release")
        assert (updated.topic, updated.metadata) == ("release", {"team": "core"})
        listed = {ch.name: ch for ch in await c.channels.list()}
        assert (listed["general"].topic, listed["general"].metadata) == (
            "release",
            {"team": "core"},
        )

        await b.channels.leave("general")
        await b.channels.leave("general")  # leaving twice is leaving once
        assert {m.agent_name for m in await a.channels.members("general")} == {"alice"}
        later = await a.send("general", "bob has left")
        assert later.id not in {d.message_id for d in await relay.store.unacked_deliveries(bob.id)}

        headers = {"Authorization": f"Bearer {alice.token}"}
        async with httpx.AsyncClient(base_url=relay.url, headers=headers) as raw:
            extra = await raw.patch("/v1/channels/general", json={"colour": "red"})
            long_topic = await raw.patch("/v1/channels/general/topic", json={"topic": "x" * 1001})
            no_topic = await raw.patch("/v1/channels/general/topic", json={})
            unknown = await raw.post("/v1/channels/nowhere/leave")
        for refused in (extra, long_topic, no_topic):
            assert refused.status_code == 400, refused.text
            assert refused.json()["error"]["code"] == "invalid_request"
        assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "channel_not_found")
        assert (await a.channels.list())[0].topic == "release"  # nothing changed


async def test_an_archived_channel_takes_no_messages_or_changes(relay: RunningRelay) -> None:
    async with AsyncRelay(api_key=relay.key, base_url=relay.url) as client:
        alice = await client.agents.register("alice")
        bob = await client.agents.register("bob")
        carol = await client.agents.register("carol")
        a, b, c = (client.as_agent(x.token) for x in (alice, bob, carol))
        await a.channels.create("general")
        await b.channels.join("general")
        first = await a.send("general", "before")

        with pytest.raises(RelayError) as not_owner:
            await b.channels.archive("general")
        assert (not_owner.value.status, not_owner.value.code) == (403, "not_channel_owner")
        await a.channels.archive("general")
        await a.channels.archive("general")  # archiving twice is archiving once

        assert await a.channels.list() == []
        [archived] = await a.channels.list(include_archived=True)
        assert (archived.name, archived.is_archived) == ("general", True)
        # Still readable, but nothing new gets in.
        assert [m.text for m in await b.messages("general")] == ["before"]
        for refused_call in (
            lambda: a.send("general", "after"),
            lambda: b.reply(first.id, "in a thread"),
            lambda: c.channels.join("general"),
            lambda: a.channels.invite("general", "carol"),
            lambda: a.channels.set_topic("general", "closed"),
            lambda: a.channels.update("general", metadata={"x": 1}),
        ):
            with pytest.raises(RelayError) as refused:
                await refused_call()
            assert (refused.value.status, refused.value.code) == (409, "channel_archived")
        assert [m.text for m in await b.messages("general")] == ["before"]
        thread = await b.thread(first.id)
        assert thread.replies == []
        assert [m.agent_name for m in await a.channels.members("general")] == ["alice", "bob"]
        assert [d.message_id for d in await relay.store.unacked_deliveries(bob.id)] == [first.id]
        events, _ = await relay.store.events_after(
            relay.workspace_id, 0, types=["channel.archived"]
        )
        assert [e.data for e in events] == [{"channel": {"name": "general"}}]


async def test_presence_follows_heartbeats_and_disconnects(relay: RunningRelay) -> None:
    async with AsyncRelay(api_key=relay.key, base_url=relay.url) as client:
        alice = await client.agents.register("alice")
        a = client.as_agent(alice.token)
        assert (await client.agents.get("alice")).status == "offline"
        await a.mark_online()
        seen = await client.agents.get("alice")
        assert seen.status == "online"
        await a.heartbeat()
        later = await client.agents.get("alice")
        assert later.status == "online" and later.last_seen >= seen.last_seen
        await a.mark_offline()
        assert (await a.me()).status == "offline"
        await a.presence.mark_online()
        assert (await a.me()).status == "online"
        await a.disconnect()
        stored = await relay.store.agent_by_id(alice.id)
        assert stored is not None and stored.status == "offline" and stored.last_seen

        with pytest.raises(RelayError) as workspace_key:
            await client.as_agent(relay.key).heartbeat()
        assert (workspace_key.value.status, workspace_key.value.code) == (
            403,
            "agent_token_required",
        )
        async with httpx.AsyncClient(base_url=relay.url) as raw:
            anonymous = await raw.post("/v1/agents/heartbeat", json={})
            extra = await raw.post(
                "/v1/agents/heartbeat",
                json={"status": "away"},
                headers={"Authorization": f"Bearer {alice.token}"},
            )
        assert anonymous.status_code == 401
        assert (extra.status_code, extra.json()["error"]["code"]) == (400, "invalid_request")
        assert (await a.me()).status == "offline"

"""DMs and group DMs through the official relaycast-sdk client, unmodified, against the
embedded relay: one conversation per pair, durable deliveries to the other participants,
only participants reading or writing, groups with participants added and removed."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx
import pytest
from relay_sdk import AsyncAgentClient, AsyncRelay, RelayError
from relay_sdk.models import MessageWithMeta

from .conftest import RunningRelay

pytestmark = pytest.mark.anyio


async def agents(client: AsyncRelay, *names: str) -> tuple[list[Any], list[AsyncAgentClient]]:
    registered = [await client.agents.register(name) for name in names]
    return registered, [client.as_agent(r.token) for r in registered]


async def pending(relay: RunningRelay, agent_id: str) -> list[tuple[str, str]]:
    return [(d.message_id, d.mode) for d in await relay.store.unacked_deliveries(agent_id)]


async def test_a_pair_has_one_dm_and_each_message_is_delivered_to_the_other(
    relay: RunningRelay,
) -> None:
    async with AsyncRelay(api_key=relay.key, base_url=relay.url) as client:
        (alice, bob, carol), (a, b, _c) = await agents(client, "alice", "bob", "carol")
        first = await a.dm("bob", "hi bob")
        second = await b.dm("@alice", "hi alice")
        cid = first["conversation_id"]
        assert second["conversation_id"] == cid  # the same conversation, whoever starts
        sent = MessageWithMeta.model_validate(first)  # a sent DM reads as a message
        assert (sent.agent_name, sent.text, sent.injection_mode) == ("alice", "hi bob", "wait")
        third = await a.dms.send_message(cid, "more", mode="steer")
        assert third["conversation_id"] == cid

        listed = await b.dms.messages(cid)
        assert [(m.agent_name, m.text) for m in listed] == [
            ("alice", "hi bob"),
            ("bob", "hi alice"),
            ("alice", "more"),
        ]
        assert [m.text for m in await b.dms.messages(cid, limit=1)] == ["more"]
        assert [m.text for m in await b.dms.messages(cid, after=first["id"])] == [
            "hi alice",
            "more",
        ]

        # Durable: one delivery to the other participant, none to the sender or outsiders.
        assert await pending(relay, bob.id) == [(first["id"], "wait"), (third["id"], "steer")]
        assert await pending(relay, alice.id) == [(second["id"], "wait")]
        assert await pending(relay, carol.id) == []

        [summary] = await a.dms.conversations()
        assert (summary.id, summary.type, summary.name) == (cid, "1:1", None)
        assert summary.participants == ["alice", "bob"]
        assert (summary.last_message, summary.unread_count) == ("more", 1)  # bob's, unread
        [for_bob] = await b.dms.conversations()
        assert (for_bob.id, for_bob.unread_count) == (cid, 2)
        await b.mark_read(first["id"])
        assert (await b.dms.conversations())[0].unread_count == 1


async def test_only_participants_read_or_write_a_dm(relay: RunningRelay) -> None:
    async with AsyncRelay(api_key=relay.key, base_url=relay.url) as client:
        (_alice, _bob, carol), (a, b, c) = await agents(client, "alice", "bob", "carol")
        cid = (await a.dm("bob", "between us, @carol"))["conversation_id"]
        # A mention of an outsider neither records nor delivers anything: the DM stays
        # between its participants.
        assert await pending(relay, carol.id) == []
        [message] = await b.dms.messages(cid)
        assert (await relay.store.message(message.id)).mentions == []  # type: ignore[union-attr]

        with pytest.raises(RelayError) as outsider_reads:
            await c.dms.messages(cid)
        with pytest.raises(RelayError) as outsider_writes:
            await c.dms.send_message(cid, "let me in")
        with pytest.raises(RelayError) as unknown:
            await a.dms.messages("chn_nope")
        await a.channels.create("general")
        channel_id = (await a.channels.get("general"))["id"]
        with pytest.raises(RelayError) as not_a_dm:
            await a.dms.messages(channel_id)
        assert (outsider_reads.value.status, outsider_reads.value.code) == (
            403,
            "not_a_participant",
        )
        assert (outsider_writes.value.status, outsider_writes.value.code) == (
            403,
            "not_a_participant",
        )
        assert (unknown.value.status, unknown.value.code) == (404, "conversation_not_found")
        assert (not_a_dm.value.status, not_a_dm.value.code) == (404, "conversation_not_found")
        assert await c.dms.conversations() == []
        assert len(await b.dms.messages(cid)) == 1  # nothing got in

        # A DM is not a channel: no channel route reaches it by its name.
        dm = await relay.store.channel_by_id(cid)
        assert dm is not None and dm.kind == "dm"
        headers = {"Authorization": f"Bearer {carol.token}"}
        async with httpx.AsyncClient(base_url=relay.url, headers=headers) as raw:
            by_name = await raw.get(f"/v1/channels/{quote(dm.name, safe='')}/messages")
            post_by_name = await raw.post(
                f"/v1/channels/{quote(dm.name, safe='')}/messages", json={"text": "x"}
            )
        assert by_name.status_code == post_by_name.status_code == 404
        assert [c.name for c in await a.channels.list()] == ["general"]
        assert len(await b.dms.messages(cid)) == 1

        with pytest.raises(RelayError) as nobody:
            await a.dm("nobody", "hello?")
        with pytest.raises(RelayError) as myself:
            await a.dm("alice", "note to self")
        assert (nobody.value.status, nobody.value.code) == (404, "agent_not_found")
        assert (myself.value.status, myself.value.code) == (400, "invalid_request")
        with pytest.raises(RelayError) as workspace_key:
            await client.as_agent(relay.key).dms.conversations()
        assert (workspace_key.value.status, workspace_key.value.code) == (
            403,
            "agent_token_required",
        )
        # bob's conversations are untouched by all of the above.
        assert [s.id for s in await b.dms.conversations()] == [cid]


async def test_a_refused_dm_creates_nothing(relay: RunningRelay) -> None:
    async with AsyncRelay(api_key=relay.key, base_url=relay.url) as client:
        (alice, carol), (a, c) = await agents(client, "alice", "carol")
        with pytest.raises(RelayError) as too_long:
            await a.dm("carol", "x" * (64 * 1024 + 1))
        with pytest.raises(RelayError) as unknown_file:
            await a.dm("carol", "see attached", attachments=["file_nope"])
        assert (too_long.value.status, too_long.value.code) == (413, "message_too_large")
        assert (unknown_file.value.status, unknown_file.value.code) == (404, "file_not_found")
        assert await a.dms.conversations() == [] and await c.dms.conversations() == []
        assert await pending(relay, carol.id) == []
        headers = {"Authorization": f"Bearer {alice.token}"}
        async with httpx.AsyncClient(base_url=relay.url, headers=headers) as raw:
            extra = await raw.post("/v1/dm", json={"to": "carol", "text": "hi", "urgent": True})
            missing = await raw.post("/v1/dm", json={"to": "carol"})
        assert extra.status_code == 400 and extra.json()["error"]["code"] == "invalid_request"
        assert "urgent: Extra inputs" in extra.json()["error"]["message"]
        assert missing.status_code == 400 and "text: Field required" in missing.text
        assert await a.dms.conversations() == []


async def test_group_dms_are_created_with_a_message_and_change_participants(
    relay: RunningRelay,
) -> None:
    async with AsyncRelay(api_key=relay.key, base_url=relay.url) as client:
        (alice, bob, carol, dave), (a, b, c, d) = await agents(
            client, "alice", "bob", "carol", "dave"
        )
        group = await a.dms.create_group(["bob", "@carol"], "kickoff", name="trio")
        gid = group["id"]
        assert (group["type"], group["name"]) == ("group", "trio")
        assert group["participants"] == ["alice", "bob", "carol"]
        assert group["message"]["text"] == "kickoff"
        kickoff = group["message"]["id"]
        assert await pending(relay, bob.id) == [(kickoff, "wait")]
        assert await pending(relay, carol.id) == [(kickoff, "wait")]
        assert await pending(relay, alice.id) == []

        [summary] = await c.dms.conversations()
        assert (summary.id, summary.type, summary.name) == (gid, "group", "trio")
        assert (summary.participants, summary.unread_count) == (["alice", "bob", "carol"], 1)

        added = await b.dms.add_participant(gid, "dave")
        again = await b.dms.add_participant(gid, "dave")
        assert (added["added"], again["added"]) == (True, False)
        assert [m.text for m in await d.dms.messages(gid)] == ["kickoff"]  # the history too
        hello = await c.dms.send_message(gid, "hello all")
        for each in (alice, bob, dave):
            assert (hello["id"], "wait") in await pending(relay, each.id)

        await a.dms.remove_participant(gid, "carol")
        with pytest.raises(RelayError) as removed:
            await c.dms.messages(gid)
        assert (removed.value.status, removed.value.code) == (403, "not_a_participant")
        with pytest.raises(RelayError) as twice:
            await a.dms.remove_participant(gid, "carol")
        assert (twice.value.status, twice.value.code) == (404, "participant_not_found")
        after = await a.dms.send_message(gid, "carol has left")
        assert (after["id"], "wait") not in await pending(relay, carol.id)
        assert [s.participants for s in await a.dms.conversations()] == [["alice", "bob", "dave"]]

        one_to_one = (await a.dm("bob", "just us"))["conversation_id"]
        with pytest.raises(RelayError) as not_group:
            await a.dms.add_participant(one_to_one, "carol")
        with pytest.raises(RelayError) as not_group_remove:
            await a.dms.remove_participant(one_to_one, "bob")
        assert (not_group.value.status, not_group.value.code) == (409, "not_a_group_dm")
        assert (not_group_remove.value.status, not_group_remove.value.code) == (
            409,
            "not_a_group_dm",
        )

        before = len(await a.dms.conversations())
        with pytest.raises(RelayError) as unknown:
            await a.dms.create_group(["bob", "nobody"], "hi")
        with pytest.raises(RelayError) as alone:
            await a.dms.create_group(["alice"], "hi")
        assert (unknown.value.status, unknown.value.code) == (404, "agent_not_found")
        assert (alone.value.status, alone.value.code) == (400, "invalid_request")
        assert len(await a.dms.conversations()) == before


async def test_a_dm_message_does_not_exist_for_outsiders(relay: RunningRelay) -> None:
    client = AsyncRelay(api_key=relay.key, base_url=relay.url)
    tokens = {n: (await client.agents.register(n)).token for n in ("ann", "ben", "eve")}
    ann = client.as_agent(tokens["ann"])
    sent = await ann.dm("ben", "just between us")
    message_id = sent["id"] if isinstance(sent, dict) else sent.id
    async with httpx.AsyncClient(base_url=relay.url) as http:
        headers = {"authorization": f"Bearer {tokens['eve']}"}
        for method, path in [
            ("GET", f"/v1/messages/{message_id}"),
            ("GET", f"/v1/messages/{message_id}/replies"),
            ("GET", f"/v1/messages/{message_id}/readers"),
            ("POST", f"/v1/messages/{message_id}/read"),
        ]:
            got = await http.request(method, path, headers=headers)
            assert (got.status_code, got.json()["error"]["code"]) == (404, "message_not_found")

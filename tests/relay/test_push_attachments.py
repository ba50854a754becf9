"""A message's attachments are written with it, in its transaction, and travel with its
deliveries: in the node's ``deliver`` frame (live and from the backlog), in a polled
delivery, in ``message.created``."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from relay_sdk import AsyncRelay

from agent_relay_runtime.relay.store import Conflict

from .conftest import RunningRelay
from .nodes import raw_node

pytestmark = pytest.mark.anyio

DATA = b"line\n" * 40


async def uploaded(me: Any, token: str, name: str = "notes.txt") -> str:
    """A complete file of ``me``'s, with DATA as its bytes."""
    upload = await me.files.upload(name, "text/plain", len(DATA))
    async with httpx.AsyncClient() as raw:
        put = await raw.put(
            upload.upload_url, content=DATA, headers={"authorization": f"Bearer {token}"}
        )
    assert put.status_code == 200, put.text
    await me.files.complete(upload.file_id)
    return str(upload.file_id)


def attachment(file_id: str, name: str = "notes.txt") -> dict[str, Any]:
    return {"file_id": file_id, "filename": name, "content_type": "text/plain",
            "size_bytes": len(DATA)}  # fmt: skip


async def test_attachments_travel_with_the_deliveries(relay: RunningRelay) -> None:
    async with AsyncRelay(api_key=relay.key, base_url=relay.url) as client:
        registered = await client.agents.register("alice")
        alice = client.as_agent(registered.token)
        bob_token = (await client.agents.register("bob")).token
        bob = client.as_agent(bob_token)
        await alice.channels.create("general")
        await bob.channels.join("general")
        first = await uploaded(alice, registered.token)
        second = await uploaded(alice, registered.token, "more.txt")
        expected = [attachment(second, "more.txt"), attachment(first)]

        async with raw_node(relay.url, relay.key) as (node, _):
            hosted = await node.request({"type": "agent.register", "name": "worker"})
            worker = client.as_agent(hosted["data"]["token"])
            await worker.channels.join("general")
            sent = await alice.send("general", "two files", attachments=[second, first])
            assert [a.file_id for a in sent.attachments] == [second, first]
            deliver = await node.next_of("deliver")
            data = deliver["payload"]["data"]
            assert (deliver["msg_id"], data["has_attachments"]) == (sent.id, True)
            assert data["attachments"] == expected
            dm = await alice.dm("worker", "one file", attachments=[first])
            pushed = await node.next_of("deliver")
            assert pushed["msg_id"] == dm["id"]
            assert pushed["payload"]["data"]["attachments"] == [attachment(first)]
            # Not acknowledged: a new connection reads them from the backlog, files and all.

        async with raw_node(relay.url, relay.key) as (node, _):
            await node.request({"type": "agent.register", "name": "worker"})
            again = [await node.next_of("deliver") for _ in range(2)]
            assert [f["payload"]["data"]["attachments"] for f in again] == [
                expected, [attachment(first)],
            ]  # fmt: skip

        [polled] = await bob.deliveries()
        assert polled.message is not None and polled.message_id == sent.id
        async with httpx.AsyncClient(base_url=relay.url) as http:
            raw = await http.get("/v1/deliveries", headers={"authorization": f"Bearer {bob_token}"})
            [item] = raw.json()["data"]
            assert item["message"]["attachments"] == expected
            events = await http.get(
                "/v1/events", params={"types": "message.created"},
                headers={"authorization": f"Bearer {relay.key}"},
            )  # fmt: skip
        created = events.json()["data"]["events"]
        assert [e["data"]["attachments"] for e in created] == [expected, [attachment(first)]]


async def test_a_file_that_is_not_complete_is_not_attached_and_nothing_is_written(
    relay: RunningRelay,
) -> None:
    store = relay.store
    alice, _ = await store.register_agent(relay.workspace_id, "alice")
    bob, _ = await store.register_agent(relay.workspace_id, "bob")
    channel = await store.create_channel(relay.workspace_id, "general", members=[alice.id])
    pending = await store.create_file(
        relay.workspace_id, alice.id, "half.txt", "text/plain", 10, "2999-01-01T00:00:00.000Z"
    )
    with pytest.raises(Conflict):
        await store.post_message(
            workspace_id=relay.workspace_id, channel_id=channel.id, sender_id=alice.id,
            text="half", targets=[bob.id], attachments=[pending.id],
        )  # fmt: skip
    assert await store.channel_messages(channel.id) == []
    assert await store.acked_seq(bob.id) == 0 and await store.unacked_deliveries(bob.id) == []

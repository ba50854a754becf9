"""The store's cache of the directory (tokens, agents, channels, members): lookups are
served from memory, and every change takes effect for the very next request, whoever
makes it (REST, the node socket, or SQL from any module of the store)."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import httpx
import pytest

from .conftest import RunningRelay
from .nodes import raw_node

pytestmark = pytest.mark.anyio


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


@pytest.fixture
async def http(relay: RunningRelay) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=relay.url, timeout=30) as client:
        yield client


async def register(http: httpx.AsyncClient, relay: RunningRelay, name: str) -> str:
    made = await http.post("/v1/agents", json={"name": name}, headers=bearer(relay.key))
    assert made.status_code == 201, made.text
    return str(made.json()["data"]["token"])


async def targets_of(relay: RunningRelay, message_id: str) -> list[str]:
    return [r.agent_name for r in await relay.store.receipts(message_id)]


async def post(http: httpx.AsyncClient, token: str, text: str) -> str:
    sent = await http.post("/v1/channels/general/messages", json={"text": text},
                           headers=bearer(token))  # fmt: skip
    assert sent.status_code == 201, sent.text
    return str(sent.json()["data"]["id"])


def _remove_members(channel_id: str, conn: sqlite3.Connection) -> None:
    """Deletes every member of the channel, as raw SQL (a write the store sends to its writer)."""
    conn.execute("DELETE FROM channel_members WHERE channel_id = ?", (channel_id,))


async def test_lookups_are_served_from_memory_until_the_directory_changes(
    relay: RunningRelay, http: httpx.AsyncClient
) -> None:
    store = relay.store
    token = await register(http, relay, "alice")
    reads: list[str] = []
    rows = store._rows

    async def counted(sql: str, *args: Any) -> list[sqlite3.Row]:
        reads.append(sql)
        return await rows(sql, *args)

    store._rows = counted  # type: ignore[method-assign]
    first = await store.agent_by_token(token)
    assert first is not None and len(reads) == 1
    assert await store.agent_by_token(token) is first and len(reads) == 1
    assert await store.agent_by_token("at_live_unknown") is None
    assert await store.agent_by_token("at_live_unknown") is None
    assert len(reads) == 3  # what was not found is not kept
    await store.set_presence(first.id, "online")  # a change to the agents table
    again = await store.agent_by_token(token)
    assert again is not None and again.status == "online" and len(reads) == 4


async def test_a_revoked_token_is_refused_at_once(
    relay: RunningRelay, http: httpx.AsyncClient
) -> None:
    async with raw_node(relay.url, relay.key) as (node, _):
        hosted = await node.request({"type": "agent.register", "name": "worker"})
        token = hosted["data"]["token"]
        for _ in range(2):
            assert (await http.get("/v1/agent", headers=bearer(token))).status_code == 200
        gone = await node.request({"type": "agent.deregister", "name": "worker"})
        assert gone["type"] == "reply"
        refused = await http.get("/v1/agent", headers=bearer(token))
        assert refused.status_code == 401


async def test_membership_changes_take_effect_for_the_next_message(
    relay: RunningRelay, http: httpx.AsyncClient
) -> None:
    alice, bob, carol = [await register(http, relay, n) for n in ("alice", "bob", "carol")]
    assert (await http.post("/v1/channels", json={"name": "general"},
                            headers=bearer(alice))).status_code == 201  # fmt: skip
    assert (await http.post("/v1/channels/general/join", headers=bearer(bob))).status_code == 200
    assert await targets_of(relay, await post(http, alice, "one")) == ["bob"]
    assert await targets_of(relay, await post(http, alice, "two")) == ["bob"]

    assert (await http.post("/v1/channels/general/leave", headers=bearer(bob))).status_code == 200
    assert (await http.post("/v1/channels/general/join", headers=bearer(carol))).status_code == 200
    assert await targets_of(relay, await post(http, alice, "three")) == ["carol"]

    # A change by any code of the store (here raw SQL in a write) invalidates as well.
    store = relay.store
    general = await store.channel_by_name(relay.workspace_id, "general")
    assert general is not None
    await store._write(partial(_remove_members, general.id))
    assert await targets_of(relay, await post(http, bob, "four")) == []

    archived = await http.delete("/v1/channels/general", headers=bearer(alice))
    assert archived.status_code == 200, archived.text
    refused = await http.post("/v1/channels/general/messages", json={"text": "five"},
                              headers=bearer(alice))  # fmt: skip
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "channel_archived"

"""Deliveries taken over REST by agents without a node socket: poll (and long-poll), ack,
fail, defer; through raw HTTP and through the official relaycast-sdk client; and how
REST settlements and a node's cumulative acks share one cursor."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import httpx
import pytest
from relay_sdk import AsyncRelay
from relay_sdk.models import DeferDeliveryRequest, FailDeliveryRequest

from agent_relay_runtime.aio import Notifier

from .conftest import RunningRelay
from .nodes import raw_node

pytestmark = pytest.mark.anyio


class Team:
    """alice posts to #general; bob (a member) takes his deliveries over REST."""

    def __init__(self, http: httpx.AsyncClient, tokens: dict[str, str]) -> None:
        self.http, self.tokens = http, tokens

    def auth(self, name: str) -> dict[str, str]:
        return {"authorization": f"Bearer {self.tokens[name]}"}

    async def post(self, text: str, channel: str = "general") -> str:
        sent = await self.http.post(
            f"/v1/channels/{channel}/messages", json={"text": text}, headers=self.auth("alice")
        )
        assert sent.status_code == 201, sent.text
        return str(sent.json()["data"]["id"])

    async def poll(self, name: str = "bob", **query: Any) -> list[dict[str, Any]]:
        got = await self.http.get("/v1/deliveries", params=query, headers=self.auth(name))
        assert got.status_code == 200, got.text
        return list(got.json()["data"])

    async def settle(
        self, delivery_id: str, outcome: str, body: dict[str, Any] | None = None, name: str = "bob"
    ) -> httpx.Response:
        return await self.http.post(
            f"/v1/deliveries/{delivery_id}/{outcome}", json=body or {}, headers=self.auth(name)
        )


@pytest.fixture
async def team(relay: RunningRelay) -> AsyncIterator[Team]:
    async with httpx.AsyncClient(base_url=relay.url, timeout=30) as http:
        tokens = {}
        for name in ("alice", "bob", "carol"):
            made = await http.post(
                "/v1/agents", json={"name": name}, headers={"authorization": f"Bearer {relay.key}"}
            )
            tokens[name] = made.json()["data"]["token"]
        team = Team(http, tokens)
        assert (
            await http.post("/v1/channels", json={"name": "general"}, headers=team.auth("alice"))
        ).status_code == 201
        assert (
            await http.post("/v1/channels/general/join", headers=team.auth("bob"))
        ).status_code == 200
        yield team


async def events_of(team: Team, relay: RunningRelay, types: str) -> list[dict[str, Any]]:
    got = await team.http.get(
        "/v1/events", params={"types": types}, headers={"authorization": f"Bearer {relay.key}"}
    )
    return list(got.json()["data"]["events"])


async def test_an_agent_polls_its_deliveries_oldest_first_and_acks_them(
    relay: RunningRelay, team: Team
) -> None:
    ids = [await team.post(f"m{n}") for n in range(3)]
    found = await team.poll()
    assert [(d["seq"], d["message_id"], d["status"]) for d in found] == [
        (1, ids[0], "queued"), (2, ids[1], "queued"), (3, ids[2], "queued"),
    ]  # fmt: skip
    first = found[0]
    assert first["message"]["text"] == "m0" and first["message"]["from_name"] == "alice"
    assert first["message"]["channel_name"] == "general" and first["message"]["attachments"] == []
    assert first["channel_id"] == first["message"]["channel_id"] and first["mode"] == "wait"
    assert [d["seq"] for d in await team.poll(limit=2)] == [1, 2]
    assert await team.poll(name="carol") == []  # not a member: nothing for carol

    acked = await team.settle(first["id"], "ack")
    assert acked.status_code == 200, acked.text
    assert (acked.json()["data"]["status"], acked.json()["data"]["id"]) == ("acked", first["id"])
    assert [d["seq"] for d in await team.poll()] == [2, 3]
    bob = (await relay.store.agent_by_name(relay.workspace_id, "bob")).id  # type: ignore[union-attr]
    assert await relay.store.acked_seq(bob) == 1

    # The receipt is recorded as the node path records it: delivered, with its event.
    receipts = await team.http.get(f"/v1/messages/{ids[0]}/receipts", headers=team.auth("alice"))
    [receipt] = receipts.json()["data"]
    assert (receipt["agent_name"], receipt["status"]) == ("bob", "delivered")
    assert receipt["acked"] is True
    assert receipt["evidence"] == "acknowledged by the agent"
    [event] = await events_of(team, relay, "delivery.delivered")
    assert event["agent"] == "bob" and event["data"]["delivery_id"] == first["id"]

    again = await team.settle(first["id"], "ack")
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "delivery_already_acked"


async def test_settling_out_of_order_moves_the_cursor_over_every_settled_delivery(
    relay: RunningRelay, team: Team
) -> None:
    for n in range(4):
        await team.post(f"m{n}")
    d1, d2, d3, _ = await team.poll()
    bob = (await relay.store.agent_by_name(relay.workspace_id, "bob")).id  # type: ignore[union-attr]
    assert (await team.settle(d3["id"], "ack")).status_code == 200
    assert (await team.settle(d2["id"], "fail", {"reason": "no room"})).status_code == 200
    assert await relay.store.acked_seq(bob) == 0  # seq 1 still waits
    assert [d["seq"] for d in await team.poll()] == [1, 4]
    assert (await team.settle(d1["id"], "ack")).status_code == 200
    assert await relay.store.acked_seq(bob) == 3  # over 2 (failed) and 3 (acked)
    assert [d["seq"] for d in await team.poll()] == [4]


async def test_a_failed_delivery_is_settled_and_says_whether_a_retry_is_safe(
    relay: RunningRelay, team: Team
) -> None:
    message_id = await team.post("do it")
    [delivery] = await team.poll()
    failed = await team.settle(delivery["id"], "fail", {"reason": "tool broke", "retryable": True})
    assert failed.status_code == 200, failed.text
    data = failed.json()["data"]
    assert (data["status"], data["reason"], data["error"], data["retryable"]) == (
        "failed", "tool broke", "tool broke", True,
    )  # fmt: skip
    assert await team.poll() == []
    [listed] = await team.poll(status="failed")
    assert listed["id"] == delivery["id"] and listed["message"]["text"] == "do it"
    [event] = await events_of(team, relay, "delivery.failed")
    assert event["data"]["message_id"] == message_id and event["data"]["retryable"] is True
    for outcome, body in (("fail", {}), ("ack", {}), ("defer", {"delay_ms": 10})):
        again = await team.settle(delivery["id"], outcome, body)
        assert again.status_code == 409
        assert again.json()["error"]["code"] == "delivery_already_failed"


async def test_a_deferred_delivery_comes_back_at_its_time(relay: RunningRelay, team: Team) -> None:
    await team.post("later")
    await team.post("now")
    later, now = await team.poll()
    deferred = await team.settle(later["id"], "defer", {"delay_ms": 60_000, "reason": "busy"})
    assert deferred.status_code == 200, deferred.text
    data = deferred.json()["data"]
    assert (data["status"], data["reason"]) == ("queued", "busy")
    assert datetime.fromisoformat(data["available_at"]) > datetime.now(UTC) + timedelta(seconds=50)
    assert [d["id"] for d in await team.poll()] == [now["id"]]
    assert [d["id"] for d in await team.poll(status="queued")] == [later["id"], now["id"]]
    [event] = await events_of(team, relay, "delivery.deferred")
    assert event["data"]["available_at"] == data["available_at"]

    # Deferred again, to a time already past (an offset other than Z): back at once.
    past = (datetime.now(UTC) - timedelta(seconds=1)).astimezone().isoformat()
    assert (await team.settle(later["id"], "defer", {"available_at": past})).status_code == 200
    assert [d["id"] for d in await team.poll()] == [later["id"], now["id"]]

    # A long poll wakes when a deferred delivery comes due (a timer, not a commit).
    assert (await team.settle(now["id"], "ack")).status_code == 200
    assert (await team.settle(later["id"], "defer", {"delay_ms": 300})).status_code == 200
    started = time.monotonic()
    [back] = await team.poll(wait=10)
    assert back["id"] == later["id"]
    assert 0.25 <= time.monotonic() - started < 5
    assert (await team.settle(later["id"], "ack")).status_code == 200


async def test_a_long_poll_wakes_when_a_delivery_is_committed(
    relay: RunningRelay, team: Team
) -> None:
    store = relay.store
    reads = Notifier()
    read = store.pending_deliveries

    async def counted(*args: Any, **kwargs: Any) -> Any:
        found = await read(*args, **kwargs)
        reads.notify()
        return found

    store.pending_deliveries = counted  # type: ignore[method-assign]
    got: list[dict[str, Any]] = []

    async def long_poll() -> None:
        got.extend(await team.poll(wait=20))

    started = time.monotonic()
    async with anyio.create_task_group() as tg:
        waiter = reads.waiter()
        tg.start_soon(long_poll)
        await waiter.wait()  # the poll found nothing and waits
        message_id = await team.post("wake up")
    assert [d["message_id"] for d in got] == [message_id]
    assert time.monotonic() - started < 10
    # With nothing coming, a long poll answers [] when its time is up.
    started = time.monotonic()
    assert await team.poll(name="carol", wait=0.2) == []
    assert time.monotonic() - started >= 0.2


async def test_what_is_refused_is_refused_precisely(relay: RunningRelay, team: Team) -> None:
    await team.post("m")
    [delivery] = await team.poll()
    key = {"authorization": f"Bearer {relay.key}"}
    for method, path in (
        ("GET", "/v1/deliveries"),
        ("POST", f"/v1/deliveries/{delivery['id']}/ack"),
    ):
        refused = await team.http.request(method, path, headers=key, json=None)
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "agent_token_required"
    anonymous = await team.http.get("/v1/deliveries")
    assert anonymous.status_code == 401

    for unknown in ("nope", "del_x_1", delivery["id"].rsplit("_", 1)[0] + "_99"):
        missing = await team.settle(unknown, "ack")
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "delivery_not_found"
    # Another agent's delivery does not exist for carol.
    theirs = await team.settle(delivery["id"], "ack", name="carol")
    assert theirs.status_code == 404 and theirs.json()["error"]["code"] == "delivery_not_found"

    for query in ({"limit": 0}, {"limit": "x"}, {"wait": 61}, {"status": "lost"},
                  {"status": "acked", "wait": 1}):  # fmt: skip
        bad = await team.http.get("/v1/deliveries", params=query, headers=team.auth("bob"))
        assert bad.status_code == 400, query
        assert bad.json()["error"]["code"] == "invalid_request"
    for body in ({}, {"available_at": "2030-01-01T00:00:00"}, {"delay_ms": -1},
                 {"delay_ms": 5, "available_at": "2030-01-01T00:00:00Z"}, {"when": 1}):  # fmt: skip
        bad = await team.settle(delivery["id"], "defer", body)
        assert bad.status_code == 400, body
    assert (await team.settle(delivery["id"], "ack", {"extra": 1})).status_code == 400
    assert [d["id"] for d in await team.poll()] == [delivery["id"]]  # nothing changed


async def test_rest_settlements_and_a_nodes_cumulative_acks_share_one_cursor(
    relay: RunningRelay, team: Team
) -> None:
    async with raw_node(relay.url, relay.key) as (node, _):
        hosted = await node.request({"type": "agent.register", "name": "worker"})
        worker = hosted["data"]["token"]
        team.tokens["worker"] = worker
        await team.http.post("/v1/channels/general/join", headers=team.auth("worker"))
        for n in range(4):
            await team.post(f"m{n}")
        pushed = [await node.next_of("deliver") for _ in range(4)]
        assert [f["seq"] for f in pushed] == [1, 2, 3, 4]
        # The hosted agent settles 1 and 3 over REST; the node acks up to 2.
        for seq in (1, 3):
            settled = await team.settle(pushed[seq - 1]["delivery_id"], "ack", name="worker")
            assert settled.status_code == 200, settled.text
        reply = await node.request({"type": "delivery.ack", "agent": "worker", "up_to_seq": 2})
        assert reply["type"] == "reply"
        assert await relay.store.acked_seq(pushed[0]["agent_id"]) == 3
        replay = await node.request({"type": "delivery.ack", "agent": "worker", "up_to_seq": 3})
        assert (replay["type"], replay["code"]) == ("error", "ack_out_of_range")
        assert [d["seq"] for d in await team.poll(name="worker")] == [4]

    # Settled out of order past the cursor, it is not pushed again to a new connection.
    await team.post("m4")
    [d4, d5] = await team.poll(name="worker")
    assert (await team.settle(d5["id"], "ack", name="worker")).status_code == 200
    async with raw_node(relay.url, relay.key) as (node, _):
        again = await node.request({"type": "agent.register", "name": "worker"})
        assert again["data"]["delivery_ack_seq"] == 3
        assert (await node.next_of("deliver"))["seq"] == 4
        await node.send({"type": "delivery.ack", "agent": "worker", "up_to_seq": 4})
        reply = await node.request({"type": "node.heartbeat"})
        assert reply["type"] == "reply"
    assert await relay.store.acked_seq(d4["agent_id"]) == 5
    assert await team.poll(name="worker") == []


async def test_the_official_client_polls_acks_fails_and_defers(relay: RunningRelay) -> None:
    async with AsyncRelay(api_key=relay.key, base_url=relay.url) as client:
        alice = client.as_agent((await client.agents.register("alice")).token)
        bob = client.as_agent((await client.agents.register("bob")).token)
        await alice.channels.create("general")
        await bob.channels.join("general")
        sent = [await alice.send("general", f"m{n}") for n in range(3)]

        items = await bob.deliveries(limit=10)
        assert [(i.seq, i.message_id, i.status) for i in items] == [
            (1, sent[0].id, "queued"), (2, sent[1].id, "queued"), (3, sent[2].id, "queued"),
        ]  # fmt: skip
        assert items[0].message is not None and items[0].message.text == "m0"
        assert items[0].message.agent_name == "alice"

        acked = await bob.ack_delivery(items[0].id)
        assert (acked.id, acked.status) == (items[0].id, "acked")
        failed = await bob.fail_delivery(
            items[1].id, FailDeliveryRequest(error="no tools", retryable=False)
        )
        assert (failed.status, failed.error, failed.retryable) == ("failed", "no tools", False)
        due = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        deferred = await bob.defer_delivery(
            items[2].id, DeferDeliveryRequest(available_at=due, reason="later")
        )
        assert (deferred.status, deferred.reason) == ("queued", "later")
        assert deferred.available_at is not None

        assert await bob.deliveries() == []
        assert [i.id for i in await bob.deliveries(status="queued")] == [items[2].id]
        assert [i.id for i in await bob.deliveries(status="acked")] == [items[0].id]
        assert [i.id for i in await bob.deliveries(status="failed")] == [items[1].id]
        assert await bob.deliveries(status="dead_lettered") == []

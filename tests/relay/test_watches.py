"""Watches: a watcher is told once, by a DM from the relay, when an agent goes idle or
takes a delivery; watches survive a restart of the relay and still fire once."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import uvicorn

from agent_relay_runtime.relay.client import RelayClient, RelayError
from agent_relay_runtime.relay.rest import relay_app
from agent_relay_runtime.relay.sqlite import SqliteStore

from .conftest import RunningRelay
from .nodes import RawNode, raw_node

pytestmark = pytest.mark.anyio


def status(state: str, previous: str = "busy") -> dict[str, Any]:
    """A session's status.changed event, as a node forwards it."""
    return {"type": "status.changed", "previous": previous, "state": state,
            "reason": "test", "signal": "protocol", "harness": "claude"}  # fmt: skip


async def report(node: RawNode, agent: str, *events: dict[str, Any]) -> None:
    """Forward session events; they are in the log when the reply comes."""
    reply = await node.request({"type": "agent.events", "agent": agent, "events": list(events)})
    assert reply["type"] == "reply", reply


async def host(node: RawNode, name: str) -> str:
    """Host ``name`` on the node; its token."""
    return str((await node.request({"type": "agent.register", "name": name}))["data"]["token"])


async def dm_to(node: RawNode, agent: str) -> dict[str, Any]:
    """The next message pushed to ``agent``."""
    frame = await node.expect(lambda f: f.get("type") == "deliver" and f.get("agent") == agent)
    return dict(frame["payload"]["data"])


async def watch(
    client: RelayClient, agent: str, on: str, message_id: str | None = None
) -> dict[str, Any]:
    body = {"agent": agent, "on": on} | ({"message_id": message_id} if message_id else {})
    return dict(await client.call("POST", "/v1/watches", body))


async def relay_dms(client: RelayClient) -> list[dict[str, Any]]:
    """The messages of the agent's DM with the relay, oldest first."""
    conversations = await client.call("GET", "/v1/dm/conversations")
    found = [c for c in conversations if "relay" in c["participants"]]
    return list(await client.call("GET", f"/v1/dm/{found[0]['id']}/messages")) if found else []


async def test_an_idle_watch_fires_once_when_the_agent_goes_idle(relay: RunningRelay) -> None:
    async with raw_node(relay.url, relay.key) as (node, _):
        await host(node, "worker")
        boss = RelayClient(relay.url, await host(node, "boss"))
        try:
            await report(node, "worker", status("busy", "idle"))
            first = await watch(boss, "@worker", "idle")
            assert first["agent"] == "worker" and first["on"] == "idle"
            assert first["notify"] == "boss" and "message_id" not in first
            assert [w["watch_id"] for w in await boss.call("GET", "/v1/watches")] == [
                first["watch_id"]
            ]
            await report(node, "worker", status("idle"))
            notice = await dm_to(node, "boss")
            assert notice["text"] == "@worker is idle" and notice["from_name"] == "relay"
            assert notice["conversation_kind"] == "dm"
            meta = notice["metadata"]
            assert (meta["watch_id"], meta["agent"], meta["on"]) == (
                first["watch_id"], "worker", "idle",
            )  # fmt: skip
            assert meta["event"]["type"] == "status.changed"
            assert meta["event"]["data"]["state"] == "idle"
            assert meta["outcome"] == "met"
            assert await boss.call("GET", "/v1/watches") == []
            # Idle again: only a second watch fires, and the first one never again (the
            # log is read in order, so the second notice comes after anything the first
            # watch could still have caused).
            await report(node, "worker", status("busy", "idle"))
            second = await watch(boss, "worker", "idle")
            await report(node, "worker", status("idle"))
            assert (await dm_to(node, "boss"))["metadata"]["watch_id"] == second["watch_id"]
            dms = await relay_dms(boss)
            assert [m["metadata"]["watch_id"] for m in dms] == [
                first["watch_id"], second["watch_id"],
            ]  # fmt: skip
            fired, _ = await relay.store.events_after(relay.workspace_id, 0, types=["watch.fired"])
            assert [e.data["watch_id"] for e in fired] == [first["watch_id"], second["watch_id"]]
            assert fired[0].agent == "worker" and fired[0].data["notify"] == "boss"
            assert [e.data["outcome"] for e in fired] == ["met", "met"]
        finally:
            await boss.aclose()


async def test_a_watch_on_an_idle_agent_fires_at_once(relay: RunningRelay) -> None:
    async with raw_node(relay.url, relay.key) as (node, _):
        await host(node, "worker")
        boss = RelayClient(relay.url, await host(node, "boss"))
        try:
            # A session's first idle boundary is "ready": idle as far as watches go.
            await report(node, "worker", status("ready", "starting"))
            made = await watch(boss, "worker", "idle")
            notice = await dm_to(node, "boss")
            assert notice["metadata"]["watch_id"] == made["watch_id"]
            assert notice["metadata"]["event"]["data"]["state"] == "ready"
            assert await boss.call("GET", "/v1/watches") == []
        finally:
            await boss.aclose()


@contextlib.asynccontextmanager
async def scene(relay: RunningRelay) -> AsyncIterator[tuple[RawNode, RelayClient, RelayClient]]:
    """A node hosting ``worker`` and ``boss``, and ``alice`` (REST) in #general: the node,
    boss's client and alice's."""
    async with raw_node(relay.url, relay.key) as (node, _):
        await host(node, "worker")
        boss = RelayClient(relay.url, await host(node, "boss"))
        admin = RelayClient(relay.url, relay.key)
        alice = admin.as_agent((await admin.register("alice"))["token"])
        try:
            await alice.call("POST", "/v1/channels", {"name": "general"})
            yield node, boss, alice
        finally:
            for client in (boss, alice, admin):
                await client.aclose()


async def test_a_delivered_watch_fires_on_that_message_only(relay: RunningRelay) -> None:
    async with scene(relay) as (node, boss, alice):
        one = await alice.send("#general", "@worker first")
        two = await alice.send("#general", "@worker second")
        made = await watch(boss, "worker", "delivered", two["id"])
        assert made["message_id"] == two["id"]
        for seq in (1, 2):
            assert (await node.expect(lambda f, s=seq: f.get("seq") == s))["agent"] == "worker"
        for seq in (1, 2):
            done = {"type": "delivery.receipt", "agent": "worker", "seq": seq,
                    "status": "delivered", "evidence": "protocol_ack"}  # fmt: skip
            assert (await node.request(done))["type"] == "reply"
        notice = await dm_to(node, "boss")
        # The first receipt, read before the second, fired nothing.
        assert notice["text"] == f"@worker took message {two['id']}"
        assert notice["metadata"]["outcome"] == "met"
        event = notice["metadata"]["event"]
        assert event["type"] == "delivery.delivered"
        assert event["data"]["message_id"] == two["id"]
        # A receipt final already: the watch fires as it is made.
        again = await watch(boss, "worker", "delivered", one["id"])
        notice = await dm_to(node, "boss")
        assert notice["metadata"]["watch_id"] == again["watch_id"]
        assert notice["text"] == f"@worker took message {one['id']}"
        # A message the agent was never sent.
        with pytest.raises(RelayError) as refused:
            await watch(boss, "alice", "delivered", one["id"])
        assert (refused.value.status, refused.value.code) == (404, "delivery_not_found")


async def test_a_watch_on_an_agent_that_is_deregistered_fires_once_saying_it_is_gone(
    relay: RunningRelay,
) -> None:
    async with scene(relay) as (node, boss, alice):
        sent = await alice.send("#general", "@worker please look")
        await report(node, "worker", status("busy", "idle"))
        idle = await watch(boss, "worker", "idle")
        taken = await watch(boss, "worker", "delivered", sent["id"])
        await node.request({"type": "agent.deregister", "name": "worker"})
        notices = [await dm_to(node, "boss") for _ in range(2)]
        assert [n["metadata"]["watch_id"] for n in notices] == [
            idle["watch_id"], taken["watch_id"],
        ]  # fmt: skip
        assert [n["text"] for n in notices] == [
            "@worker is gone (deregistered by node node-1): it will not become idle",
            f"@worker is gone (deregistered by node node-1): it will not take message {sent['id']}",
        ]
        for notice in notices:
            meta = notice["metadata"]
            assert (meta["outcome"], meta["agent"], meta["notify"]) == (
                "gone", "worker", "boss",
            )  # fmt: skip
            assert meta["event"]["type"] == "agent.deregistered"
            assert meta["event"]["data"]["node"] == "node-1"
        assert await boss.call("GET", "/v1/watches") == []
        # Back, and idle: a new watch fires, the two fired ones never again (the log is
        # read in order: the new notice comes after anything they could still cause).
        await host(node, "worker")
        await report(node, "worker", status("busy", "idle"))
        again = await watch(boss, "worker", "idle")
        await report(node, "worker", status("idle"))
        back = await dm_to(node, "boss")
        assert (back["metadata"]["watch_id"], back["metadata"]["outcome"]) == (
            again["watch_id"], "met",
        )  # fmt: skip
        assert len(await relay_dms(boss)) == 3
        fired, _ = await relay.store.events_after(relay.workspace_id, 0, types=["watch.fired"])
        assert [e.data["outcome"] for e in fired] == ["gone", "gone", "met"]


async def test_a_watch_on_an_agent_gone_already_fires_at_once(relay: RunningRelay) -> None:
    async with scene(relay) as (node, boss, alice):
        sent = await alice.send("#general", "@worker please look")
        await node.expect(lambda f: f.get("type") == "deliver" and f.get("agent") == "worker")
        done = {"type": "delivery.receipt", "agent": "worker", "seq": 1,
                "status": "delivered", "evidence": "protocol_ack"}  # fmt: skip
        assert (await node.request(done))["type"] == "reply"
        # Idle, then gone: gone is what holds now.
        await report(node, "worker", status("idle"))
        await node.request({"type": "agent.deregister", "name": "worker"})
        idle = await watch(boss, "worker", "idle")
        notice = await dm_to(node, "boss")
        assert notice["metadata"]["watch_id"] == idle["watch_id"]
        assert notice["metadata"]["outcome"] == "gone"
        assert notice["text"].startswith("@worker is gone (")
        assert notice["text"].endswith("): it will not become idle")
        any_delivery = await watch(boss, "worker", "delivered")
        notice = await dm_to(node, "boss")
        assert notice["metadata"]["watch_id"] == any_delivery["watch_id"]
        assert notice["text"].endswith("): it will not take a delivery")
        # A message it took before it went: that is the news.
        taken = await watch(boss, "worker", "delivered", sent["id"])
        notice = await dm_to(node, "boss")
        assert notice["metadata"]["watch_id"] == taken["watch_id"]
        assert (notice["text"], notice["metadata"]["outcome"]) == (
            f"@worker took message {sent['id']}", "met",
        )  # fmt: skip
        assert await boss.call("GET", "/v1/watches") == []
        # Registered again (a new session, busy), it is not gone: a watch made now waits.
        await host(node, "worker")
        await report(node, "worker", status("busy", "starting"))
        pending = await watch(boss, "worker", "idle")
        listed = await boss.call("GET", "/v1/watches")
        assert [w["watch_id"] for w in listed] == [pending["watch_id"]]
        assert len(await relay_dms(boss)) == 3


async def test_an_agent_whose_node_went_away_is_not_gone(relay: RunningRelay) -> None:
    async with raw_node(relay.url, relay.key, "boss-node") as (home, _):
        boss = RelayClient(relay.url, await host(home, "boss"))
        try:
            async with raw_node(relay.url, relay.key, "worker-node") as (away, _):
                await host(away, "worker")
                await report(away, "worker", status("busy", "idle"))
                made = await watch(boss, "worker", "idle")
            await until_offline(relay, boss, "worker")
            # Offline, not gone: the watch waits, even when made now.
            later = await watch(boss, "worker", "idle")
            listed = await boss.call("GET", "/v1/watches")
            assert [w["watch_id"] for w in listed] == [made["watch_id"], later["watch_id"]]
            async with raw_node(relay.url, relay.key, "worker-node") as (away, _):
                await host(away, "worker")
                await report(away, "worker", status("idle"))
                notices = [await dm_to(home, "boss") for _ in range(2)]
            assert [n["metadata"]["watch_id"] for n in notices] == [
                made["watch_id"], later["watch_id"],
            ]  # fmt: skip
            assert {n["metadata"]["outcome"] for n in notices} == {"met"}
            assert len(await relay_dms(boss)) == 2
        finally:
            await boss.aclose()


async def until_offline(relay: RunningRelay, client: RelayClient, agent: str) -> None:
    """Wait (on the store's commits, no polling) until ``agent`` is offline."""
    with anyio.fail_after(10):
        while True:
            waiter = relay.store.committed.waiter()
            if (await client.call("GET", f"/v1/agents/{agent}"))["status"] == "offline":
                return
            await waiter.wait()


async def test_a_cancelled_watch_does_not_fire(relay: RunningRelay) -> None:
    async with raw_node(relay.url, relay.key) as (node, _):
        await host(node, "worker")
        boss = RelayClient(relay.url, await host(node, "boss"))
        try:
            await report(node, "worker", status("busy", "idle"))
            dropped = await watch(boss, "worker", "idle")
            kept = await watch(boss, "worker", "idle")
            gone = await boss.call("DELETE", f"/v1/watches/{dropped['watch_id']}")
            assert gone == {"watch_id": dropped["watch_id"], "cancelled": True}
            with pytest.raises(RelayError) as again:
                await boss.call("DELETE", f"/v1/watches/{dropped['watch_id']}")
            assert (again.value.status, again.value.code) == (404, "watch_not_found")
            listed = await boss.call("GET", "/v1/watches")
            assert [w["watch_id"] for w in listed] == [kept["watch_id"]]
            # One event for both: the dropped watch, older, would have fired first.
            await report(node, "worker", status("idle"))
            assert (await dm_to(node, "boss"))["metadata"]["watch_id"] == kept["watch_id"]
            assert len(await relay_dms(boss)) == 1
        finally:
            await boss.aclose()


async def test_bad_watches_are_refused(relay: RunningRelay) -> None:
    admin = RelayClient(relay.url, relay.key)
    boss = admin.as_agent((await admin.register("boss"))["token"])
    await admin.register("worker")
    # (caller, body, status, code, what the message names)
    cases: list[tuple[RelayClient, dict[str, Any], int, str, str]] = [
        (boss, {"agent": "ghost", "on": "idle"}, 404, "agent_not_found", "ghost"),
        (boss, {"agent": "worker", "on": "asleep"}, 400, "invalid_request", "on"),
        (boss, {"agent": "worker", "on": "idle", "when": "now"}, 400, "invalid_request", "when"),
        (boss, {"agent": "worker", "on": "idle", "message_id": "msg_x"}, 400, "invalid_request",
         "message_id"),
        (boss, {"agent": "worker", "on": "delivered", "message_id": "msg_x"}, 404,
         "message_not_found", "msg_x"),
        (boss, {"agent": "worker", "on": "idle", "notify": "boss"}, 400, "invalid_request",
         "notify: only a workspace-key caller"),
        (admin, {"agent": "worker", "on": "idle"}, 400, "invalid_request",
         "notify: a workspace-key caller names"),
        (admin, {"agent": "worker", "on": "idle", "notify": "ghost"}, 404, "agent_not_found",
         "ghost"),
    ]  # fmt: skip
    try:
        for client, body, status_code, code, says in cases:
            with pytest.raises(RelayError) as refused:
                await client.call("POST", "/v1/watches", body)
            assert (refused.value.status, refused.value.code) == (status_code, code), body
            assert says in refused.value.relay_message, refused.value.relay_message
        # The workspace key names who is told; it sees every watch, an agent its own.
        made = await admin.call("POST", "/v1/watches", {"agent": "worker", "on": "idle",
                                                        "notify": "boss"})  # fmt: skip
        assert made["notify"] == "boss"
        for client in (admin, boss):
            listed = await client.call("GET", "/v1/watches")
            assert [w["watch_id"] for w in listed] == [made["watch_id"]]
        worker = admin.as_agent((await admin.register("other"))["token"])
        assert await worker.call("GET", "/v1/watches") == []
        with pytest.raises(RelayError) as theirs:
            await worker.call("DELETE", f"/v1/watches/{made['watch_id']}")
        assert theirs.value.status == 404
        await worker.aclose()
    finally:
        await boss.aclose()
        await admin.aclose()


async def test_notices_need_the_name_relay_for_the_system(relay: RunningRelay) -> None:
    admin = RelayClient(relay.url, relay.key)
    try:
        boss = admin.as_agent((await admin.register("boss"))["token"])
        await admin.register("relay")  # an ordinary agent: it must not send the notices
        with pytest.raises(RelayError) as refused:
            await watch(boss, "boss", "idle")
        assert refused.value.status == 409 and "relay" in refused.value.relay_message
        await boss.aclose()
    finally:
        await admin.aclose()


# -- restarts ---------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def clients_at(url: str, token: str) -> AsyncIterator[RelayClient]:
    client = RelayClient(url, token)
    try:
        yield client
    finally:
        await client.aclose()


@contextlib.asynccontextmanager
async def serving(path: Path) -> AsyncIterator[tuple[str, SqliteStore]]:
    """The relay on the store at ``path`` (opened, and closed after), until the block
    ends; it answers once the watch service has caught up."""
    store = await SqliteStore.open(path)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    config = uvicorn.Config(relay_app(store), log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve, [sock])
            yield f"http://127.0.0.1:{sock.getsockname()[1]}", store
            server.should_exit = True
    finally:
        sock.close()
        await store.aclose()


async def new_workspace(path: Path) -> str:
    store = await SqliteStore.open(path)
    try:
        return (await store.create_workspace("test"))[1]
    finally:
        await store.aclose()


async def test_a_watch_survives_a_restart_and_fires_once(tmp_path: Path) -> None:
    path = tmp_path / "relay.db"
    key = await new_workspace(path)
    async with serving(path) as (url, _), raw_node(url, key) as (node, _):
        await host(node, "worker")
        token = await host(node, "boss")
        # Idle once, before the watch: reading the log again after the restart, that
        # event must not fire it.
        await report(node, "worker", status("idle"), status("busy", "idle"))
        async with clients_at(url, token) as boss:
            made = await watch(boss, "worker", "idle")
    async with serving(path) as (url, _), raw_node(url, key) as (node, _):
        await host(node, "worker")
        await host(node, "boss")
        async with clients_at(url, token) as boss:
            assert [w["watch_id"] for w in await boss.call("GET", "/v1/watches")] == [
                made["watch_id"]
            ]
            await report(node, "worker", status("idle"))
            assert (await dm_to(node, "boss"))["metadata"]["watch_id"] == made["watch_id"]
            assert len(await relay_dms(boss)) == 1


async def test_an_event_the_relay_stopped_before_notifying_fires_after_restart_once(
    tmp_path: Path,
) -> None:
    path = tmp_path / "relay.db"
    key = await new_workspace(path)
    async with serving(path) as (url, store):
        admin = RelayClient(url, key)
        token = (await admin.register("boss"))["token"]
        await admin.register("worker")
        await admin.aclose()
        async with clients_at(url, token) as boss:
            made = await watch(boss, "worker", "idle")
        workspace_id = (await store.list_watches(None))[0].workspace_id
    # The event is committed, and the relay is gone before any notice: as if it died
    # between the two.
    store = await SqliteStore.open(path)
    await store.append_events(workspace_id, "worker", [status("idle")])
    await store.aclose()
    for _ in range(2):  # and once more: no second notice
        async with serving(path) as (url, store), clients_at(url, token) as boss:
            # Ready means caught up: the notice is there already.
            [notice] = await relay_dms(boss)
            assert notice["text"] == "@worker is idle"
            assert notice["metadata"]["watch_id"] == made["watch_id"]
            assert await boss.call("GET", "/v1/watches") == []
            fired, _ = await store.events_after(workspace_id, 0, types=["watch.fired"])
            assert len(fired) == 1


async def test_an_agent_deregistered_while_the_relay_was_down_is_gone_once_after_restart(
    tmp_path: Path,
) -> None:
    path = tmp_path / "relay.db"
    key = await new_workspace(path)
    async with serving(path) as (url, store), raw_node(url, key) as (node, _):
        hosted = await node.request({"type": "agent.register", "name": "worker"})
        token = await host(node, "boss")
        await report(node, "worker", status("busy", "idle"))
        async with clients_at(url, token) as boss:
            made = await watch(boss, "worker", "idle")
        workspace_id = (await store.list_watches(None))[0].workspace_id
    # The deregistration is committed and the relay is gone before any notice: as if it
    # died between the two.
    store = await SqliteStore.open(path)
    await store.unbind_agent(hosted["data"]["agent_id"])
    await store.aclose()
    for _ in range(2):  # and once more: no second notice
        async with serving(path) as (url, store), clients_at(url, token) as boss:
            [notice] = await relay_dms(boss)
            assert notice["text"] == (
                "@worker is gone (deregistered by node node-1): it will not become idle"
            )
            assert (notice["metadata"]["watch_id"], notice["metadata"]["outcome"]) == (
                made["watch_id"], "gone",
            )  # fmt: skip
            assert await boss.call("GET", "/v1/watches") == []
            fired, _ = await store.events_after(workspace_id, 0, types=["watch.fired"])
            assert [e.data["outcome"] for e in fired] == ["gone"]


async def test_no_log_reads_while_no_watch_is_pending(relay: RunningRelay) -> None:
    """With no watch pending the service waits for one instead of reading the log after
    every commit; a watch made later still fires on the events after it."""
    store = relay.store
    reads = 0
    read_log = store.watched_events

    async def counted(cursor: int, limit: int = 500) -> Any:
        nonlocal reads
        reads += 1
        return await read_log(cursor, limit)

    store.watched_events = counted  # type: ignore[method-assign]
    async with raw_node(relay.url, relay.key) as (node, _):
        await host(node, "worker")
        boss = RelayClient(relay.url, await host(node, "boss"))
        try:
            before = reads
            for n in range(20):  # twenty commits, and their events
                await report(node, "worker", status("busy" if n % 2 else "idle"))
            assert reads - before <= 1  # at most the read that found no watch
            await watch(boss, "@worker", "idle")  # the worker's last status: busy
            await report(node, "worker", status("idle"))
            assert (await dm_to(node, "boss"))["text"] == "@worker is idle"
        finally:
            await boss.aclose()

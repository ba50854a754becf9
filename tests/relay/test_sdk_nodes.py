"""Nodes over REST (``/v1/nodes``) through the official relaycast-sdk client's
``AsyncRelay(...).nodes``, unmodified, and the node socket with a node token (raw
websockets): enrollment and its token, the roster with ``live``, agents bound to a node."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import pytest
from relay_sdk import AsyncRelay, NodeProvider, NodeRegistrationError, RelayError
from relay_sdk.models import BindAgentToNodeRequest, CreateNodeRequest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from agent_relay_runtime.node.link import node_socket_url
from agent_relay_runtime.relay.store import hash_secret

from .conftest import RunningRelay
from .nodes import RawNode, raw_node

pytestmark = pytest.mark.anyio


def ws_url(relay: RunningRelay) -> str:
    return relay.url.replace("http://", "ws://", 1) + "/v1/node/ws"


@asynccontextmanager
async def token_node(
    relay: RunningRelay, token: str, name: str, **register: Any
) -> AsyncIterator[tuple[RawNode, dict[str, Any]]]:
    """A raw node on the socket with a node token as a bearer header, registered as
    ``name``: the node and the answer to its ``node.register``."""
    headers = {"Authorization": f"Bearer {token}"}
    async with connect(ws_url(relay), additional_headers=headers) as ws:
        node = RawNode(ws)
        answer = await node.request({"type": "node.register", "name": name, **register})
        yield node, answer


async def until_offline(relay: RunningRelay, client: AsyncRelay, name: str) -> None:
    """Wait (on the store's commits, no polling) until the node is no longer live."""
    with anyio.fail_after(10):
        while True:
            waiter = relay.store.committed.waiter()
            if not (await client.nodes.get(name)).live:
                return
            await waiter.wait()


async def test_enrolling_gives_a_token_once_and_the_roster_shows_the_node_live(
    relay: RunningRelay,
) -> None:
    async with AsyncRelay(api_key=relay.key, base_url=relay.url) as client:
        created = await client.nodes.create(
            CreateNodeRequest(
                name="builder", capabilities=["spawn:claude"], max_agents=4, tags=["gpu"],
                version="1.2.0",
            )
        )  # fmt: skip
        assert created.token.startswith("nt_live_") and len(created.token) >= 8 + 32
        assert (created.name, created.kind, created.role, created.version) == (
            "builder", "ws", "broker", "1.2.0",
        )  # fmt: skip
        assert (created.live, created.status, created.active_agents, created.max_agents) == (
            False, "offline", 0, 4,
        )  # fmt: skip
        assert [c.name for c in created.capabilities] == ["spawn:claude"]
        assert created.tags == ["gpu"]
        # Shown once: the roster never carries it, the store keeps only its hash.
        async with httpx.AsyncClient(base_url=relay.url) as http:
            raw = await http.get(
                "/v1/nodes/builder", headers={"authorization": f"Bearer {relay.key}"}
            )
        assert raw.status_code == 200 and "token" not in raw.json()["data"]
        database = sqlite3.connect(relay.store.path)
        try:
            rows = database.execute("SELECT * FROM nodes").fetchall()
        finally:
            database.close()
        assert hash_secret(created.token) in rows[0] and created.token not in rows[0]

        got = await client.nodes.get("builder")
        assert (got.id, got.live, got.status) == (created.id, False, "offline")
        assert [n.name for n in await client.nodes.list()] == ["builder"]
        assert [n.name for n in await client.nodes.list(capability="spawn:claude")] == ["builder"]
        assert await client.nodes.list(capability="spawn:codex") == []
        assert [n.name for n in await client.nodes.list(name="builder")] == ["builder"]
        assert await client.nodes.list(name="other") == []

        async with token_node(relay, created.token, "builder", node_id=created.id) as (node, ok):
            assert ok["type"] == "reply"
            assert (ok["data"]["name"], ok["data"]["node_id"]) == ("builder", created.id)
            live = await client.nodes.get("builder")
            assert (live.live, live.status, live.last_heartbeat_at is not None) == (
                True, "online", True,
            )  # fmt: skip
            assert [n.live for n in await client.nodes.list()] == [True]
            # An agent it hosts over its socket is on its list while it is connected.
            hosted = await node.request({"type": "agent.register", "name": "worker"})
            assert hosted["data"]["token"].startswith("at_live_")
            [entry] = await client.nodes.list_agents("builder")
            assert (entry.agent_name, entry.node_name, entry.status) == (
                "worker", "builder", "hosted",
            )  # fmt: skip
            assert (await client.nodes.get("builder")).active_agents == 1
        await until_offline(relay, client, "builder")
        gone = await client.nodes.get("builder")
        assert (gone.live, gone.status, gone.active_agents) == (False, "offline", 0)
        assert await client.nodes.list_agents("builder") == []


async def test_agents_are_bound_listed_moved_and_unbound(relay: RunningRelay) -> None:
    async with AsyncRelay(api_key=relay.key, base_url=relay.url) as client:
        await client.nodes.create(CreateNodeRequest(name="builder", max_agents=2))
        spare = await client.nodes.create(CreateNodeRequest(name="spare"))
        for name in ("alice", "bob", "carol"):
            await client.agents.register(name)

        alice = await client.nodes.bind_agent(
            "builder", BindAgentToNodeRequest(agent_name="alice", session_ref="s-1", priority=5)
        )
        assert (alice.agent_name, alice.node_name, alice.node_kind, alice.node_role) == (
            "alice", "builder", "ws", "broker",
        )  # fmt: skip
        assert (alice.status, alice.session_ref, alice.priority, alice.updated_at) == (
            "active", "s-1", 5, None,
        )  # fmt: skip
        await client.nodes.bind_agent("builder", BindAgentToNodeRequest(agent_name="bob"))
        listed = await client.nodes.list_agents("builder")
        assert [(b.agent_name, b.priority) for b in listed] == [("alice", 5), ("bob", 0)]
        assert (await client.nodes.get("builder")).active_agents == 2
        # Full: max_agents 2.
        with pytest.raises(RelayError) as full:
            await client.nodes.bind_agent("builder", BindAgentToNodeRequest(agent_name="carol"))
        assert (full.value.status, full.value.code) == (409, "node_capacity_exceeded")
        # Again to the same node: updated in place.
        again = await client.nodes.bind_agent(
            "builder", BindAgentToNodeRequest(agent_name="alice", priority=7)
        )
        assert (again.id, again.priority, again.session_ref) == (alice.id, 7, None)
        assert again.updated_at is not None
        # To another node: moved (one node per agent).
        moved = await client.nodes.bind_agent("spare", BindAgentToNodeRequest(agent_name="alice"))
        assert (moved.node_id, moved.node_name) == (spare.id, "spare") and moved.id != alice.id
        assert [b.agent_name for b in await client.nodes.list_agents("builder")] == ["bob"]
        assert [b.agent_name for b in await client.nodes.list_agents("spare")] == ["alice"]

        await client.nodes.unbind_agent("builder", "bob")
        assert await client.nodes.list_agents("builder") == []
        with pytest.raises(RelayError) as twice:
            await client.nodes.unbind_agent("builder", "bob")
        assert (twice.value.status, twice.value.code) == (404, "node_agent_binding_not_found")


async def test_unknown_nodes_and_agents_are_404(relay: RunningRelay) -> None:
    async with AsyncRelay(api_key=relay.key, base_url=relay.url) as client:
        await client.nodes.create(CreateNodeRequest(name="builder"))
        await client.agents.register("alice")
        calls: list[Callable[[], Awaitable[Any]]] = [
            lambda: client.nodes.get("ghost"),
            lambda: client.nodes.list_agents("ghost"),
            lambda: client.nodes.bind_agent("ghost", BindAgentToNodeRequest(agent_name="alice")),
            lambda: client.nodes.unbind_agent("ghost", "alice"),
        ]
        for call in calls:
            with pytest.raises(RelayError) as unknown:
                await call()
            assert (unknown.value.status, unknown.value.code) == (404, "node_not_found")
        with pytest.raises(RelayError) as nobody:
            await client.nodes.bind_agent("builder", BindAgentToNodeRequest(agent_name="zed"))
        assert (nobody.value.status, nobody.value.code) == (404, "agent_not_found")


async def test_a_direct_node_hosts_one_agent(relay: RunningRelay) -> None:
    async with AsyncRelay(api_key=relay.key, base_url=relay.url) as client:
        direct = await client.nodes.create(CreateNodeRequest(name="solo", role="direct"))
        assert (direct.role, direct.max_agents) == ("direct", 1)
        await client.agents.register("alice")
        await client.agents.register("bob")
        await client.nodes.bind_agent("solo", BindAgentToNodeRequest(agent_name="alice"))
        with pytest.raises(RelayError) as full:
            await client.nodes.bind_agent("solo", BindAgentToNodeRequest(agent_name="bob"))
        assert full.value.code == "node_capacity_exceeded"
        with pytest.raises(RelayError) as wider:
            await client.nodes.create(CreateNodeRequest(name="duo", role="direct", max_agents=2))
        assert (wider.value.status, wider.value.code) == (400, "direct_node_capacity_exceeded")


async def test_on_the_socket_the_tighter_of_the_enrolled_and_declared_max_agents_holds(
    relay: RunningRelay,
) -> None:
    async with AsyncRelay(api_key=relay.key, base_url=relay.url) as client:
        # (enrolled, declared in node.register, the agents it may host)
        for enrolled, declared, room in ((2, 0, 2), (2, None, 2), (3, 2, 2), (2, 3, 2)):
            created = await client.nodes.create(
                CreateNodeRequest(name="builder", max_agents=enrolled)
            )
            register = {} if declared is None else {"max_agents": declared}
            async with token_node(relay, created.token, "builder", **register) as (node, _):
                for n in range(room):
                    hosted = await node.request({"type": "agent.register", "name": f"w{n}"})
                    assert hosted["type"] == "reply"
                full = await node.request({"type": "agent.register", "name": "extra"})
                case = (enrolled, declared)
                assert (full["type"], full["code"]) == ("error", "node_capacity_exceeded"), case
            await until_offline(relay, client, "builder")


async def test_enrolling_again_replaces_the_token_and_a_revoked_one_is_refused(
    relay: RunningRelay,
) -> None:
    async with AsyncRelay(api_key=relay.key, base_url=relay.url) as client:
        first = await client.nodes.create(CreateNodeRequest(name="builder", tags=["a"]))
        second = await client.nodes.create(CreateNodeRequest(name="builder", version="2"))
        assert second.id == first.id and second.token != first.token
        assert (second.tags, second.version) == (["a"], "2")  # kept; given: replaced
        assert [n.id for n in await client.nodes.list()] == [first.id]
        for token in (first.token, "nt_live_unknown"):
            for url in (node_socket_url(relay.url, token), ws_url(relay)):
                headers = {"Authorization": f"Bearer {token}"}
                with pytest.raises(InvalidStatus) as refused:
                    async with connect(url, additional_headers=headers):
                        pass
                assert refused.value.response.status_code == 403
        # The SDK's way, the token in the query, works with the current token.
        async with connect(node_socket_url(relay.url, second.token)) as ws:
            node = RawNode(ws)
            answer = await node.request({"type": "node.register", "name": "builder"})
            assert answer["type"] == "reply"
            # Not while it is connected: a running node's identity stays its own.
            with pytest.raises(RelayError) as live:
                await client.nodes.create(CreateNodeRequest(name="builder"))
            assert (live.value.status, live.value.code) == (409, "node_live")
        # Not a REST credential.
        async with httpx.AsyncClient(base_url=relay.url) as http:
            rest = await http.get("/v1/nodes", headers={"authorization": f"Bearer {second.token}"})
        assert rest.status_code == 401


async def test_a_node_token_connects_as_its_own_node_only(relay: RunningRelay) -> None:
    async with AsyncRelay(api_key=relay.key, base_url=relay.url) as client:
        created = await client.nodes.create(CreateNodeRequest(name="builder"))
        await client.nodes.create(CreateNodeRequest(name="other"))
        async with token_node(relay, created.token, "other") as (node, refused):
            assert (refused["type"], refused["code"]) == ("error", "node_name_mismatch")
            assert "'builder'" in refused["message"] and "'other'" in refused["message"]
            await node.ws.wait_closed()
        async with token_node(relay, created.token, "builder", node_id="node_x") as (node, bad):
            assert (bad["type"], bad["code"]) == ("error", "node_id_mismatch")
            await node.ws.wait_closed()
        assert [(n.name, n.live) for n in await client.nodes.list()] == [
            ("builder", False), ("other", False),
        ]  # fmt: skip


async def test_a_node_on_the_workspace_key_is_on_the_roster_and_can_be_enrolled(
    relay: RunningRelay,
) -> None:
    async with AsyncRelay(api_key=relay.key, base_url=relay.url) as client:
        caps = [{"name": "run:test", "kind": "run"}]
        async with raw_node(relay.url, relay.key, "laptop", capabilities=caps):
            [laptop] = await client.nodes.list(capability="run:test")
            assert (laptop.name, laptop.live, laptop.handlers_live) == ("laptop", True, True)
            async with httpx.AsyncClient(base_url=relay.url) as http:
                raw = await http.get(
                    "/v1/nodes/laptop", headers={"authorization": f"Bearer {relay.key}"}
                )
            assert raw.json()["data"]["enrolled"] is False
        await until_offline(relay, client, "laptop")
        enrolled = await client.nodes.create(CreateNodeRequest(name="laptop"))
        assert enrolled.id == laptop.id and enrolled.token.startswith("nt_live_")
        async with token_node(relay, enrolled.token, "laptop") as (_, answer):
            assert answer["data"]["node_id"] == laptop.id


async def test_a_pinned_node_id_is_kept_and_never_takes_another_nodes_name(
    relay: RunningRelay,
) -> None:
    async with AsyncRelay(api_key=relay.key, base_url=relay.url) as client:
        pinned = await client.nodes.create(CreateNodeRequest(name="a", node_id="node_pinned"))
        assert pinned.id == "node_pinned"
        renamed = await client.nodes.create(CreateNodeRequest(name="b", node_id="node_pinned"))
        assert (renamed.id, renamed.name) == ("node_pinned", "b")
        other = await client.nodes.create(CreateNodeRequest(name="c"))
        with pytest.raises(RelayError) as taken:
            await client.nodes.create(CreateNodeRequest(name="c", node_id="node_pinned"))
        assert (taken.value.status, taken.value.code) == (409, "node_name_conflict")
        assert [(n.id, n.name) for n in await client.nodes.list()] == [
            ("node_pinned", "b"), (other.id, "c"),
        ]  # fmt: skip


async def test_bad_bodies_and_callers_are_refused_precisely(relay: RunningRelay) -> None:
    key = {"Authorization": f"Bearer {relay.key}"}
    async with AsyncRelay(api_key=relay.key, base_url=relay.url) as client:
        agent = await client.agents.register("alice")
    cases: list[tuple[dict[str, Any] | bytes, int, str]] = [
        (b"{nope", 400, "invalid_json"),
        ({}, 400, "invalid_request"),
        ({"name": ""}, 400, "invalid_request"),
        ({"name": "a/b"}, 400, "invalid_request"),
        ({"name": "#a"}, 400, "invalid_request"),
        ({"name": "a", "colour": "red"}, 400, "invalid_request"),
        ({"name": "a", "kind": "carrier-pigeon"}, 400, "invalid_request"),
        ({"name": "a", "max_agents": -1}, 400, "invalid_request"),
        ({"name": "a", "capabilities": "spawn"}, 400, "invalid_request"),
        ({"name": "a", "kind": "http_push"}, 400, "unsupported_node_kind"),
        ({"name": "a", "kind": "poll"}, 400, "unsupported_node_kind"),
        ({"name": "a", "delivery": {"url": "https://x"}}, 400, "unsupported_node_delivery"),
        ({"name": "a", "delivery_adapter": "http.basic.v1"}, 400, "unsupported_node_delivery"),
    ]
    async with httpx.AsyncClient(base_url=relay.url, headers=key) as http:
        for body, status, code in cases:
            sent = body if isinstance(body, bytes) else json.dumps(body).encode()
            answer = await http.post("/v1/nodes", content=sent)
            assert (answer.status_code, answer.json()["error"]["code"]) == (status, code), body
        assert (await http.get("/v1/nodes")).json()["data"] == []  # nothing written

        assert (await http.post("/v1/nodes", json={"name": "builder"})).status_code == 201
        for bind in ({}, {"agent_name": ""}, {"agent_name": "alice", "priority": "high"}):
            answer = await http.post("/v1/nodes/builder/agents", json=bind)
            assert (answer.status_code, answer.json()["error"]["code"]) == (400, "invalid_request")
        assert (await http.get("/v1/nodes/builder/agents")).json()["data"] == []

        # An agent token reads the roster but does not manage nodes.
        as_agent = {"Authorization": f"Bearer {agent.token}"}
        writes = [
            ("POST", "/v1/nodes", {"name": "mine"}),
            ("POST", "/v1/nodes/builder/agents", {"agent_name": "alice"}),
            ("DELETE", "/v1/nodes/builder/agents/alice", None),
        ]
        for method, path, body in writes:
            answer = await http.request(method, path, json=body, headers=as_agent)
            assert answer.status_code == 403
            assert answer.json()["error"]["code"] == "workspace_key_required"
        roster = await http.get("/v1/nodes", headers=as_agent)
        assert [n["name"] for n in roster.json()["data"]] == ["builder"]


async def test_the_sdks_node_provider_connects_with_its_node_token(relay: RunningRelay) -> None:
    async with AsyncRelay(api_key=relay.key, base_url=relay.url) as client:
        created = await client.nodes.create(CreateNodeRequest(name="builder"))
        provider = NodeProvider(
            base_url=relay.url, node_token=created.token, node_id=created.id,
            node_name="builder", provider={"name": "test"}, reconnect_jitter=False,
        )  # fmt: skip
        async with anyio.create_task_group() as tg:
            tg.start_soon(provider.serve)
            registered = await provider.wait_registered()
            assert (registered["node_id"], registered["accepted_capabilities"]) == (created.id, [])
            assert (await client.nodes.get("builder")).live
            await provider.stop()
        await until_offline(relay, client, "builder")

        impostor = NodeProvider(
            base_url=relay.url, node_token=created.token, node_id=created.id,
            node_name="someone-else", provider={"name": "test"},
        )  # fmt: skip
        with pytest.raises(NodeRegistrationError) as refused:
            await impostor.serve()  # a refused registration is final: no reconnect
        assert refused.value.code == "node_name_mismatch"
        await impostor.stop()  # closes its REST client

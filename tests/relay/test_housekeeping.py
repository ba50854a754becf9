"""Housekeeping over a real embedded relay: agents whose REST heartbeats stop go offline
(not those a connected node hosts), abandoned uploads are deleted with their bytes, and
the sweeps run by themselves while the relay serves."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import anyio
import httpx
import pytest
import structlog
import uvicorn

from agent_relay_runtime.relay.client import RelayClient, RelayError
from agent_relay_runtime.relay.housekeeping import Housekeeping, HousekeepingConfig
from agent_relay_runtime.relay.rest import relay_app
from agent_relay_runtime.relay.sqlite import SqliteStore
from agent_relay_runtime.relay.store import Agent, Store

from .nodes import raw_node

pytestmark = pytest.mark.anyio

TIMEOUT = 90.0  # the defaults'
TTL = 3600.0


@dataclass
class Relay:
    url: str
    key: str
    workspace_id: str
    store: SqliteStore
    housekeeping: Housekeeping
    files_dir: Path


@contextlib.asynccontextmanager
async def serving(tmp_path: Path, config: HousekeepingConfig) -> AsyncIterator[Relay]:
    """The relay app under uvicorn on loopback, with ``config``'s limits."""
    store = await SqliteStore.open(tmp_path / "relay.db")
    workspace, key = await store.create_workspace("test")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    app = relay_app(store, housekeeping=config)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve, [sock])
            housekeeping = app.state.housekeeping
            yield Relay(url, key, workspace.id, store, housekeeping, tmp_path / "relay-files")
            server.should_exit = True
    finally:
        sock.close()
        await store.aclose()


@pytest.fixture
async def relay(tmp_path: Path) -> AsyncIterator[Relay]:
    """The defaults: the periodic sweeps find nothing stale during a test; the tests sweep
    themselves, at the times they choose."""
    async with serving(tmp_path, HousekeepingConfig()) as running:
        yield running


async def agent(relay: Relay, name: str) -> RelayClient:
    registered = await RelayClient(relay.url, relay.key).register(name)
    return RelayClient(relay.url, registered["token"])


async def heartbeat(client: RelayClient) -> datetime:
    """The agent online, seen now; when the relay saw it."""
    me = await client.call("POST", "/v1/agents/heartbeat", {})
    assert me["status"] == "online"
    return datetime.fromisoformat(me["last_seen"])


async def status(relay: Relay, name: str) -> tuple[str, str | None]:
    found = await relay.store.agent_by_name(relay.workspace_id, name)
    assert found is not None
    return found.status, found.last_seen


def names(agents: list[Agent]) -> list[str]:
    return sorted(a.name for a in agents)


async def test_an_agent_whose_heartbeats_stop_goes_offline_after_the_timeout(
    relay: Relay,
) -> None:
    quiet, steady = await agent(relay, "quiet"), await agent(relay, "steady")
    quiet_seen = await heartbeat(quiet)
    with anyio.fail_after(10):  # steady heartbeats again, after quiet's last one
        while (steady_seen := await heartbeat(steady)) <= quiet_seen:
            pass
    quiet_last = (await status(relay, "quiet"))[1]

    # Seen exactly the timeout ago is not older than the timeout: both stay online.
    assert (
        names((await relay.housekeeping.sweep(quiet_seen + timedelta(seconds=TIMEOUT))).offline)
        == []
    )
    assert (await status(relay, "quiet"))[0] == "online"

    swept = await relay.housekeeping.sweep(steady_seen + timedelta(seconds=TIMEOUT))
    assert names(swept.offline) == ["quiet"]
    assert await status(relay, "quiet") == ("offline", quiet_last)  # last_seen kept
    assert (await status(relay, "steady"))[0] == "online"
    me = await quiet.call("GET", "/v1/agent")
    assert me["status"] == "offline"

    # steady stayed only because it heartbeated within the timeout.
    later = steady_seen + timedelta(seconds=TIMEOUT, milliseconds=1)
    assert names((await relay.housekeeping.sweep(later)).offline) == ["steady"]
    assert names((await relay.housekeeping.sweep(later)).offline) == []  # once
    # A heartbeat brings it back.
    await heartbeat(quiet)
    assert (await status(relay, "quiet"))[0] == "online"


async def test_a_node_hosted_agent_stays_online_while_its_node_is_connected(
    relay: Relay,
) -> None:
    far = datetime.now(UTC) + timedelta(days=1)
    rest = await agent(relay, "rest")
    await heartbeat(rest)
    # An agent of a node that is not connected (the relay stopped under it): online in
    # the store, nothing keeps it so.
    gone = await relay.store.node_online(relay.workspace_id, "node-gone", capabilities=[])
    ghost, _, _ = await relay.store.bind_agent(relay.workspace_id, "ghost", gone.id)
    assert ghost.status == "online"
    async with raw_node(relay.url, relay.key) as (node, _):
        reply = await node.request({"type": "agent.register", "name": "worker"})
        assert reply["type"] == "reply", reply
        swept = await relay.housekeeping.sweep(far)
        assert names(swept.offline) == ["ghost", "rest"]
        assert (await status(relay, "worker"))[0] == "online"
        assert names((await relay.housekeeping.sweep(far)).offline) == []
    # Its node gone, the worker is offline (the node socket says so, not the sweep).
    with anyio.fail_after(10):
        while (await status(relay, "worker"))[0] != "offline":
            with anyio.move_on_after(0.2):
                await relay.store.committed.wait()


async def upload(client: RelayClient, name: str, data: bytes | None) -> str:
    """A file declared, and its bytes PUT if any; its id."""
    declared = await client.call(
        "POST", "/v1/files/upload", {"filename": name, "content_type": "text/plain", "size": 3}
    )
    if data is not None:
        async with httpx.AsyncClient() as raw:
            put = await raw.put(
                declared["upload_url"], content=data,
                headers={"authorization": f"Bearer {client.token}"},
            )  # fmt: skip
            assert put.status_code == 200, put.text
    return str(declared["file_id"])


async def file_status(relay: Relay, file_id: str) -> str:
    record = await relay.store.file_by_id(file_id)
    assert record is not None
    return record.status


async def test_an_abandoned_upload_is_deleted_with_its_bytes_a_complete_file_stays(
    relay: Relay,
) -> None:
    alice = await agent(relay, "alice")
    partial = await upload(alice, "partial.txt", b"abc")
    empty = await upload(alice, "empty.txt", None)
    done = await upload(alice, "done.txt", b"xyz")
    await alice.call("POST", f"/v1/files/{done}/complete", {})
    # What an upload leaves when the relay stops while writing it.
    stray = relay.files_dir / f".{partial}.dead.part"
    stray.write_bytes(b"a")
    assert (relay.files_dir / partial).exists()

    # Young uploads are left alone.
    assert (await relay.housekeeping.sweep(datetime.now(UTC))).abandoned == []
    assert await file_status(relay, partial) == "pending"

    far = datetime.now(UTC) + timedelta(seconds=TTL, minutes=1)
    swept = await relay.housekeeping.sweep(far)
    assert sorted(f.id for f in swept.abandoned) == sorted([partial, empty])
    for file_id in (partial, empty):
        assert await file_status(relay, file_id) == "deleted"
        with pytest.raises(RelayError) as missing:
            await alice.call("GET", f"/v1/files/{file_id}")
        assert missing.value.status == 404
    assert not (relay.files_dir / partial).exists() and not stray.exists()
    assert [f["file_id"] for f in await alice.call("GET", "/v1/files")] == [done]
    assert (relay.files_dir / done).read_bytes() == b"xyz"
    assert await file_status(relay, done) == "complete"
    assert (await relay.housekeeping.sweep(far)).abandoned == []  # once


async def test_the_sweeps_run_by_themselves_while_the_relay_serves(tmp_path: Path) -> None:
    config = HousekeepingConfig(presence_timeout=0.3, upload_ttl=0.3)
    assert config.interval == pytest.approx(0.1)
    async with serving(tmp_path, config) as relay:
        bob = await agent(relay, "bob")
        await heartbeat(bob)
        file_id = await upload(bob, "notes.txt", b"abc")

        async def swept() -> bool:
            return (
                (await status(relay, "bob"))[0] == "offline"
                and await file_status(relay, file_id) == "deleted"
                and not (relay.files_dir / file_id).exists()
            )

        with anyio.fail_after(10):
            while not await swept():
                with anyio.move_on_after(0.1):
                    await relay.store.committed.wait()


class FailingOnce:
    """The store, but its first `expire_presence` fails."""

    def __init__(self, store: SqliteStore) -> None:
        self.store, self.failed = store, False

    async def expire_presence(self, seen_before: str, live_nodes: Any) -> list[Agent]:
        if not self.failed:
            self.failed = True
            raise OSError("disk I/O error")
        return await self.store.expire_presence(seen_before, live_nodes)

    async def abandon_uploads(self, declared_before: str) -> Any:
        return await self.store.abandon_uploads(declared_before)


async def test_a_job_that_fails_is_logged_and_the_next_sweep_runs_it(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "relay.db")
    try:
        workspace, _ = await store.create_workspace("test")
        carol, _ = await store.register_agent(workspace.id, "carol")
        await store.set_presence(carol.id, "online")
        file = await store.create_file(workspace.id, carol.id, "a.txt", "text/plain", 1, "x")
        dropped: list[str] = []

        async def drop(file_id: str) -> None:
            dropped.append(file_id)

        keeper = Housekeeping(cast(Store, FailingOnce(store)), lambda: [], drop)
        far = datetime.now(UTC) + timedelta(days=1)
        with structlog.testing.capture_logs() as logs:
            first = await keeper.sweep(far)
            second = await keeper.sweep(far)
        # The uploads job ran although the presence job failed; the next sweep did both.
        assert first.offline == [] and [f.id for f in first.abandoned] == [file.id]
        assert dropped == [file.id]
        assert names(second.offline) == ["carol"] and second.abandoned == []
        events = [(e["event"], e.get("job")) for e in logs]
        assert events == [
            ("housekeeping_failed", "presence"),
            ("upload_abandoned", None),
            ("agent_offline", None),
        ]
        failed = next(e for e in logs if e["event"] == "housekeeping_failed")
        assert "disk I/O error" in failed["error"]
    finally:
        await store.aclose()

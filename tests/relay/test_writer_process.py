"""The store's writer process: it ends with the store, a writer that dies is replaced,
and a write it took down with it fails saying its outcome is unknown."""

from __future__ import annotations

import os
import sqlite3
from functools import partial
from pathlib import Path

import anyio
import psutil
import pytest

from agent_relay_runtime.relay.sqlite import SqliteStore
from agent_relay_runtime.relay.sqlite.base import MAX_BATCH, migrate
from agent_relay_runtime.relay.sqlite.writer import Answer, Change, commit, connect
from agent_relay_runtime.relay.store import StoreError

pytestmark = pytest.mark.anyio


def _exit_now(code: int, conn: sqlite3.Connection) -> None:
    """A change that takes the writer process down in the middle of its transaction."""
    os._exit(code)


async def test_the_writer_ends_with_the_store(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "relay.db")
    writer = psutil.Process(store._writer.pid)
    assert writer.ppid() == os.getpid()
    await store.create_workspace("w")
    await store.aclose()
    assert not writer.is_running()


async def test_a_killed_writer_is_replaced_and_nothing_is_lost(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "relay.db")
    try:
        workspace, _ = await store.create_workspace("w")
        first = store._writer._link
        assert first is not None
        first.proc.kill()
        await first.proc.wait()
        # Nothing reached the dead writer: the write goes to a new one and succeeds.
        agent, _ = await store.register_agent(workspace.id, "alice")
        assert store._writer.pid not in (None, first.proc.pid)
        assert (await store.agent_by_name(workspace.id, "alice")) == agent
        assert await store.workspace_by_id(workspace.id) == workspace
    finally:
        await store.aclose()


async def test_a_write_the_writer_died_with_fails_and_the_next_one_works(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "relay.db")
    try:
        workspace, _ = await store.create_workspace("w")
        with pytest.raises(StoreError, match="whether it was committed is unknown"):
            await store._write(partial(_exit_now, 3))
        agent, _ = await store.register_agent(workspace.id, "bob")
        assert (await store.agent_by_name(workspace.id, "bob")) == agent
    finally:
        await store.aclose()


async def test_reads_cannot_write(tmp_path: Path) -> None:
    """Only the writer process writes: the relay's own connection is query_only."""
    store = await SqliteStore.open(tmp_path / "relay.db")
    try:
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            await store._read(lambda conn: conn.execute("DELETE FROM workspaces"))
    finally:
        await store.aclose()


async def test_deliveries_are_handed_on_in_seq_order(tmp_path: Path) -> None:
    """Messages posted at once, committed in pipelined batches: the deliveries reach the
    listeners (the node pushes) in each agent's seq order, none missing."""
    store = await SqliteStore.open(tmp_path / "relay.db")
    try:
        workspace, _ = await store.create_workspace("w")
        sender, _ = await store.register_agent(workspace.id, "sender")
        agents = [(await store.register_agent(workspace.id, f"a{n}"))[0] for n in range(3)]
        channel = await store.create_channel(workspace.id, "general")
        seen: dict[str, list[int]] = {agent.id: [] for agent in agents}
        store.on_deliveries.append(
            lambda deliveries, _: [seen[d.agent_id].append(d.seq) for d in deliveries]
        )

        async def post(n: int) -> None:
            await store.post_message(
                workspace_id=workspace.id, channel_id=channel.id, sender_id=sender.id,
                text=f"m {n}", targets=[agent.id for agent in agents],
            )  # fmt: skip

        async with anyio.create_task_group() as tg:
            for n in range(120):
                tg.start_soon(post, n)
        assert all(seqs == list(range(1, 121)) for seqs in seen.values()), seen
    finally:
        await store.aclose()


def _note(text: str, fail: bool, conn: sqlite3.Connection) -> str:
    conn.execute("INSERT INTO notes (text) VALUES (?)", (text,))
    if fail:
        raise ValueError(f"{text} refused")
    return text


def _make_notes(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE notes (text TEXT NOT NULL)")


async def test_a_batch_holds_at_most_max_batch_changes_and_the_rest_follow_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Many writes at once go in batches of at most MAX_BATCH (so the writer commits one
    while the relay handles the answer of the last); each caller gets its own result."""
    store = await SqliteStore.open(tmp_path / "relay.db")
    try:
        await store._write(_make_notes)
        sizes: list[int] = []
        commit = store._writer.commit

        async def counted(batch: list[Change]) -> Answer:
            sizes.append(len(batch))
            return await commit(batch)

        monkeypatch.setattr(store._writer, "commit", counted)
        got: dict[int, str] = {}

        async def write(n: int) -> None:
            got[n] = await store._write(partial(_note, f"n{n}", False))

        writes = 4 * MAX_BATCH
        async with anyio.create_task_group() as tg:
            for n in range(writes):
                tg.start_soon(write, n)
        assert got == {n: f"n{n}" for n in range(writes)}
        assert max(sizes) == MAX_BATCH and sum(sizes) == writes, sizes
        rows = await store._rows("SELECT text FROM notes ORDER BY rowid")
        assert sorted(row["text"] for row in rows) == sorted(got.values())
    finally:
        await store.aclose()


def _batch_database(tmp_path: Path) -> sqlite3.Connection:
    conn = connect(tmp_path / "batch.db", "normal")
    migrate(conn)
    _make_notes(conn)
    return conn


def test_a_batch_commits_every_change_and_a_change_that_raises_is_undone_alone(
    tmp_path: Path,
) -> None:
    conn = _batch_database(tmp_path)
    try:
        outcomes, version = commit(conn, [partial(_note, "a", False), partial(_note, "b", False)])
        assert outcomes == [("a", None), ("b", None)] and version is not None
        # The second change wrote before it raised: its row goes, the others' stay (the
        # ones before it were run again after the rollback, and are there once).
        outcomes, _ = commit(
            conn,
            [partial(_note, "c", False), partial(_note, "d", True), partial(_note, "e", False)],
        )
        assert [result for result, _ in outcomes] == ["c", None, "e"]
        assert isinstance(outcomes[1][1], ValueError) and str(outcomes[1][1]) == "d refused"
        assert [r[0] for r in conn.execute("SELECT text FROM notes ORDER BY rowid")] == [
            "a", "b", "c", "e",
        ]  # fmt: skip
        assert not conn.in_transaction
    finally:
        conn.close()

"""The relay's SQLite store: migrations, secrets kept hashed, a message and its deliveries
written together, cumulative acks, the event log, and what survives a kill -9."""

from __future__ import annotations

import contextlib
import json
import pickle
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import psutil
import pytest

from agent_relay_runtime.relay.sqlite import SqliteStore, migrations
from agent_relay_runtime.relay.sqlite.delivery_rows import keyed_rows
from agent_relay_runtime.relay.store import (
    AckOutOfRange,
    Conflict,
    DeliveryFinal,
    NotFound,
    StoreError,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    opened = await SqliteStore.open(tmp_path / "relay.db")
    yield opened
    await opened.aclose()


async def workspace_with(store: SqliteStore, *names: str) -> tuple[str, dict[str, str]]:
    workspace, _key = await store.create_workspace("w")
    ids = {}
    for name in names:
        agent, _token = await store.register_agent(workspace.id, name)
        ids[name] = agent.id
    return workspace.id, ids


async def test_the_schema_is_migrated_once_and_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "relay.db"
    store = await SqliteStore.open(path)
    await store.aclose()
    store = await SqliteStore.open(path)  # reopening applies nothing twice
    await store.aclose()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == migrations()[-1][0]
    conn.execute("PRAGMA user_version = 999")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="schema version 999, newer than"):
        await SqliteStore.open(path)


async def test_keys_and_tokens_are_stored_only_hashed(store: SqliteStore) -> None:
    workspace, key = await store.create_workspace("team")
    agent, token = await store.register_agent(workspace.id, "alice")
    assert key.startswith("relay_ws_") and len(key) >= len("relay_ws_") + 32  # 192 bits
    assert (await store.workspace_by_key(key)) == workspace
    assert await store.workspace_by_key(key + "x") is None
    assert (await store.agent_by_token(token)) == agent
    dump = "\n".join(sqlite3.connect(store.path).iterdump())
    assert key not in dump and token not in dump


async def test_names_are_unique_per_workspace(store: SqliteStore) -> None:
    workspace_id, _ = await workspace_with(store, "alice")
    with pytest.raises(Conflict, match="an agent named 'alice' exists"):
        await store.register_agent(workspace_id, "alice")
    other, _ = await store.create_workspace("other")
    await store.register_agent(other.id, "alice")  # another workspace: fine
    with pytest.raises(Conflict, match="a workspace named 'w' exists"):
        await store.create_workspace("w")


async def test_a_message_is_written_with_one_delivery_per_target(store: SqliteStore) -> None:
    workspace_id, ids = await workspace_with(store, "sender", "a", "b")
    channel = await store.create_channel(workspace_id, "general", members=list(ids.values()))
    message, deliveries = await store.post_message(
        workspace_id=workspace_id, channel_id=channel.id, sender_id=ids["sender"],
        text="hi @a", targets=[ids["a"], ids["b"], ids["a"]], mentions=[ids["a"]],
    )  # fmt: skip
    assert [(d.agent_id, d.seq, d.status) for d in deliveries] == [
        (ids["a"], 1, "pending"),
        (ids["b"], 1, "pending"),
    ]
    assert (await store.message(message.id)) == message
    second, more = await store.post_message(
        workspace_id=workspace_id, channel_id=channel.id, sender_id=ids["sender"],
        text="again", targets=[ids["a"]],
    )  # fmt: skip
    assert [d.seq for d in more] == [2]  # per-agent sequence
    events, _ = await store.events_after(workspace_id, 0)
    assert [(e.type, e.data["id"]) for e in events] == [
        ("message.created", message.id),
        ("message.created", second.id),
    ]
    assert [e.seq for e in (await store.events_after(workspace_id, events[0].seq))[0]] == [
        events[1].seq
    ]


async def test_nothing_is_half_written_when_a_target_is_unknown(store: SqliteStore) -> None:
    workspace_id, ids = await workspace_with(store, "sender", "a")
    channel = await store.create_channel(workspace_id, "general")
    with pytest.raises(NotFound, match="unknown target agent 'agt_nobody'"):
        await store.post_message(
            workspace_id=workspace_id, channel_id=channel.id, sender_id=ids["sender"],
            text="x", targets=[ids["a"], "agt_nobody"],
        )  # fmt: skip
    conn = sqlite3.connect(store.path)
    assert conn.execute("SELECT count(*) FROM messages").fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM deliveries").fetchone()[0] == 0
    assert (await store.events_after(workspace_id, 0))[0] == []
    # The failed message took no seq: the next delivery is still seq 1.
    _, [delivery] = await store.post_message(
        workspace_id=workspace_id, channel_id=channel.id, sender_id=ids["sender"],
        text="y", targets=[ids["a"]],
    )  # fmt: skip
    assert delivery.seq == 1


async def test_acks_are_cumulative_and_a_replay_is_refused(store: SqliteStore) -> None:
    workspace_id, ids = await workspace_with(store, "sender", "a")
    channel = await store.create_channel(workspace_id, "general")
    for n in range(3):
        await store.post_message(
            workspace_id=workspace_id, channel_id=channel.id, sender_id=ids["sender"],
            text=f"m{n}", targets=[ids["a"]],
        )  # fmt: skip
    assert [d.seq for d in await store.unacked_deliveries(ids["a"])] == [1, 2, 3]
    assert await store.ack(ids["a"], 2) == 2
    assert [d.seq for d in await store.unacked_deliveries(ids["a"])] == [3]
    with pytest.raises(AckOutOfRange, match="seq 2 is a replay: seq 2 was acknowledged"):
        await store.ack(ids["a"], 2)
    with pytest.raises(AckOutOfRange, match="the last delivery sent is seq 3"):
        await store.ack(ids["a"], 9)
    assert await store.ack(ids["a"], 3) == 1


async def test_receipts_are_stored_per_delivery(store: SqliteStore) -> None:
    workspace_id, ids = await workspace_with(store, "sender", "a")
    channel = await store.create_channel(workspace_id, "general")
    _, [delivery] = await store.post_message(
        workspace_id=workspace_id, channel_id=channel.id, sender_id=ids["sender"],
        text="x", targets=[ids["a"]],
    )  # fmt: skip
    failed = await store.set_receipt(delivery.id, "failed", reason="session gone", retryable=True)
    assert (failed.status, failed.reason, failed.retryable) == ("failed", "session gone", True)
    with pytest.raises(NotFound, match="unknown delivery"):
        await store.set_receipt("del_nope", "delivered")


async def test_a_deregistered_agent_is_gone_until_registered_again(store: SqliteStore) -> None:
    workspace, _key = await store.create_workspace("w")
    node = await store.node_online(workspace.id, "node-1", capabilities=[])
    agent, _, _ = await store.bind_agent(workspace.id, "worker", node.id)
    assert await store.gone_event(agent.id) is None
    await store.node_offline(node.id)  # offline (its node went away) is not gone
    assert await store.gone_event(agent.id) is None
    await store.unbind_agent(agent.id)
    gone = await store.gone_event(agent.id)
    assert gone is not None and (gone.type, gone.agent) == ("agent.deregistered", "worker")
    assert gone.data == {"agent_id": agent.id, "node_id": node.id, "node": "node-1"}
    logged, _ = await store.events_after(workspace.id, 0, types=["agent.deregistered"])
    assert logged == [gone]
    await store.bind_agent(workspace.id, "worker", node.id)
    assert await store.gone_event(agent.id) is None


async def test_a_kill_9_after_the_write_loses_nothing(tmp_path: Path) -> None:
    """A process writes a message (its deliveries committed) and is killed before any
    ack; a new store on the same file has the delivery pending, once."""
    path = tmp_path / "relay.db"
    program = textwrap.dedent(
        f"""
        import anyio, json, os, signal, sys
        from pathlib import Path
        from agent_relay_runtime.relay.sqlite import SqliteStore

        async def main():
            store = await SqliteStore.open(Path({str(path)!r}))
            ws, _ = await store.create_workspace("w")
            sender, _ = await store.register_agent(ws.id, "sender")
            agent, _ = await store.register_agent(ws.id, "a")
            channel = await store.create_channel(ws.id, "general")
            message, _ = await store.post_message(workspace_id=ws.id, channel_id=channel.id,
                sender_id=sender.id, text="survive", targets=[agent.id])
            print(json.dumps([ws.id, agent.id, message.id, store._writer.pid]), flush=True)
            os.kill(os.getpid(), signal.SIGKILL)

        anyio.run(main)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == -9, done.stderr
    workspace_id, agent_id, message_id, writer_pid = json.loads(done.stdout)
    # The writer process saw its socket close with the relay and ended too.
    with contextlib.suppress(psutil.NoSuchProcess):
        psutil.Process(writer_pid).wait(timeout=10)
    store = await SqliteStore.open(path)
    try:
        [pending] = await store.unacked_deliveries(agent_id)
        assert (pending.message_id, pending.seq, pending.status) == (message_id, 1, "pending")
        assert [e.type for e in (await store.events_after(workspace_id, 0))[0]] == [
            "message.created"
        ]
    finally:
        await store.aclose()


def test_store_errors_survive_pickling() -> None:
    """A write's exception comes back from the writer process pickled, as it was raised."""
    final = pickle.loads(pickle.dumps(DeliveryFinal("del_x_1", "acked")))
    assert type(final) is DeliveryFinal
    assert (str(final), final.state, final.delivery_id) == (
        "delivery 'del_x_1' is acked already",
        "acked",
        "del_x_1",
    )
    for error in (NotFound("n"), Conflict("c"), AckOutOfRange("a"), StoreError("s")):
        again = pickle.loads(pickle.dumps(error))
        assert (type(again), str(again)) == (type(error), str(error))


async def test_a_database_from_before_lean_deliveries_keeps_them_and_their_receipts(
    tmp_path: Path,
) -> None:
    """Migration 0011 rebuilds deliveries without their workspace column and gives each
    message its deliveries' keys: what an older relay wrote reads as it did."""
    path = tmp_path / "relay.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA foreign_keys = ON")
    for version, sql in migrations():
        if version <= 10:
            conn.executescript(f"BEGIN;\n{sql}\nPRAGMA user_version = {version};\nCOMMIT;")
    conn.executescript(
        """
        INSERT INTO workspaces VALUES ('wks_1', 'w', 'hash', 't');
        INSERT INTO agents (id, workspace_id, name, kind, token_hash, created_at) VALUES
            ('agt_s', 'wks_1', 'sender', 'agent', 'h1', 't'),
            ('agt_a', 'wks_1', 'a', 'agent', 'h2', 't'),
            ('agt_b', 'wks_1', 'b', 'agent', 'h3', 't');
        INSERT INTO agent_cursors (agent_id, last_seq)
            VALUES ('agt_s', 0), ('agt_a', 1), ('agt_b', 1);
        INSERT INTO channels (id, workspace_id, name, kind, created_at)
            VALUES ('ch_1', 'wks_1', 'general', 'channel', 't');
        INSERT INTO messages (id, workspace_id, channel_id, agent_id, text, created_at)
            VALUES ('msg_1', 'wks_1', 'ch_1', 'agt_s', 'old', '2026-01-01T00:00:00.000Z'),
                   ('msg_2', 'wks_1', 'ch_1', 'agt_s', 'to no one', '2026-01-01T00:00:01.000Z');
        INSERT INTO deliveries (agent_id, seq, workspace_id, message_id, mode, status,
                                updated_at, evidence)
            VALUES ('agt_a', 1, 'wks_1', 'msg_1', 'wait', 'delivered', 'u1', 'seen'),
                   ('agt_b', 1, 'wks_1', 'msg_1', 'steer', 'pending', 'u2', NULL);
        """
    )
    conn.close()

    store = await SqliteStore.open(path)
    try:
        receipts = await store.receipts("msg_1")
        assert [(r.agent_name, r.delivery.status, r.delivery.mode, r.delivery.evidence)
                for r in receipts] == [("a", "delivered", "wait", "seen"),
                                       ("b", "pending", "steer", None)]  # fmt: skip
        assert await store.receipts("msg_2") == []
        [(delivery, payload)] = await store.deliveries_after("agt_b", 0)
        assert (delivery.seq, payload["text"], payload["channel_name"]) == (1, "old", "general")
        await store.set_receipt(delivery.id, "delivered", evidence="now")
        events, _ = await store.events_after("wks_1", 0, types=["delivery.delivered"])
        assert [(e.agent, e.data["message_id"]) for e in events] == [("b", "msg_1")]
        # Written from now on: the keys in the order of the targets.
        message, _ = await store.post_message(
            workspace_id="wks_1", channel_id="ch_1", sender_id="agt_s", text="new",
            targets=["agt_b", "agt_a"],
        )  # fmt: skip
    finally:
        await store.aclose()
    conn = sqlite3.connect(path)
    columns = [row[1] for row in conn.execute("PRAGMA table_info(deliveries)")]
    assert "workspace_id" not in columns
    keys = dict(conn.execute("SELECT id, delivery_keys FROM messages"))
    assert keys["msg_2"] is None and sorted(keys["msg_1"].split()) == ["agt_a:1", "agt_b:1"]
    assert keys[message.id] == "agt_b:2 agt_a:2"
    conn.close()


async def test_a_messages_receipts_are_read_by_key_not_by_scanning_deliveries(
    store: SqliteStore,
) -> None:
    workspace_id, ids = await workspace_with(store, "sender", "a", "b")
    channel = await store.create_channel(workspace_id, "general")
    message, _ = await store.post_message(
        workspace_id=workspace_id, channel_id=channel.id, sender_id=ids["sender"],
        text="hi", targets=[ids["a"], ids["b"]],
    )  # fmt: skip
    conn = sqlite3.connect(store.path)
    conn.row_factory = sqlite3.Row
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    rows = keyed_rows(conn, message.id)
    conn.set_trace_callback(None)
    assert sorted((row["agent_id"], row["seq"]) for row in rows) == sorted(
        [(ids["a"], 1), (ids["b"], 1)]
    )
    plans = [
        " / ".join(step[3] for step in conn.execute(f"EXPLAIN QUERY PLAN {sql}"))
        for sql in statements
    ]
    assert plans and not any("SCAN" in plan for plan in plans), plans
    conn.close()

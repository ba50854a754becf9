"""Relay benchmarks (issue 4), so far the store: durable message writes fanned out.

    python bench/relay.py [--messages 4000] [--fanout 10]

- store, one writer: post_message awaited one after another (a transaction each);
- store, concurrent writers: all posts at once (group commit puts many in a transaction);
- raw SQLite baselines: the same rows inserted from Python in one transaction, no store;
  and in commits of --batch messages with a savepoint each (as the writer process commits).

Each post writes the message, one delivery row per target agent and the message.created
event, committed before the call returns. Writes JSON to bench/results/relay.json.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src")]

from agent_relay_runtime.relay.sqlite import SqliteStore  # noqa: E402


async def store_rates(messages: int, fanout: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        store = await SqliteStore.open(Path(tmp) / "relay.db")
        try:
            workspace, _ = await store.create_workspace("bench")
            sender, _ = await store.register_agent(workspace.id, "sender")
            targets = [
                (await store.register_agent(workspace.id, f"agent-{n}"))[0].id
                for n in range(fanout)
            ]
            channel = await store.create_channel(workspace.id, "general")

            async def post(n: int) -> None:
                await store.post_message(
                    workspace_id=workspace.id, channel_id=channel.id, sender_id=sender.id,
                    text=f"message {n}", targets=targets,
                )  # fmt: skip

            started = time.perf_counter()
            for n in range(messages // 4):
                await post(n)
            sequential = (messages // 4) / (time.perf_counter() - started)
            started = time.perf_counter()
            async with anyio.create_task_group() as tg:
                for n in range(messages):
                    tg.start_soon(post, n)
            concurrent = messages / (time.perf_counter() - started)
        finally:
            await store.aclose()
    return sequential, concurrent


def raw_rate(messages: int, fanout: int, batch: int | None = None) -> float:
    """The schema's rows from plain sqlite3 in one transaction (the ceiling from Python),
    or committed ``batch`` messages at a time with a savepoint a message (the shape of
    the relay's writer process, without its JSON and pickling)."""
    from agent_relay_runtime.relay.sqlite.base import migrate

    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        conn = sqlite3.connect(Path(tmp) / "raw.db", isolation_level=None)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = normal")
        conn.execute("PRAGMA foreign_keys = ON")
        migrate(conn)
        conn.execute("INSERT INTO workspaces VALUES ('w', 'w', 'h', 't')")
        for n in range(fanout + 1):
            conn.execute(
                "INSERT INTO agents (id, workspace_id, name, kind, token_hash, created_at)"
                " VALUES (?, 'w', ?, 'agent', ?, 't')",
                (f"a{n}", f"a{n}", f"h{n}"),
            )
            conn.execute("INSERT INTO agent_cursors (agent_id) VALUES (?)", (f"a{n}",))
        conn.execute(
            "INSERT INTO channels (id, workspace_id, name, kind, created_at)"
            " VALUES ('c', 'w', 'c', 'channel', 't')"
        )
        targets = [f"a{n}" for n in range(1, fanout + 1)]
        started = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        for m in range(messages):
            if batch is not None:
                if m and m % batch == 0:
                    conn.execute("COMMIT")
                    conn.execute("BEGIN IMMEDIATE")
                conn.execute("SAVEPOINT change")
            conn.execute(
                "INSERT INTO messages (id, workspace_id, channel_id, agent_id, text, created_at)"
                " VALUES (?, 'w', 'c', 'a0', 'x', 't')",
                (f"m{m}",),
            )
            for agent in targets:
                (seq,) = conn.execute(
                    "UPDATE agent_cursors SET last_seq = last_seq + 1 WHERE agent_id = ?"
                    " RETURNING last_seq",
                    (agent,),
                ).fetchone()
                conn.execute(
                    "INSERT INTO deliveries (agent_id, seq, message_id, mode, status, updated_at)"
                    " VALUES (?, ?, ?, 'wait', 'pending', 't')",
                    (agent, seq, f"m{m}"),
                )
            conn.execute(
                "INSERT INTO events (workspace_id, type, data, created_at)"
                " VALUES ('w', 'message.created', '{}', 't')"
            )
            if batch is not None:
                conn.execute("RELEASE change")
        conn.execute("COMMIT")
        rate = messages / (time.perf_counter() - started)
        conn.close()
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=4000)
    parser.add_argument("--fanout", type=int, default=10)
    parser.add_argument(
        "--batch", type=int, default=27, help="messages a commit (the writer's at C = 128)"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "relay.json")
    args = parser.parse_args()
    sequential, concurrent = anyio.run(store_rates, args.messages, args.fanout)
    raw = raw_rate(args.messages, args.fanout)
    batched = raw_rate(args.messages, args.fanout, args.batch)
    results: dict[str, Any] = {
        "fanout": args.fanout,
        "messages": args.messages,
        "store_sequential_msg_s": round(sequential),
        "store_concurrent_msg_s": round(concurrent),
        "raw_sqlite_one_txn_msg_s": round(raw),
        "raw_sqlite_batched_msg_s": round(batched),
        "batch": args.batch,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"fan-out {args.fanout}, durable writes ({args.messages} messages)")
    print(f"{'measure':38} {'msg/s':>8} {'vs raw':>7}")
    for name, rate in (
        ("store, one writer", sequential),
        ("store, concurrent writers", concurrent),
        ("raw sqlite3, one transaction", raw),
        (f"raw sqlite3, {args.batch} a commit, savepoints", batched),
    ):
        print(f"{name:38} {rate:>8.0f} {rate / raw:>7.2f}")
    print(f"target: >= 2000 msg/s through the relay\nwritten: {args.out}")


if __name__ == "__main__":
    main()

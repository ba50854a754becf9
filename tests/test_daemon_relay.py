"""The daemon in its workspace, as a user runs it: the embedded relay, `workspace`,
`send @agent|#channel` through the relay, a shared relay run by `relay`, and a relay
killed with SIGKILL between a message's write and its ack."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import FAKE_CLAUDE, read_trace
from .test_daemon import CLI, Daemon, short_dir, start_daemon

__all__ = ["short_dir"]  # a fixture this module uses


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_relay(data: Path, port: int) -> tuple[subprocess.Popen[str], str]:
    """`agent-relay-runtime relay`, and the workspace key it prints."""
    proc = subprocess.Popen(
        [*CLI, "relay", "--data-dir", str(data), "--port", str(port), "--workspace", "team"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().startswith("relay serving workspace team on http://127.0.0.1:")
    key = proc.stdout.readline().split(": ", 1)[1].strip()
    assert key.startswith("relay_ws_")
    return proc, key


@pytest.fixture
def daemon(short_dir: Path) -> Iterator[Daemon]:
    d = start_daemon(short_dir / "data")
    try:
        yield d
    finally:
        d.stop()


def test_the_embedded_workspace_and_send_through_it(daemon: Daemon, short_dir: Path) -> None:
    info = json.loads(daemon.ok("workspace", "--json"))
    assert set(info) == {"name", "key", "relay_url"} and info["name"] == "local"
    assert info["key"].startswith("relay_ws_") and info["relay_url"].startswith("http://127.0.0.1:")
    key_file = daemon.data / "relay" / "workspace.json"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    trace = short_dir / "trace.jsonl"
    env = "FAKE_AGENT_SCRIPT=" + json.dumps({"trace_file": str(trace)})
    daemon.ok("create", "claude", "--name", "worker", "--command", str(FAKE_CLAUDE), "--env", env)
    sent = json.loads(daemon.ok("send", "@worker", "hello through the relay", "--wait", "--json"))
    [receipt] = sent["receipts"]
    # Not `acked`: the node's cumulative ack is a write of its own, after the receipt, and
    # may not be committed yet when --wait reads the final receipt (tests/relay cover acks).
    assert (receipt["agent_name"], receipt["status"]) == ("worker", "delivered")
    prompts = [t for t in read_trace(trace) if t["event"] == "submit"]
    assert len(prompts) == 1 and "hello through the relay" in json.dumps(prompts[0])
    # Bad input: one line, and the daemon carries on.
    assert "channel_not_found" in daemon.error("send", "#nowhere", "hi")
    assert "agent_not_found" in daemon.error("send", "@ghost", "hi")
    assert daemon.ok("ps").count("worker") == 1


def test_the_workspace_and_its_key_survive_a_restart(short_dir: Path) -> None:
    first = start_daemon(short_dir / "data")
    try:
        before = json.loads(first.ok("workspace", "--json"))
    finally:
        assert first.stop() == 0
    second = start_daemon(short_dir / "data")
    try:
        after = json.loads(second.ok("workspace", "--json"))
    finally:
        second.stop()
    assert (after["name"], after["key"]) == (before["name"], before["key"])


def test_a_relay_killed_before_the_ack_delivers_the_message_once_after_restart(
    short_dir: Path,
) -> None:
    port = free_port()
    relay, key = start_relay(short_dir / "relay-data", port)
    url = f"http://127.0.0.1:{port}"
    daemon = start_daemon(
        short_dir / "data", "--relay-url", url, "--workspace-key", key, workspace="team"
    )
    try:
        trace = short_dir / "trace.jsonl"
        env = "FAKE_AGENT_SCRIPT=" + json.dumps({"trace_file": str(trace), "turn_seconds": 0})
        daemon.ok("create", "claude", "--name", "worker", "--command", str(FAKE_CLAUDE),
                  "--env", env)  # fmt: skip
        # Keep the worker busy, so the next message is written but not yet delivered.
        daemon.ok("send", "worker", "work:3", "--mode", "wait")
        sent = json.loads(daemon.ok("send", "@worker", "the one that must arrive", "--json"))
        assert [r["acked"] for r in sent["receipts"]] == [False]
        relay.send_signal(signal.SIGKILL)
        relay.wait(timeout=10)
        relay, _ = start_relay(short_dir / "relay-data", port)  # the same store and key
        done = json.loads(
            daemon.ok("send", "@worker", "and one more", "--wait", "--json", "--timeout", "60")
        )
        assert done["receipts"][0]["status"] == "delivered"
        texts = [json.dumps(t) for t in read_trace(trace) if t["event"] == "submit"]
        assert sum("the one that must arrive" in t for t in texts) == 1
    finally:
        daemon.stop()
        relay.send_signal(signal.SIGTERM)
        relay.wait(timeout=30)

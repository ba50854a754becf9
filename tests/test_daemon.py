"""The `serve` daemon and the CLI, as a user runs them: real processes end to end."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest

from agent_relay_runtime.events import parse_event

from .conftest import FAKE_CLAUDE, read_trace

CLI = [sys.executable, "-m", "agent_relay_runtime"]


@dataclass
class Daemon:
    proc: subprocess.Popen[str]
    data: Path
    log: Path

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*CLI, "--data-dir", str(self.data), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def ok(self, *args: str) -> str:
        result = self.cli(*args)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def error(self, *args: str) -> str:
        """Run a command that must fail; its one-line error."""
        result = self.cli(*args)
        assert result.returncode == 1, (result.stdout, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
        return lines[0]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout=timeout)


def start_daemon(
    data: Path, *extra: str, workspace: str = "local", env: dict[str, str] | None = None
) -> Daemon:
    log = data.parent / "daemon.log"
    with log.open("w") as err:
        proc = subprocess.Popen(
            [*CLI, "serve", "--data-dir", str(data), *extra],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # the daemon announces itself once it listens
    assert "serving on unix:" in line, (line, log.read_text())
    joined = proc.stdout.readline()  # and the workspace it belongs to
    assert joined.startswith(f"workspace {workspace} on http://"), (joined, log.read_text())
    return Daemon(proc, data, log)


@pytest.fixture
def short_dir() -> Iterator[Path]:
    # Unix socket paths are limited to ~107 bytes; pytest's tmp paths can be longer.
    path = Path(tempfile.mkdtemp(prefix="arr-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def daemon(short_dir: Path) -> Iterator[Daemon]:
    d = start_daemon(short_dir / "data")
    try:
        yield d
    finally:
        d.stop()


def script(**kw: object) -> str:
    return "FAKE_AGENT_SCRIPT=" + json.dumps(kw)


def test_a_user_session_from_create_to_release(daemon: Daemon, short_dir: Path) -> None:
    trace = short_dir / "trace.jsonl"
    out = daemon.ok("create", "fake-tui", "--name", "a", "--env", script(trace_file=str(trace)))
    assert out.startswith("a: ready (fake-tui, pty, pid ")
    follow = subprocess.Popen(
        [*CLI, "--data-dir", str(daemon.data), "events", "--follow", "--session", "a"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        sent = daemon.ok("send", "a", "hello from the cli", "--wait", "--from", "bob")
        assert sent.startswith("delivered msg_") and "screen turned busy" in sent
        ps = json.loads(daemon.ok("ps", "--json"))
        assert [(s["name"], s["harness"], s["mode"]) for s in ps["sessions"]] == [
            ("a", "fake-tui", "pty")
        ]
        assert "you said: Relay message from bob" in daemon.ok("screen", "a")
        assert "Fake Agent 1.0" in daemon.ok("logs", "a")
        released = daemon.ok("release", "a", "--reason", "done")
        assert released.strip() == "released a gracefully"
        assert follow.stdout is not None
        types = []
        for line in follow.stdout:
            event = parse_event(line)
            types.append(event.type)
            if event.type == "session.exited":
                break
    finally:
        follow.kill()
        follow.wait()
    assert types[:3] == ["session.started", "status.changed", "session.ready"]
    assert "delivery.delivered" in types and types[-1] == "session.exited"
    submitted = [t["text"] for t in read_trace(trace) if t["event"] == "submit"]
    assert submitted[0].startswith("Relay message from bob [msg_")
    all_events = [json.loads(line) for line in daemon.ok("events").splitlines()]
    assert [e["seq"] for e in all_events] == list(range(1, len(all_events) + 1))


def test_headless_claude_and_generic_through_the_cli(daemon: Daemon) -> None:
    daemon.ok("create", "claude", "--name", "c", "--command", str(FAKE_CLAUDE))
    sent = json.loads(daemon.ok("send", "c", "hi bash:ls", "--wait", "--json"))
    assert sent["receipt"]["status"] == "delivered"
    assert sent["receipt"]["evidence"]["kind"] == "protocol_ack"
    out = daemon.ok(
        "create", "generic", "--name", "g", "--command", "/bin/sh", "--idle-after", "0.3",
        "--", "-c", "echo started; exec cat",
    )  # fmt: skip
    assert out.startswith("g: ready (generic, pty")
    sent = daemon.ok("send", "g", "echo me", "--wait")
    assert sent.startswith("delivered") and "screen changed" in sent
    assert "echo me" in daemon.ok("screen", "g")
    assert daemon.ok("keys", "g", "typed by hand\\r").startswith("sent 14 key(s)")
    assert "no terminal" in daemon.error("keys", "c", "x")
    assert daemon.ok("release", "g").startswith("released g")
    assert daemon.ok("release", "c").strip() == "released c gracefully"


def test_bad_input_gets_one_line_errors_and_loses_nothing(daemon: Daemon, short_dir: Path) -> None:
    daemon.ok("create", "claude", "--name", "keep", "--command", str(FAKE_CLAUDE))
    (daemon.data / "harnesses").mkdir()
    (daemon.data / "harnesses" / "typo.toml").write_text("[busy]\nmarkrs = ['x']\n")
    assert daemon.error("create", "nope").startswith("error: unknown harness 'nope'")
    assert "executable not found: /no/agent" in daemon.error(
        "create", "generic", "--command", "/no/agent"
    )
    assert "cwd not found" in daemon.error("create", "fake-tui", "--cwd", "/no/such/dir")
    assert "already exists" in daemon.error(
        "create", "claude", "--name", "keep", "--command", str(FAKE_CLAUDE)
    )
    typo = daemon.error("create", "typo")
    assert f"{daemon.data / 'harnesses' / 'typo.toml'}: busy.markrs: unknown key" in typo
    assert "no session named 'ghost'" in daemon.error("send", "ghost", "hi")
    assert "invalid session name" in daemon.error("create", "fake-tui", "--name", "bad name")
    assert "--env: expected K=V" in daemon.error("create", "fake-tui", "--env", "NOEQUALS")
    daemon.ok("create", "claude", "--name", "gone", "--command", str(FAKE_CLAUDE))
    daemon.ok("release", "gone")
    assert "session 'gone' has ended" in daemon.error("send", "gone", "hi")
    assert "no session named" in daemon.error("screen", "ghost")
    # The daemon still serves the session it had.
    assert (
        json.loads(daemon.ok("send", "keep", "still ok", "--wait", "--json"))["receipt"]["status"]
        == "delivered"
    )
    assert "broken: " in daemon.ok("doctor") and "typo" in daemon.ok("doctor")


def test_no_daemon_is_a_clear_error(short_dir: Path) -> None:
    result = subprocess.run(
        [*CLI, "--data-dir", str(short_dir / "none"), "ps"], capture_output=True, text=True
    )
    assert result.returncode == 1
    assert result.stderr.startswith("error: daemon is not running")
    assert "agent-relay-runtime serve" in result.stderr


def test_a_second_daemon_on_the_same_data_dir_is_refused(daemon: Daemon) -> None:
    result = subprocess.run(
        [*CLI, "serve", "--data-dir", str(daemon.data)], capture_output=True, text=True
    )
    assert result.returncode == 1
    assert f"a daemon is already running for {daemon.data} (pid {daemon.proc.pid})" in (
        result.stderr
    )


def test_the_control_api_needs_the_token_and_its_files_are_private(daemon: Daemon) -> None:
    sock = daemon.data / "runtime.sock"
    for path in (daemon.data / "token", daemon.data / "daemon.json", sock):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    transport = httpx.HTTPTransport(uds=str(sock))
    with httpx.Client(transport=transport, base_url="http://x") as http:
        assert http.get("/v1/health").status_code == 401
        wrong = http.get("/v1/sessions", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "unauthorized"
        token = (daemon.data / "token").read_text().strip()
        auth = {"Authorization": f"Bearer {token}"}
        health = http.get("/v1/health", headers=auth).json()
        assert health["status"] == "ok" and health["pid"] == daemon.proc.pid
        bad = http.post("/v1/sessions", headers=auth, content=b"{not json")
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_request"
        extra = http.post("/v1/sessions", headers=auth, json={"harness": "x", "bogus": 1})
        assert "bogus: Extra inputs are not permitted" in extra.json()["error"]["message"]


def test_the_listen_address_must_be_loopback(short_dir: Path) -> None:
    result = subprocess.run(
        [*CLI, "serve", "--data-dir", str(short_dir / "d"), "--listen", "0.0.0.0:0"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert "error: --listen: the control API binds to loopback only" in result.stderr


def test_tcp_loopback_listening(short_dir: Path) -> None:
    data = short_dir / "tcp"
    proc = subprocess.Popen(
        [*CLI, "serve", "--data-dir", str(data), "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert "serving on http://127.0.0.1:" in proc.stdout.readline()
        assert "key relay_ws_" in proc.stdout.readline()
        d = Daemon(proc, data, data / "none")
        assert d.ok("ps").startswith("NAME")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0


def _session_pids(daemon: Daemon) -> list[int]:
    sessions = json.loads(daemon.ok("ps", "--json"))["sessions"]
    return [s["pid"] for s in sessions]


def test_sigterm_releases_five_live_sessions_and_leaves_no_process(
    daemon: Daemon, short_dir: Path
) -> None:
    traces = [short_dir / f"t{i}.jsonl" for i in range(5)]
    for i in range(3):
        daemon.ok(
            "create", "fake-tui", "--name", f"tui{i}", "--env", script(trace_file=str(traces[i]))
        )
    for i in (3, 4):
        daemon.ok(
            "create", "claude", "--name", f"cc{i}", "--command", str(FAKE_CLAUDE),
            "--env", script(trace_file=str(traces[i])),
        )  # fmt: skip
    daemon.ok("send", "tui0", "spawn-escapee", "--wait")
    daemon.ok("send", "tui1", "ignore-sigterm hang", "--wait")
    daemon.ok("send", "cc3", "work:60", "--wait")
    escapee = next(t["pid"] for t in read_trace(traces[0]) if t["event"] == "escapee")
    pids = [*_session_pids(daemon), escapee]
    assert daemon.stop(signal.SIGTERM) == 0
    for pid in pids:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie", pid
    assert not (daemon.data / "daemon.json").exists()
    assert not (daemon.data / "runtime.sock").exists()
    log = daemon.log.read_text()
    assert '"daemon_stopping"' in log and log.count('"session_exited"') == 5


def test_a_second_sigint_forces(daemon: Daemon) -> None:
    daemon.ok("create", "fake-tui", "--name", "stuck")
    daemon.ok("send", "stuck", "ignore-sigterm hang", "--wait")
    pids = _session_pids(daemon)
    assert daemon.proc.stdout is not None
    daemon.proc.send_signal(signal.SIGINT)
    assert daemon.proc.stdout.readline().startswith("stopping: releasing 1 session(s)")
    daemon.proc.send_signal(signal.SIGINT)
    assert daemon.proc.stdout.readline().startswith("forced stop: killing every session")
    assert daemon.proc.wait(timeout=30) == 0
    for pid in pids:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"

"""The real agent CLIs, offline against the scripted model server (opt-in).

They use the CLIs installed by ``.ci/install-clis`` (``.agent-clis/``), or the directory in
``MODEL_SERVER_REAL_CLIS``; without either these tests are skipped.
Each runs one turn in which the scripted model writes a file with a tool and then answers
with text. Pinned: Claude Code 2.1.197, Codex 0.169.0, OpenCode 1.18.33.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import httpx
import pytest
from model_server import ScriptedModelServer
from model_server.offline import claude_env, codex_env, opencode_env

_INSTALLED = Path(__file__).resolve().parents[2] / ".agent-clis" / "node_modules" / ".bin"
BIN_DIR = os.environ.get("MODEL_SERVER_REAL_CLIS") or (
    str(_INSTALLED) if _INSTALLED.is_dir() else ""
)

pytestmark = pytest.mark.skipif(
    not BIN_DIR, reason="no real CLIs: run .ci/install-clis or set MODEL_SERVER_REAL_CLIS"
)

DEADLINE = 90.0


def cli(name: str) -> str:
    path = Path(BIN_DIR) / name
    if not path.exists():
        pytest.skip(f"{path} not found")
    return str(path)


@contextlib.contextmanager
def running(argv: list[str], **kw: Any) -> Iterator[subprocess.Popen[str]]:
    """A CLI in a process group of its own, killed (group) after the test or DEADLINE."""
    process = subprocess.Popen(argv, text=True, start_new_session=True, **kw)
    timer = threading.Timer(DEADLINE, lambda: _kill_group(process))
    timer.start()
    try:
        yield process
    finally:
        timer.cancel()
        _kill_group(process)
        for stream in (process.stdin, process.stdout, process.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


def _kill_group(process: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(10)


def read_until(stream: IO[str], done: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
    """JSON lines from ``stream`` up to and including the first one ``done`` accepts."""
    seen: list[dict[str, Any]] = []
    for line in stream:
        if line.strip():
            seen.append(json.loads(line))
            if done(seen[-1]):
                return seen
    raise AssertionError(f"stream ended before the expected line; got {seen[-3:]}")


@pytest.fixture
def workdir() -> Iterator[Path]:
    # Under /var/tmp: Codex warns about helper binaries in a CODEX_HOME under /tmp.
    with tempfile.TemporaryDirectory(prefix="model-server-cli-", dir="/var/tmp") as path:
        yield Path(path)


def test_claude_stream_json(workdir: Path) -> None:
    work = workdir / "work"
    work.mkdir()
    target = work / "hello.txt"
    script = {
        "turns": [
            {"tool": {"name": "Write", "input": {"file_path": str(target), "content": "hi\n"}}},
            {"text": "Claude wrote it."},
        ]
    }
    with ScriptedModelServer(script) as server:
        argv = [cli("claude"), "-p", "--output-format", "stream-json", "--input-format"]
        argv += ["stream-json", "--verbose", "--replay-user-messages"]
        argv += ["--permission-mode", "acceptEdits"]
        env = claude_env(server.url, workdir / "claude", cwd=work)
        with running(
            argv, cwd=work, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE
        ) as process:
            assert process.stdin is not None and process.stdout is not None
            init = {"subtype": "initialize"}
            user = {"role": "user", "content": "write hello.txt"}
            for line in (
                {"type": "control_request", "request_id": "init-1", "request": init},
                {"type": "user", "message": user, "parent_tool_use_id": None, "session_id": ""},
            ):
                process.stdin.write(json.dumps(line) + "\n")
            process.stdin.flush()
            lines = read_until(process.stdout, lambda line: line["type"] == "result")
        kinds = [(entry["kind"], entry["turn"]) for entry in server.requests]
    assert target.read_text() == "hi\n"
    assert lines[0]["type"] == "control_response"
    assert lines[0]["response"]["request_id"] == "init-1"
    replay = next(line for line in lines if line["type"] == "user" and line.get("isReplay"))
    assert replay["message"]["content"] == "write hello.txt" and replay["uuid"]
    assert lines[-1]["subtype"] == "success" and lines[-1]["result"] == "Claude wrote it."
    assert ("turn", 0) in kinds and ("turn", 1) in kinds


def test_codex_app_server(workdir: Path) -> None:
    work = workdir / "work"
    work.mkdir()
    target = work / "hello.txt"
    script = {
        "turns": [
            {"tool": {"name": "exec_command", "input": {"cmd": f"printf hi > {target}"}}},
            {"text": "Codex wrote it."},
        ]
    }
    with ScriptedModelServer(script) as server:
        env = codex_env(server.url, workdir / "codex-home", cwd=work)
        with running(
            [cli("codex"), "app-server"],
            cwd=work,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        ) as process:
            assert process.stdin is not None and process.stdout is not None
            stdin, stdout = process.stdin, process.stdout

            def call(message: dict[str, Any]) -> list[dict[str, Any]]:
                stdin.write(json.dumps(message) + "\n")
                stdin.flush()
                if "id" not in message:
                    return []
                return read_until(stdout, lambda line: line.get("id") == message["id"])

            client = {"name": "tests", "title": "tests", "version": "0"}  # all three required
            initialized = call({"id": 1, "method": "initialize", "params": {"clientInfo": client}})
            assert "userAgent" in initialized[-1]["result"]
            call({"method": "initialized"})
            started = call({"id": 2, "method": "thread/start", "params": {"cwd": str(work)}})
            thread = started[-1]["result"]["thread"]["id"]
            text = [{"type": "text", "text": "write hello.txt"}]
            call({"id": 3, "method": "turn/start", "params": {"threadId": thread, "input": text}})
            lines = read_until(stdout, lambda line: line.get("method") == "turn/completed")
    items = [line["params"]["item"] for line in lines if line.get("method") == "item/completed"]
    assert target.read_text() == "hi"
    assert any(item["type"] == "commandExecution" for item in items)
    assert items[-1] == {**items[-1], "type": "agentMessage", "text": "Codex wrote it."}
    assert lines[-1]["params"]["turn"]["status"] == "completed"


def test_codex_exec(workdir: Path) -> None:
    target = workdir / "hello.txt"
    script = {
        "turns": [
            {"tool": {"name": "exec_command", "input": {"cmd": f"printf hi > {target}"}}},
            {"text": "Exec wrote it."},
        ]
    }
    with ScriptedModelServer(script) as server:
        env = codex_env(server.url, workdir / "codex-home")
        argv = [cli("codex"), "exec", "--json", "--skip-git-repo-check", "-C", str(workdir)]
        with running(
            [*argv, "write hello.txt"], env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE
        ) as process:
            assert process.stdout is not None
            lines = read_until(process.stdout, lambda line: line["type"] == "turn.completed")
    texts = [
        line["item"]["text"]
        for line in lines
        if line["type"] == "item.completed" and line["item"]["type"] == "agent_message"
    ]
    assert target.read_text() == "hi"
    assert texts == ["Exec wrote it."]


def opencode_script(target: Path) -> dict[str, Any]:
    write = {"name": "write", "input": {"filePath": str(target), "content": "hi\n"}}
    return {"turns": [{"tool": write}, {"text": "OpenCode wrote it."}]}


def test_opencode_run(workdir: Path) -> None:
    target = workdir / "hello.txt"
    with ScriptedModelServer(opencode_script(target)) as server:
        env = opencode_env(server.url, workdir / "opencode")
        argv = [cli("opencode"), "run", "--format", "json", "write hello.txt"]
        with running(
            argv, cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE
        ) as process:
            assert process.stdout is not None
            lines = [json.loads(line) for line in process.stdout if line.strip()]
        kinds = [entry["kind"] for entry in server.requests if entry["api"] == "chat"]
    texts = [line["part"]["text"] for line in lines if line["type"] == "text"]
    assert target.read_text() == "hi\n"
    assert texts[-1] == "OpenCode wrote it."
    assert kinds.count("turn") == 2 and "side" in kinds  # the title request


def test_opencode_serve(workdir: Path) -> None:
    target = workdir / "hello.txt"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with ScriptedModelServer(opencode_script(target)) as server:
        env = opencode_env(server.url, workdir / "opencode")
        argv = [cli("opencode"), "serve", "--port", str(port), "--hostname", "127.0.0.1"]
        with (
            running(argv, cwd=workdir, env=env, stdin=subprocess.DEVNULL),
            httpx.Client(base_url=f"http://127.0.0.1:{port}", trust_env=False) as http,
        ):
            deadline = time.monotonic() + 30
            while True:  # the first request during start-up may hang: short timeouts
                try:
                    if http.get("/global/health", timeout=1).json().get("healthy"):
                        break
                except httpx.HTTPError:
                    assert time.monotonic() < deadline, "opencode serve did not start"
                    time.sleep(0.1)
            session = http.post("/session", json={}, timeout=10).json()
            body = {"parts": [{"type": "text", "text": "write hello.txt"}]}
            reply = http.post(f"/session/{session['id']}/message", json=body, timeout=60)
    parts = reply.json()["parts"]
    assert target.read_text() == "hi\n"
    assert [part["text"] for part in parts if part["type"] == "text"] == ["OpenCode wrote it."]

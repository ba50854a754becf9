"""Per-harness benchmarks against the real CLIs, offline against the scripted model server.

    python bench/harnesses.py [--runs 3] [--messages 5] [claude codex opencode openclaw]

For each harness and mode (headless, pty):
- spawn → ready: `Supervisor.create` until the session is ready;
- the bare CLI's own start-up, measured without the runtime: headless, until the CLI
  answers its protocol's first request (Claude `initialize`, Codex `initialize` +
  `thread/start`, OpenCode health + `POST /session`, OpenClaw the gateway's `[gateway]
  ready` line, on the config the runtime would write); PTY, until the TUI draws its ready
  marker on a plain pyte screen (OpenClaw: the gateway ready, then its TUI connected);
- the runtime's overhead: the difference of the medians;
- message → delivered: send to the idle session, until the `delivered` receipt.

The CLIs come from .ci/install-clis and .ci/install-openclaw (.agent-clis/), or
$AGENT_RELAY_CLI_BIN and $AGENT_RELAY_OPENCLAW_BIN.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import select
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import httpx
import pyte
from ptyprocess import PtyProcess

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "fixtures"), str(ROOT)]

from model_server import ScriptedModelServer  # noqa: E402
from tests.real.conftest import (  # noqa: E402
    CLI_BIN,
    OPENCLAW_BIN,
    claude_env,
    codex_args,
    openclaw_config,
    opencode_env,
)

from agent_relay_runtime.contract import RelayMessage, SessionSpec  # noqa: E402
from agent_relay_runtime.drivers.opencode_server import free_loopback_port  # noqa: E402
from agent_relay_runtime.harnesses.openclaw import gateway_config  # noqa: E402
from agent_relay_runtime.logs import configure_logging  # noqa: E402
from agent_relay_runtime.profiles import ProfileRegistry, builtin_profile_dir  # noqa: E402
from agent_relay_runtime.supervisor import Supervisor  # noqa: E402
from agent_relay_runtime.testing import EventRecorder  # noqa: E402


def median_ms(values: list[float]) -> float:
    return round(statistics.median(values) * 1000, 1)


def cli(harness: str) -> Path:
    return (OPENCLAW_BIN if harness == "openclaw" else CLI_BIN) / harness


def spec_for(harness: str, mode: str, url: str, work: Path) -> SessionSpec:
    common: dict[str, Any] = {
        "harness": harness, "name": f"{harness}-{mode}", "mode": mode, "cwd": work,
        "isolated": True, "approvals": "allow", "command": str(cli(harness)),
    }  # fmt: skip
    if harness == "openclaw":
        env = openclaw_config(url, work.parent / "user-openclaw.json")
        return SessionSpec(**common, env=env, ready_timeout=240)
    if harness == "claude":
        return SessionSpec(**common, env=claude_env(url))
    if harness == "codex":
        return SessionSpec(**common, args=codex_args(url), env={"SCRIPTED_API_KEY": "k"})
    return SessionSpec(**common, env=opencode_env(url))


async def runtime_run(
    harness: str, mode: str, url: str, messages: int
) -> tuple[float, list[float]]:
    """One session: seconds to ready, and seconds from send to delivered per message."""
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        work = Path(tmp) / "work"
        work.mkdir()
        profiles = ProfileRegistry([builtin_profile_dir()])
        async with Supervisor(data_dir=Path(tmp), profiles=profiles) as sup:
            recorder = EventRecorder()
            sup.subscribe(recorder)
            started = time.perf_counter()
            session = await sup.create(spec_for(harness, mode, url, work))
            ready = time.perf_counter() - started
            latencies = []
            for n in range(messages):
                message = RelayMessage(text=f"message {n}")
                mark = recorder.mark()
                sent = time.perf_counter()
                await session.receive_message(message)
                await recorder.wait_for(
                    "delivery.delivered",
                    where=lambda e, wanted=message.id: e.receipt.message_id == wanted,
                    after=mark,
                    timeout=120,
                )
                latencies.append(time.perf_counter() - sent)
                await recorder.wait_for("turn.completed", after=mark, timeout=120)
                await session.wait_state(lambda s: s.is_idle, 60)
            await sup.release(session.name)
    return ready, latencies


def bare_headless(harness: str, url: str) -> float:
    """Seconds until the CLI answers its protocol's first request(s), without us."""
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        work, env = Path(tmp), dict(os.environ)
        if harness == "opencode":
            return _bare_opencode(url, work, env)
        if harness == "openclaw":
            return _bare_openclaw(url, work, env)
        if harness == "claude":
            env |= claude_env(url) | {"CLAUDE_CONFIG_DIR": str(work / "cfg")}
            argv = [str(CLI_BIN / "claude"), "-p", "--output-format", "stream-json",
                    "--input-format", "stream-json", "--verbose"]  # fmt: skip
            requests = [{"type": "control_request", "request_id": "r1",
                         "request": {"subtype": "initialize"}}]  # fmt: skip
        else:
            env |= {"SCRIPTED_API_KEY": "k", "CODEX_HOME": str(work / "home")}
            (work / "home").mkdir()
            argv = [str(CLI_BIN / "codex"), "app-server", *codex_args(url)]
            requests = [
                {"id": 1, "method": "initialize",
                 "params": {"clientInfo": {"name": "bench", "version": "1"}}},
                {"method": "initialized"},
                {"id": 2, "method": "thread/start", "params": {"cwd": str(work)}},
            ]  # fmt: skip
        started = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=work, env=env, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)  # fmt: skip
        assert proc.stdin is not None and proc.stdout is not None
        try:
            for request in requests:
                proc.stdin.write(json.dumps(request).encode() + b"\n")
            proc.stdin.flush()
            answers = sum(1 for r in requests if "id" in r or r.get("type"))
            while answers:
                line = json.loads(proc.stdout.readline())
                if line.get("id") is not None or line.get("type") == "control_response":
                    answers -= 1
            return time.perf_counter() - started
        finally:
            proc.kill()
            proc.wait()


def _bare_opencode(url: str, work: Path, env: dict[str, str]) -> float:
    port = free_loopback_port()
    env |= opencode_env(url)
    for name in ("DATA", "CONFIG", "CACHE", "STATE"):
        (work / name).mkdir()
        env[f"XDG_{name}_HOME"] = str(work / name)
    started = time.perf_counter()
    proc = subprocess.Popen(
        [str(CLI_BIN / "opencode"), "serve", "--port", str(port), "--hostname", "127.0.0.1"],
        cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        while True:
            try:
                if httpx.get(f"{base}/global/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.05)  # polling a starting server: the bare client does the same
        httpx.post(f"{base}/session", json={}, timeout=30).raise_for_status()
        return time.perf_counter() - started
    finally:
        os.killpg(proc.pid, 9)
        proc.wait()


def _bare_openclaw(url: str, work: Path, env: dict[str, str], tui: bool = False) -> float:
    """``openclaw gateway run`` on the config the runtime writes, until ``[gateway] ready``;
    with ``tui``, then ``openclaw tui`` on it until it shows itself connected."""
    user = work / "user.json"
    openclaw_config(url, user)
    port = free_loopback_port()
    config = gateway_config(
        json.loads(user.read_text()), cwd=work, token="t", model=None, port=port
    )
    (work / "openclaw.json").write_text(json.dumps(config))
    (work / "state").mkdir()
    env |= {"OPENCLAW_CONFIG_PATH": str(work / "openclaw.json"),
            "OPENCLAW_STATE_DIR": str(work / "state"), "OPENCLAW_SKIP_CHANNELS": "1",
            "OPENCLAW_DISABLE_BONJOUR": "1", "OPENCLAW_NO_RESPAWN": "1",
            "PATH": f"{OPENCLAW_BIN}{os.pathsep}{env.get('PATH', '')}"}  # fmt: skip
    argv = [str(OPENCLAW_BIN / "openclaw"), "gateway", "run", "--port", str(port),
            "--bind", "loopback", "--allow-unconfigured"]  # fmt: skip
    started = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=work, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            if re.sub(rb"\x1b\[[0-9;]*m", b"", line).rstrip().endswith(b"[gateway] ready"):
                break
        else:
            raise RuntimeError(f"openclaw gateway exited ({proc.wait()}) before it was ready")
        if tui:
            tui_argv = [str(OPENCLAW_BIN / "openclaw"), "tui", "--session", "bench"]
            _pty_until(tui_argv, work, env, [re.compile(r"connected \| idle")], 40, 120)
        return time.perf_counter() - started
    finally:
        os.killpg(proc.pid, 9)
        proc.wait()


def _pty_until(
    argv: list[str], work: Path, env: dict[str, str], markers: list[re.Pattern[str]],
    rows: int, cols: int,
) -> None:  # fmt: skip
    """Run ``argv`` in a PTY until its screen (plain pyte) shows one of ``markers``."""
    screen = pyte.Screen(cols, rows)
    stream = pyte.ByteStream(screen)
    proc = PtyProcess.spawn(argv, cwd=str(work), env=env, dimensions=(rows, cols))
    try:
        while True:
            if proc.fd in select.select([proc.fd], [], [], 1.0)[0]:
                stream.feed(proc.read(65536))
            text = "\n".join(screen.display)
            if any(m.search(text) for m in markers):
                return
    finally:
        proc.kill(9)
        proc.wait()


def bare_pty(harness: str, url: str) -> float:
    """Seconds until the TUI draws its profile's ready marker, read with plain pyte
    (OpenClaw: its gateway ready, then its TUI connected)."""
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        work, env = Path(tmp), {**os.environ, "TERM": "xterm-256color"}
        if harness == "openclaw":
            return _bare_openclaw(url, work, env, tui=True)
        profile = ProfileRegistry([builtin_profile_dir()]).load(harness)
        argv = [str(CLI_BIN / harness), *profile.command.args]
        if harness == "claude":
            from agent_relay_runtime.harnesses.claude import seed_config_dir

            env |= claude_env(url)
            env["CLAUDE_CONFIG_DIR"] = str(seed_config_dir(work, work, env))
        elif harness == "codex":
            (work / "home").mkdir()
            trust = f'[projects."{work}"]\ntrust_level = "trusted"\n'
            (work / "home" / "config.toml").write_text(trust)
            env |= {"SCRIPTED_API_KEY": "k", "CODEX_HOME": str(work / "home")}
            argv += codex_args(url)
        else:
            env |= opencode_env(url)
            argv += ["--port", str(free_loopback_port()), "--hostname", "127.0.0.1"]
        started = time.perf_counter()
        markers = profile.ready.markers
        _pty_until(argv, work, env, markers, profile.terminal.rows, profile.terminal.cols)
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("harnesses", nargs="*", default=["claude", "codex", "opencode", "openclaw"])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--messages", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "harnesses.json")
    args = parser.parse_args()
    configure_logging("warning")
    # Harnesses benchmarked on another run keep their figures.
    results: dict[str, Any] = json.loads(args.out.read_text()) if args.out.exists() else {}
    rows = []
    with ScriptedModelServer({"default_text": "ok"}) as server:
        for harness in args.harnesses:
            if not cli(harness).exists():
                print(f"skip {harness}: not installed in {cli(harness).parent}")
                continue
            for mode in ("headless", "pty"):
                readies, delivered = [], []
                for _ in range(args.runs):
                    ready, latencies = anyio.run(runtime_run, harness, mode, server.url,
                                                 args.messages)  # fmt: skip
                    readies.append(ready)
                    delivered += latencies
                bare_of = bare_headless if mode == "headless" else bare_pty
                bares = [bare_of(harness, server.url) for _ in range(args.runs)]
                row = {
                    "ready_ms": median_ms(readies),
                    "bare_ready_ms": median_ms(bares),
                    "overhead_ms": round(median_ms(readies) - median_ms(bares), 1),
                    "delivered_p50_ms": median_ms(delivered),
                    "delivered_max_ms": round(max(delivered) * 1000, 1),
                    "runs": args.runs,
                    "messages": len(delivered),
                }
                results[f"{harness}/{mode}"] = row
                rows.append((f"{harness} {mode}", row))
                print(f"{harness} {mode}: {row}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\n{'harness / mode':18} {'ready':>9} {'bare CLI':>9} {'overhead':>9} "
          f"{'delivered p50':>14} {'max':>8}")  # fmt: skip
    for name, r in rows:
        print(f"{name:18} {r['ready_ms']:>8}ms {r['bare_ready_ms']:>8}ms "
              f"{r['overhead_ms']:>8}ms {r['delivered_p50_ms']:>13}ms "
              f"{r['delivered_max_ms']:>7}ms")  # fmt: skip
    print(f"\nwritten: {args.out}")


if __name__ == "__main__":
    main()

"""Runtime benchmarks. Prints a table and writes JSON (default bench/results/latest.json).

    python bench/run.py                  # everything (about two minutes)
    python bench/run.py delivery idle    # some of: delivery idle scale throughput

- delivery:   send -> delivered to an idle headless fake session, p50/p99 over N messages,
              in process and through the daemon's control API.
- idle:       the fake agent's end of turn -> the runtime's idle event, headless and PTY.
- scale:      100 idle PTY fake sessions in one daemon: daemon CPU over 30 s, daemon RSS.
- throughput: one PTY session printing 50 MiB; MB/s through transport + screen model,
              every byte accounted for; compared with a bare PTY reader and with the
              screen model alone.

Timings come from the machine it runs on; the README records them with the machine.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from agent_relay_runtime.contract import RelayMessage, SessionSpec  # noqa: E402
from agent_relay_runtime.logs import configure_logging  # noqa: E402
from agent_relay_runtime.observe.screen import ScreenModel  # noqa: E402
from agent_relay_runtime.profiles import ProfileRegistry, builtin_profile_dir  # noqa: E402
from agent_relay_runtime.supervisor import Supervisor  # noqa: E402
from agent_relay_runtime.testing import EventRecorder  # noqa: E402

FAKES = ROOT / "fixtures" / "fake_agents"
FAKE_CLAUDE = FAKES / "fake_claude_stream.py"
FAKE_TUI = FAKES / "fake_tui.py"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def summary(values_ms: list[float]) -> dict[str, float]:
    return {
        "n": len(values_ms),
        "p50_ms": round(pct(values_ms, 50), 3),
        "p99_ms": round(pct(values_ms, 99), 3),
        "max_ms": round(max(values_ms), 3),
        "mean_ms": round(statistics.fmean(values_ms), 3),
    }


def script_env(**script: Any) -> dict[str, str]:
    return {"FAKE_AGENT_SCRIPT": json.dumps(script)}


def supervisor(tmp: Path) -> Supervisor:
    return Supervisor(data_dir=tmp, profiles=ProfileRegistry([builtin_profile_dir()]))


# -- delivery latency ------------------------------------------------------------------------


async def delivery_in_process(count: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        async with supervisor(Path(tmp)) as sup:
            rec = EventRecorder()
            delivered_at: dict[str, float] = {}

            def stamp(event: Any) -> None:
                if event.type == "delivery.delivered":
                    delivered_at[event.receipt.message_id] = time.perf_counter()
                rec(event)

            sup.subscribe(stamp)
            spec = SessionSpec(
                harness="claude", name="c", command=str(FAKE_CLAUDE),
                env=script_env(turn_seconds=0),
            )  # fmt: skip
            session = await sup.create(spec)
            latencies = []
            for _ in range(count):
                message = RelayMessage(text="ping")
                mark = rec.mark()
                sent = time.perf_counter()
                await session.receive_message(message)
                await rec.wait_for(
                    "delivery.delivered",
                    where=lambda e, wanted=message.id: e.receipt.message_id == wanted,
                    after=mark,
                )
                latencies.append((delivered_at[message.id] - sent) * 1000)
                await session.wait_state(lambda s: s.is_idle, 10)
            return summary(latencies)


def start_daemon(data: Path, log: Path) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    with log.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "agent_relay_runtime", "serve", "--data-dir", str(data),
             "--log-level", "warning"],
            stdout=subprocess.PIPE, stderr=err, text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        )  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert "serving on" in line, line
    state = json.loads((data / "daemon.json").read_text())
    state["token"] = (data / "token").read_text().strip()
    return proc, state


def http_client(state: dict[str, Any]) -> httpx.Client:
    url = state["url"]
    transport = httpx.HTTPTransport(uds=url[5:]) if url.startswith("unix:") else None
    return httpx.Client(
        transport=transport,
        base_url="http://runtime" if transport else url,
        headers={"Authorization": f"Bearer {state['token']}"},
        timeout=120,
    )


def delivery_via_daemon(count: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="arrb-", dir="/tmp") as tmp:
        proc, state = start_daemon(Path(tmp) / "d", Path(tmp) / "log")
        try:
            with http_client(state) as http, http_client(state) as events:
                body = {"harness": "claude", "name": "c", "command": str(FAKE_CLAUDE),
                        "env": script_env(turn_seconds=0)}  # fmt: skip
                http.post("/v1/sessions", json=body).raise_for_status()
                latencies = []
                params = {"follow": 1, "session": "c"}
                with events.stream("GET", "/v1/events", params=params, timeout=None) as stream:
                    lines = stream.iter_lines()
                    for _ in range(count):
                        sent = time.perf_counter()
                        reply = http.post(
                            "/v1/sessions/c/messages", json={"text": "ping", "wait": True}
                        )
                        latencies.append((time.perf_counter() - sent) * 1000)
                        assert reply.json()["receipt"]["status"] == "delivered", reply.text
                        for line in lines:  # until the session is idle again
                            event = json.loads(line)
                            if event["type"] == "status.changed" and event["state"] == "idle":
                                break
                return summary(latencies)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)


# -- idle detection lag ------------------------------------------------------------------------


async def idle_lag(spec_of: Any, turns: int, text: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        trace = Path(tmp) / "trace.jsonl"
        async with supervisor(Path(tmp)) as sup:
            rec = EventRecorder()
            sup.subscribe(rec)
            session = await sup.create(spec_of(trace))
            for _ in range(turns):
                mark = rec.mark()
                await session.receive_message(RelayMessage(text=text))
                await rec.wait_for(
                    "status.changed", where=lambda e: e.state == "idle", after=mark, timeout=30
                )
            ends = [t["t"] for t in map(json.loads, trace.read_text().splitlines())
                    if t["event"] == "turn_end"]  # fmt: skip
            idles = [e.at.timestamp() for e in rec.matching(
                "status.changed", where=lambda e: e.state == "idle")]  # fmt: skip
            lags = [(idle - end) * 1000 for end, idle in zip(ends, idles, strict=True)]
            return summary(lags)


def headless_spec(trace: Path) -> SessionSpec:
    return SessionSpec(
        harness="claude", name="c", command=str(FAKE_CLAUDE),
        env=script_env(trace_file=str(trace), turn_seconds=0.05),
    )  # fmt: skip


def pty_spec(trace: Path) -> SessionSpec:
    return SessionSpec(
        harness="fake-tui", name="t", env=script_env(trace_file=str(trace), turn_seconds=0.05)
    )


# -- scale -------------------------------------------------------------------------------------


def scale(sessions: int, seconds: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="arrb-", dir="/tmp") as tmp:
        proc, state = start_daemon(Path(tmp) / "d", Path(tmp) / "log")
        daemon = psutil.Process(proc.pid)
        try:
            with http_client(state) as http:
                baseline_rss = daemon.memory_info().rss
                started = time.perf_counter()

                def create(i: int) -> None:
                    r = http.post("/v1/sessions", json={"harness": "fake-tui", "name": f"s{i}"})
                    r.raise_for_status()

                from concurrent.futures import ThreadPoolExecutor

                with ThreadPoolExecutor(16) as pool:
                    list(pool.map(create, range(sessions)))
                ready_s = time.perf_counter() - started
                live = http.get("/v1/sessions").json()["sessions"]
                assert len(live) == sessions and all(s["state"] == "ready" for s in live)
                before = daemon.cpu_times()
                time.sleep(seconds)  # the measurement window itself, not synchronization
                after = daemon.cpu_times()
                cpu = (after.user - before.user + after.system - before.system) / seconds * 100
                rss = daemon.memory_info().rss
                threads = daemon.num_threads()
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=120)
    return {
        "sessions": sessions,
        "window_s": seconds,
        "create_all_ready_s": round(ready_s, 2),
        "daemon_cpu_percent_of_one_core": round(cpu, 3),
        "daemon_rss_mb": round(rss / 1e6, 1),
        "daemon_rss_before_sessions_mb": round(baseline_rss / 1e6, 1),
        "daemon_threads": threads,
    }


# -- throughput ---------------------------------------------------------------------------------


def expected_print(size: int) -> bytes:
    """What the fake prints for print:N (see fixtures/fake_agents/README.md)."""
    filler = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ01\n"
    lines = (b"%08d " % i + filler for i in range((size + 63) // 64))
    data = b"".join(lines)[:size]
    return data if data.endswith(b"\n") else data[:-1] + b"\n"


async def throughput_runtime(size: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        async with supervisor(Path(tmp)) as sup:
            rec = EventRecorder()
            sup.subscribe(rec)
            session = await sup.create(SessionSpec(harness="fake-tui", name="t"))
            screen = session.driver._screen  # type: ignore[attr-defined]
            digest = hashlib.sha256()
            counted = {"bytes": 0, "first": 0.0, "last": 0.0}
            tail = bytearray()
            feed = screen.feed

            def tap(data: bytes) -> None:  # instrumentation: hash what the model is fed
                now = time.perf_counter()
                counted["first"] = counted["first"] or now
                counted["last"] = now
                counted["bytes"] += len(data)
                tail.extend(data)
                clean = tail.replace(b"\r\n", b"\n")
                keep = clean.endswith(b"\r")
                digest.update(clean[:-1] if keep else clean)
                tail.clear()
                if keep:
                    tail.extend(b"\r")
                feed(data)

            screen.feed = tap
            mark = rec.mark()
            await session.receive_message(RelayMessage(text=f"print:{size}"))
            await rec.wait_for(
                "status.changed", where=lambda e: e.state == "idle", after=mark, timeout=300
            )
            elapsed = counted["last"] - counted["first"]
            raw = screen.scrollback.bytes().replace(b"\r\n", b"\n")
            lines = screen.lines()
            expected_sha = hashlib.sha256(expected_print(size)).hexdigest()
            done_line = next(line for line in lines if line.startswith("print-done"))
            assert done_line == f"print-done {size} {expected_sha}", done_line
            assert f"print-done {size} {expected_sha}".encode() in raw
            # Everything the model was fed, minus the prompt/echo around the print.
            return {
                "bytes": counted["bytes"],
                "seconds": round(elapsed, 3),
                "mb_per_s": round(counted["bytes"] / elapsed / 1e6, 1),
                "pyte_skipped_fraction": round(screen.skipped_bytes / counted["bytes"], 4),
                "sha256_matches": True,
            }


def throughput_bare_pty(size: int) -> dict[str, float]:
    """A plain blocking read loop on a PTY running the fake, no screen model (baseline)."""
    import pty

    pid, fd = pty.fork()
    if pid == 0:
        os.execv(sys.executable, [sys.executable, str(FAKE_TUI)])
    buf = bytearray()
    first = 0.0
    try:
        while b"? for shortcuts" not in buf:
            buf += os.read(fd, 65536)
        os.write(fd, f"\x1b[200~print:{size}\x1b[201~".encode())
        os.write(fd, b"\r")
        total = 0
        window = b""
        while True:
            chunk = os.read(fd, 65536)
            first = first or time.perf_counter()
            total += len(chunk)
            window = (window + chunk)[-4096:]
            done = window.find(b"print-done")
            if done >= 0 and b"for shortcuts" in window[done:]:
                break
        elapsed = time.perf_counter() - first
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(fd)
    return {
        "bytes": total,
        "seconds": round(elapsed, 3),
        "mb_per_s": round(total / elapsed / 1e6, 1),
    }


def throughput_screen_model(size: int) -> dict[str, float]:
    data = expected_print(size).replace(b"\n", b"\r\n")
    model = ScreenModel(cols=120, rows=40)
    started = time.perf_counter()
    for start in range(0, len(data), 1 << 20):
        model.feed(data[start : start + (1 << 20)])
    model.lines()
    elapsed = time.perf_counter() - started
    return {
        "bytes": len(data),
        "seconds": round(elapsed, 3),
        "mb_per_s": round(len(data) / elapsed / 1e6, 1),
    }


# -- main ----------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 1e9, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("which", nargs="*", default=["delivery", "idle", "scale", "throughput"])
    parser.add_argument("--messages", type=int, default=500)
    parser.add_argument("--turns", type=int, default=50)
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--window", type=float, default=30.0)
    parser.add_argument("--mib", type=int, default=50)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "latest.json")
    args = parser.parse_args()
    configure_logging("warning")
    results: dict[str, Any] = {"machine": machine(), "when": time.strftime("%Y-%m-%d %H:%M")}
    rows: list[tuple[str, str, str, str]] = []
    quiet = ProfileRegistry([builtin_profile_dir()]).load("fake-tui").idle.quiet * 1000

    def row(name: str, result: str, target: str, ok: bool | None) -> None:
        rows.append((name, result, target, "" if ok is None else "ok" if ok else "MISS"))

    if "delivery" in args.which:
        inproc = anyio.run(delivery_in_process, args.messages)
        via = delivery_via_daemon(args.messages)
        results["delivery"] = {"in_process": inproc, "control_api": via}
        for label, r in (("in process", inproc), ("via control API", via)):
            row(
                f"send->delivered, headless ({label})",
                f"p50 {r['p50_ms']} ms / p99 {r['p99_ms']} ms",
                "p50 <= 10 / p99 <= 50",
                r["p50_ms"] <= 10 and r["p99_ms"] <= 50,
            )
    if "idle" in args.which:
        headless = anyio.run(idle_lag, headless_spec, args.turns, "turn")
        pty_lag = anyio.run(idle_lag, pty_spec, args.turns, "turn")
        results["idle_lag"] = {"headless": headless, "pty": pty_lag, "pty_quiet_window_ms": quiet}
        row(
            "idle lag, headless",
            f"p50 {headless['p50_ms']} / p99 {headless['p99_ms']} ms",
            "<= 20 ms",
            headless["p99_ms"] <= 20,
        )
        row(
            "idle lag, PTY",
            f"p50 {pty_lag['p50_ms']} / p99 {pty_lag['p99_ms']} ms",
            f"<= quiet {quiet:g} + 50 ms",
            pty_lag["p99_ms"] <= quiet + 50,
        )
    if "scale" in args.which:
        s = scale(args.sessions, args.window)
        results["scale"] = s
        cpu = s["daemon_cpu_percent_of_one_core"]
        row(
            f"{s['sessions']} idle PTY sessions: daemon CPU",
            f"{cpu} % of a core",
            "<= 2 %",
            cpu <= 2,
        )
        rss = s["daemon_rss_mb"]
        row(f"{s['sessions']} idle PTY sessions: daemon RSS", f"{rss} MB", "<= 150 MB", rss <= 150)
    if "throughput" in args.which:
        size = args.mib << 20
        runtime = anyio.run(throughput_runtime, size)
        bare = throughput_bare_pty(size)
        model = throughput_screen_model(size)
        results["throughput"] = {
            "runtime": runtime,
            "bare_pty_reader": bare,
            "screen_model_only": model,
        }
        row(
            f"PTY {args.mib} MiB through screen model",
            f"{runtime['mb_per_s']} MB/s (sha256 ok)",
            ">= 20 MB/s",
            runtime["mb_per_s"] >= 20,
        )
        ratio = runtime["mb_per_s"] / bare["mb_per_s"]
        row(
            "  vs bare PTY reader (no model)",
            f"{bare['mb_per_s']} MB/s",
            f"ratio {ratio:.2f}",
            None,
        )
        row("  screen model alone", f"{model['mb_per_s']} MB/s", "", None)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    width = max(len(r[0]) for r in rows)
    print(f"machine: {results['machine']}")
    print(f"{'measure':{width}}  {'result':38}  {'target':24}  ")
    for name, result, target, verdict in rows:
        print(f"{name:{width}}  {result:38}  {target:24}  {verdict}")
    print(f"\nwritten: {args.out}")


if __name__ == "__main__":
    main()

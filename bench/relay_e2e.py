"""Relay benchmarks end to end (issue 4): the REST API and the node socket on loopback.

    python bench/relay_e2e.py [--concurrency 1 8 32] [--messages 4000] [--seconds 8]
    python bench/relay_e2e.py --client httpx    # post with httpx instead of the raw client
    python bench/relay_e2e.py --runs 3          # each throughput run 3 times, the best kept
    python bench/relay_e2e.py --compare OLD.json   # ratios against figures written by --out
    python bench/relay_e2e.py --profile 8      # one REST run, the relay under cProfile
    python bench/relay_e2e.py --default-gc     # the relay with CPython's default GC thresholds
    python bench/relay_e2e.py --node lean      # the acking node on websockets' sans-I/O layer
    python bench/relay_e2e.py --node lean-burst   # that node acking once an agent a read
    python bench/relay_e2e.py --relay-cpus 0 1  # the relay on CPUs 0-1, the bench on the rest

- throughput: a relay (SqliteStore on a temp file, relay_app under uvicorn, in a process
  of its own, as `agent-relay-runtime relay` runs it) and 11 agents: a sender and 10
  members of #bench. Messages are posted over REST by C concurrent clients (each run:
  --messages, or fewer if --seconds pass first; --warmup before), each written durably
  with one delivery per member (fan-out 10) before the POST answers.
  - REST only: the 10 agents registered over REST, nobody online: deliveries are stored.
  - node: the 10 agents hosted by a websocket node that acks every `deliver` frame; also
    how long until every delivery has been pushed to the node, and its acks stored.
  CPU while posting, in cores: the relay's event loop and its other (SQLite worker)
  threads, this process (the clients, the node) and everything else on the machine.
  The clients (`RawClient`): one HTTP/1.1 keep-alive connection each, on asyncio streams,
  writing a prepared request and reading the answer's head and Content-Length body,
  about 0.1 ms of CPU a POST, so that on 2 cores they leave the CPU to the relay
  (httpx, with --client httpx, costs 2.5-3 ms a POST).
- latency: message -> `delivered` receipt into an idle headless fake Claude session: the
  relay, a Supervisor and its RelayHost (the node) in one process, as the daemon runs
  them with the embedded relay. t0 before the POST of `@worker sample i`, t1 when the
  supervisor reports `delivery.delivered` for that message, t2 when the relay's store has
  committed the delivered receipt; also when the POST answered. Warm-up samples first;
  before each sample the session is idle and the relay has the previous ack.

Prints a table (targets: >= 2000 msg/s with fan-out 10 on 2 cores; message -> delivered
p50 <= 15 ms, p99 <= 60 ms) and the machine; --out also writes the figures as JSON. The
machine is shared: take the best of several runs (--runs) and look at the "others"
column, the CPU other processes took meanwhile.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import platform
import pstats
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import psutil
import uvicorn
from websockets.asyncio.client import ClientConnection, connect
from websockets.client import ClientProtocol
from websockets.frames import Frame as WsFrame
from websockets.frames import Opcode
from websockets.http11 import Response
from websockets.uri import parse_uri

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src")]

from agent_relay_runtime.aio import Notifier  # noqa: E402
from agent_relay_runtime.contract import SessionSpec  # noqa: E402
from agent_relay_runtime.exceptions import SessionNotFound  # noqa: E402
from agent_relay_runtime.gc_policy import tune_for_serving  # noqa: E402
from agent_relay_runtime.logs import configure_logging  # noqa: E402
from agent_relay_runtime.node.hosting import RelayHost  # noqa: E402
from agent_relay_runtime.node.link import node_socket_url  # noqa: E402
from agent_relay_runtime.profiles import ProfileRegistry, builtin_profile_dir  # noqa: E402
from agent_relay_runtime.relay.embedded import bind_tcp, server_config  # noqa: E402
from agent_relay_runtime.relay.rest import relay_app  # noqa: E402
from agent_relay_runtime.relay.sqlite import SqliteStore  # noqa: E402
from agent_relay_runtime.supervisor import Supervisor  # noqa: E402

FAKE_CLAUDE = ROOT / "fixtures" / "fake_agents" / "fake_claude_stream.py"
FANOUT = 10
TARGET_RATE = 2000
TARGET_P50, TARGET_P99 = 15.0, 60.0
DEFAULT_GC = "RELAY_BENCH_DEFAULT_GC"  # set: the relay's processes keep CPython's GC defaults


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def machine() -> dict[str, Any]:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


# -- the relay ------------------------------------------------------------------------------------


@asynccontextmanager
async def running_relay(db: Path) -> AsyncIterator[tuple[str, str, SqliteStore, uvicorn.Server]]:
    """The store, one workspace and relay_app under uvicorn on a pre-bound loopback socket
    (configured as the embedded relay is); yields (url, workspace key, store, server)."""
    store = await SqliteStore.open(db)
    _, key = await store.create_workspace("bench")
    sock = bind_tcp("127.0.0.1", 0)  # as the embedded relay listens
    server = uvicorn.Server(server_config(relay_app(store)))
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve, [sock])
            yield f"http://127.0.0.1:{sock.getsockname()[1]}", key, store, server
            server.should_exit = True
    finally:
        sock.close()
        await store.aclose()


async def serve_relay_child(db: Path) -> None:
    """The relay alone (the child process): prints url and key, serves until stdin closes."""
    async with running_relay(db) as (url, key, _, server):
        print(json.dumps({"url": url, "key": key}), flush=True)
        stdin = anyio.wrap_file(sys.stdin)
        while await stdin.readline():
            pass
        server.should_exit = True


async def serve_floor_child() -> None:
    """The HTTP stack alone (the child process, --floor): uvicorn and Starlette as the relay
    runs them, the POST route behind as many routes as the relay's is, a handler that
    reads the body and answers a message-sized 201, nothing stored. What a POST costs
    before the relay does anything."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    answer = {"ok": True, "data": {"id": "msg_" + "0" * 24, "text": "m 1", "attachments": []}}

    async def post(request: Request) -> JSONResponse:
        await request.body()
        return JSONResponse(answer, status_code=201)

    before = [Route(f"/v1/other{n}/{{name}}", post, methods=["POST"]) for n in range(20)]
    app = Starlette(routes=[*before, Route("/v1/channels/{name}/messages", post, methods=["POST"])])
    sock = bind_tcp("127.0.0.1", 0)
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve, [sock])
        print(json.dumps({"url": f"http://127.0.0.1:{sock.getsockname()[1]}", "key": "-"}),
              flush=True)  # fmt: skip
        stdin = anyio.wrap_file(sys.stdin)
        while await stdin.readline():
            pass
        server.should_exit = True


# --relay-cpus: the CPUs the relay (and its writer) run on; the bench runs on the others.
RELAY_CPUS: set[int] | None = None


def _on_relay_cpus() -> None:
    if RELAY_CPUS is not None:
        os.sched_setaffinity(0, RELAY_CPUS)  # inherited by the writer and every thread


class RelayProcess:
    """A relay in a process of its own; closing its stdin ends it."""

    def __init__(self, tmp: Path, profile: Path | None = None, floor: bool = False) -> None:
        runner = [sys.executable]
        if profile is not None:
            runner += ["-m", "cProfile", "-o", str(profile)]
        runner += [str(Path(__file__).resolve())]
        runner += ["--serve-floor"] if floor else ["--serve-relay", str(tmp / "relay.db")]
        self.proc = subprocess.Popen(
            runner, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            preexec_fn=_on_relay_cpus,
        )  # fmt: skip
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.close()
            raise RuntimeError("the relay process did not start")
        info = json.loads(line)
        self.url, self.key = str(info["url"]), str(info["key"])
        self.ps = psutil.Process(self.proc.pid)

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far: the event loop (main thread), every other thread, and the
        relay's children (its SQLite writer process)."""
        main = other = 0.0
        for thread in self.ps.threads():
            spent = thread.user_time + thread.system_time
            if thread.id == self.proc.pid:
                main += spent
            else:
                other += spent
        writer = 0.0
        for child in self.ps.children(recursive=True):
            with contextlib.suppress(psutil.NoSuchProcess):
                writer += sum(child.cpu_times()[:2])
        return {"loop": main, "threads": other, "writer": writer}

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# -- throughput --------------------------------------------------------------------------------


ME = psutil.Process()


def busy() -> float:
    """CPU seconds the whole machine has spent busy."""
    times = psutil.cpu_times()
    return sum(times) - times.idle - getattr(times, "iowait", 0.0)


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


async def register(http: httpx.AsyncClient, key: str, name: str) -> str:
    reply = await http.post("/v1/agents", json={"name": name}, headers=bearer(key))
    reply.raise_for_status()
    return str(reply.json()["data"]["token"])


class Counts:
    """What a bench node counts (the `deliver` frames it acked, when the last came, the
    errors and replies it got), and waiting until a check on them holds."""

    def __init__(self) -> None:
        self.delivered = 0
        self.last_at = 0.0
        self.changed = Notifier()
        self.errors: list[dict[str, Any]] = []
        self.replies: dict[str, dict[str, Any]] = {}

    async def until(self, check: Any) -> None:
        with anyio.fail_after(120):
            while True:
                waiter = self.changed.waiter()
                if check():
                    return
                await waiter.wait()


class Node(Counts):
    """A raw node on /v1/node/ws that acks each `deliver` frame and counts them."""

    def __init__(self, ws: ClientConnection) -> None:
        super().__init__()
        self.ws = ws

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send(json.dumps({"v": 1, **frame}))

    async def request(self, frame: dict[str, Any]) -> dict[str, Any]:
        """Before `consume` runs: send, and read up to the answer."""
        await self.send(frame)
        while True:
            got = json.loads(await self.ws.recv())
            if got.get("id") == frame["id"]:
                if got.get("type") != "reply":
                    raise RuntimeError(f"node request refused: {got}")
                return dict(got["data"])

    async def consume(self) -> None:
        async for raw in self.ws:
            frame = json.loads(raw)
            kind = frame.get("type")
            if kind == "deliver":
                ack = {"v": 1, "type": "delivery.ack", "agent": frame["agent"],
                       "up_to_seq": frame["seq"]}  # fmt: skip
                await self.ws.send(json.dumps(ack))
                self.delivered += 1
                self.last_at = time.perf_counter()
            elif kind == "ping":
                await self.ws.send(json.dumps({"v": 1, "type": "pong", "id": frame.get("id")}))
            elif kind == "error":
                self.errors.append(frame)
            elif kind == "reply" and frame.get("id"):
                self.replies[frame["id"]] = frame
            self.changed.notify()


class LeanNode(asyncio.Protocol, Counts):
    """`Node` as cheap as the bench's HTTP clients (`--node lean`): websockets' sans-I/O
    client protocol on an asyncio transport, frames handled as they arrive (no reader task,
    no queue). Like `Node` it acks each `deliver` frame with a `delivery.ack` frame of its
    own; the frames it writes while handling one read go out in one write, as the relay
    writes its own. What the relay is sent and must parse is the same: it shows how much of
    the node path's limit is the bench's own node (~0.4 core instead of ~0.65 at C = 128;
    deliveries a second the same, README).

    With ``burst`` (`--node lean-burst`) it acks as a cumulative ack allows: once for each
    agent in what one read brought, up to the last seq of that agent's it held."""

    def __init__(self, uri: str, *, burst: bool = False) -> None:
        Counts.__init__(self)
        self.burst = burst
        self._held: dict[str, int] = {}  # with burst: agent -> the last seq read, not acked
        self.protocol = ClientProtocol(parse_uri(uri))
        self.transport: asyncio.Transport | None = None
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    @classmethod
    async def connect(cls, uri: str, *, burst: bool = False) -> LeanNode:
        host, _, port = uri.removeprefix("ws://").partition("/")[0].partition(":")
        node = cls(uri, burst=burst)
        await asyncio.get_running_loop().create_connection(lambda: node, host, int(port))
        await node.opened
        return node

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.protocol.send_request(self.protocol.connect())
        self._flush()

    def data_received(self, data: bytes) -> None:
        self.protocol.receive_data(data)
        for event in self.protocol.events_received():
            if isinstance(event, Response):
                if event.status_code != 101:
                    self.opened.set_exception(RuntimeError(f"node socket: {event.status_code}"))
                else:
                    self.opened.set_result(None)
            elif isinstance(event, WsFrame) and event.opcode is Opcode.TEXT:
                self._handle(json.loads(event.data))
        for agent, seq in self._held.items():
            self._queue({"type": "delivery.ack", "agent": agent, "up_to_seq": seq})
        self._held.clear()
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(exc or RuntimeError("node socket closed"))

    def _handle(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "deliver":
            if self.burst:
                self._held[frame["agent"]] = frame["seq"]
            else:
                self._queue({"type": "delivery.ack", "agent": frame["agent"],
                             "up_to_seq": frame["seq"]})  # fmt: skip
            self.delivered += 1
            self.last_at = time.perf_counter()
        elif kind == "ping":
            self._queue({"type": "pong", "id": frame.get("id")})
        elif kind == "error" and not frame.get("id"):
            self.errors.append(frame)
        elif kind in ("reply", "error") and frame.get("id"):
            self.replies[frame["id"]] = frame
        self.changed.notify()

    def _queue(self, frame: dict[str, Any]) -> None:
        self.protocol.send_text(json.dumps({"v": 1, **frame}).encode())

    def _flush(self) -> None:
        if self.transport is not None and (data := self.protocol.data_to_send()):
            self.transport.write(b"".join(data))

    async def send(self, frame: dict[str, Any]) -> None:
        self._queue(frame)
        self._flush()

    async def request(self, frame: dict[str, Any]) -> dict[str, Any]:
        await self.send(frame)
        await self.until(lambda: frame["id"] in self.replies)
        got = self.replies[frame["id"]]
        if got.get("type") != "reply":
            raise RuntimeError(f"node request refused: {got}")
        return dict(got["data"])

    async def consume(self) -> None:
        """Nothing to run: frames are handled as they arrive."""

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class RawClient:
    """A minimal HTTP/1.1 client on one keep-alive connection (asyncio streams): writes a
    prepared request, reads the answer's head and its Content-Length body. What the relay
    sends (uvicorn/h11: a Content-Length on every answer, no chunking) is all it reads."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, url: str) -> RawClient:
        host, _, port = url.removeprefix("http://").partition(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(reader, writer)

    async def post(self, path: str, token: str, body: bytes) -> tuple[int, bytes]:
        self.writer.write(
            f"POST {path} HTTP/1.1\r\nhost: relay\r\nauthorization: Bearer {token}\r\n"
            f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n".encode()
            + body
        )
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        start = head.lower().index(b"content-length:") + 15
        length = int(head[start : head.index(b"\r\n", start)])
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


async def post_all(
    url: str, token: str, numbers: Iterator[int], concurrency: int, latencies: list[float],
    client: str = "raw",
) -> None:  # fmt: skip
    path = "/v1/channels/bench/messages"

    async def raw_poster() -> None:
        http = await RawClient.connect(url)
        try:
            for n in numbers:  # shared by the posters: each number is posted once
                sent = time.perf_counter()
                status, answer = await http.post(path, token, b'{"text": "m %d"}' % n)
                latencies.append(time.perf_counter() - sent)
                if status != 201:
                    raise RuntimeError(f"post: {status} {answer[:200]!r}")
        finally:
            http.close()

    async def httpx_poster() -> None:
        async with httpx.AsyncClient(base_url=url, headers=bearer(token), timeout=120) as http:
            for n in numbers:
                sent = time.perf_counter()
                reply = await http.post(path, json={"text": f"m {n}"})
                latencies.append(time.perf_counter() - sent)
                if reply.status_code != 201:
                    raise RuntimeError(f"post: {reply.status_code} {reply.text}")

    async with anyio.create_task_group() as tg:
        for _ in range(concurrency):
            tg.start_soon(raw_poster if client == "raw" else httpx_poster)


def numbered(start: int, count: int, seconds: float) -> Iterator[int]:
    """``count`` numbers from ``start``, fewer if ``seconds`` pass first (from the first)."""
    deadline = time.perf_counter() + seconds
    for n in range(start, start + count):
        if time.perf_counter() > deadline:
            return
        yield n


async def throughput(
    messages: int, seconds: float, warmup: int, concurrency: int, with_node: bool,
    client: str = "raw", profile: Path | None = None, node_client: str = "websockets",
) -> dict[str, Any]:  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="relay-e2e-", dir="/var/tmp") as tmp:
        relay = RelayProcess(Path(tmp), profile)
        try:
            return await _throughput(
                relay, messages, seconds, warmup, concurrency, with_node, client, node_client
            )
        finally:
            relay.close()


async def floor(seconds: float, concurrency: int) -> dict[str, Any]:
    """Requests a second and the server's CPU a request, through the HTTP stack alone."""
    with tempfile.TemporaryDirectory(prefix="relay-e2e-", dir="/var/tmp") as tmp:
        server = RelayProcess(Path(tmp), floor=True)
        try:
            await post_all(server.url, "-", iter(range(200)), concurrency, [])
            latencies: list[float] = []
            before, started = server.cpu(), time.perf_counter()
            numbers = numbered(0, 1 << 30, seconds)
            await post_all(server.url, "-", numbers, concurrency, latencies)
            elapsed, after = time.perf_counter() - started, server.cpu()
        finally:
            server.close()
    spent = sum(after.values()) - sum(before.values())
    return {
        "concurrency": concurrency,
        "req_s": round(len(latencies) / elapsed),
        "server_cpu_ms_per_req": round(spent / len(latencies) * 1000, 3),
    }


async def _throughput(
    relay: RelayProcess,
    messages: int,
    seconds: float,
    warmup: int,
    concurrency: int,
    with_node: bool,
    client: str,
    node_client: str,
) -> dict[str, Any]:
    names = [f"agent-{n}" for n in range(FANOUT)]
    async with httpx.AsyncClient(base_url=relay.url, timeout=60) as http:
        sender = await register(http, relay.key, "sender")
        created = await http.post("/v1/channels", json={"name": "bench"}, headers=bearer(sender))
        created.raise_for_status()
        async with contextlib.AsyncExitStack() as stack:
            node: Node | LeanNode | None = None
            if with_node:
                uri = node_socket_url(relay.url, relay.key)
                if node_client.startswith("lean"):
                    node = await LeanNode.connect(uri, burst=node_client == "lean-burst")
                    stack.callback(node.close)
                else:
                    node = Node(await stack.enter_async_context(connect(uri)))
                await node.request({"id": "r1", "type": "node.register", "name": "bench",
                                    "capabilities": []})  # fmt: skip
                tokens = []
                for n, name in enumerate(names):
                    data = await node.request({"id": f"a{n}", "type": "agent.register",
                                               "name": name})  # fmt: skip
                    tokens.append(str(data["token"]))
            else:
                tokens = [await register(http, relay.key, name) for name in names]
            for token in tokens:
                joined = await http.post("/v1/channels/bench/join", headers=bearer(token))
                joined.raise_for_status()
            async with anyio.create_task_group() as tg:
                if node is not None:
                    tg.start_soon(node.consume)
                await post_all(relay.url, sender, iter(range(warmup)), concurrency, [], client)
                if node is not None:
                    await node.until(lambda: node.delivered >= warmup * FANOUT)
                latencies: list[float] = []
                cpu_before = relay.cpu()
                mine_before, all_before = ME.cpu_times(), busy()
                started = time.perf_counter()
                numbers = numbered(warmup, messages, seconds)
                await post_all(relay.url, sender, numbers, concurrency, latencies, client)
                posted = time.perf_counter()
                messages = len(latencies)
                result: dict[str, Any] = {}
                if node is not None:
                    expected = (warmup + messages) * FANOUT
                    await node.until(lambda: node.delivered >= expected)
                    pushed = node.last_at
                    # Frames are handled in order: once this answer comes, every ack is stored.
                    await node.send({"id": "last", "type": "node.heartbeat"})
                    await node.until(lambda: "last" in node.replies)
                    acked = time.perf_counter()
                    if node.errors:
                        raise RuntimeError(f"the relay refused frames: {node.errors[:3]}")
                    result |= {
                        "all_pushed_s": round(pushed - started, 3),
                        "last_push_after_last_answer_ms": round((pushed - posted) * 1000, 1),
                        "pushed_msg_s": round(messages / (pushed - started)),
                        "all_acks_stored_s": round(acked - started, 3),
                    }
                cpu_after = relay.cpu()
                mine_after, all_after = ME.cpu_times(), busy()
                ended = time.perf_counter()
                tg.cancel_scope.cancel()
    elapsed = posted - started
    loop = cpu_after["loop"] - cpu_before["loop"]
    threads = cpu_after["threads"] - cpu_before["threads"]
    writer = cpu_after["writer"] - cpu_before["writer"]
    mine = sum(mine_after[:2]) - sum(mine_before[:2])
    others = all_after - all_before - loop - threads - writer - mine
    span = ended - started
    return result | {
        "concurrency": concurrency,
        "messages": messages,
        "node": with_node,
        "msg_s": round(messages / elapsed),
        "deliveries_s": round(messages * FANOUT / elapsed),
        "post_p50_ms": round(pct(latencies, 50) * 1000, 2),
        "post_p99_ms": round(pct(latencies, 99) * 1000, 2),
        "relay_cpu_ms_per_msg": round((loop + threads + writer) / messages * 1000, 3),
        "relay_loop_cores": round(loop / span, 2),
        "relay_threads_cores": round(threads / span, 2),
        "relay_writer_cores": round(writer / span, 2),
        "clients_cores": round(mine / span, 2),
        "other_processes_cores": round(max(0.0, others) / span, 2),
    }


# -- latency ---------------------------------------------------------------------------------------


async def latency(samples: int, warmup: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="relay-e2e-", dir="/var/tmp") as tmp:
        async with running_relay(Path(tmp) / "relay.db") as (url, key, store, _):
            sup = Supervisor(
                data_dir=Path(tmp) / "runtime", profiles=ProfileRegistry([builtin_profile_dir()])
            )
            async with sup, anyio.create_task_group() as tg:
                host = RelayHost(sup, url, key, "bench-node")
                await tg.start(host.run)
                try:
                    result = await _latency(sup, host, store, url, key, samples, warmup)
                finally:
                    with contextlib.suppress(SessionNotFound):
                        await sup.release("worker")
                    tg.cancel_scope.cancel()
    return result


class StoreWatch:
    """When the relay's store has committed the delivered receipt of a message, and the
    highest seq acknowledged: the store's own calls, wrapped on this instance."""

    def __init__(self, store: SqliteStore) -> None:
        self.stored_at: dict[str, float] = {}
        self.acked = 0
        self.changed = Notifier()
        set_receipt, ack_many = store.set_receipt, store.ack_many

        async def timed_receipt(*args: Any, **kwargs: Any) -> Any:
            delivery = await set_receipt(*args, **kwargs)
            if delivery.status == "delivered":
                self.stored_at.setdefault(delivery.message_id, time.perf_counter())
            self.changed.notify()
            return delivery

        async def timed_acks(acks: Any) -> Any:  # a node's acks are stored in batches
            done = await ack_many(acks)
            for (_, up_to_seq), result in zip(acks, done, strict=True):
                if isinstance(result, int):
                    self.acked = max(self.acked, up_to_seq)
            self.changed.notify()
            return done

        store.set_receipt = timed_receipt  # type: ignore[method-assign]
        store.ack_many = timed_acks  # type: ignore[method-assign]

    async def until(self, check: Any) -> None:
        while True:
            waiter = self.changed.waiter()
            if check():
                return
            await waiter.wait()


async def _latency(
    sup: Supervisor, host: RelayHost, store: SqliteStore, url: str, key: str,
    samples: int, warmup: int,
) -> dict[str, Any]:  # fmt: skip
    delivered_at: dict[str, float] = {}
    seen = Notifier()
    idle = anyio.Event()
    watch = StoreWatch(store)

    def on_event(event: Any) -> None:
        if event.type == "delivery.delivered":
            delivered_at[event.receipt.message_id] = time.perf_counter()
            seen.notify()
        elif event.type == "status.changed" and event.state == "idle":
            idle.set()

    unsubscribe = sup.subscribe(on_event)
    try:
        spec = SessionSpec(
            harness="claude", name="worker", command=str(FAKE_CLAUDE),
            env={"FAKE_AGENT_SCRIPT": json.dumps({"turn_seconds": 0})},
        )  # fmt: skip
        await sup.create(spec)
        with anyio.fail_after(30):
            while True:
                waiter = host.registered.waiter()
                hosted = host.agents.get("worker")
                if hosted is not None and hosted.agent_id:
                    break
                await waiter.wait()
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            sender = await register(http, key, "sender")
            headers = bearer(sender)
            made = await http.post("/v1/channels", json={"name": "bench"}, headers=headers)
            made.raise_for_status()
            to_delivered: list[float] = []
            to_stored: list[float] = []
            to_answer: list[float] = []
            for n in range(warmup + samples):
                idle = anyio.Event()  # set by the idle after this sample's turn
                t0 = time.perf_counter()
                reply = await http.post(
                    "/v1/channels/bench/messages", json={"text": f"@worker sample {n}"},
                    headers=headers,
                )  # fmt: skip
                answered = time.perf_counter()
                reply.raise_for_status()
                message_id = str(reply.json()["data"]["id"])
                with anyio.fail_after(30):
                    while message_id not in delivered_at:
                        waiter = seen.waiter()
                        if message_id not in delivered_at:
                            await waiter.wait()
                    await watch.until(lambda m=message_id: m in watch.stored_at)
                    # Before the next sample: the session idle, the relay has the ack.
                    await watch.until(lambda seq=n + 1: watch.acked >= seq)
                    await idle.wait()
                if n >= warmup:
                    to_delivered.append((delivered_at[message_id] - t0) * 1000)
                    to_stored.append((watch.stored_at[message_id] - t0) * 1000)
                    to_answer.append((answered - t0) * 1000)
    finally:
        unsubscribe()

    def summary(values: list[float]) -> dict[str, float]:
        return {
            "p50_ms": round(pct(values, 50), 2), "p90_ms": round(pct(values, 90), 2),
            "p99_ms": round(pct(values, 99), 2), "max_ms": round(max(values), 2),
            "mean_ms": round(statistics.fmean(values), 2),
        }  # fmt: skip

    return {
        "samples": samples,
        "warmup": warmup,
        "message_to_delivered": summary(to_delivered),
        "message_to_receipt_stored": summary(to_stored),
        "post_answered": summary(to_answer),
    }


# -- profile ---------------------------------------------------------------------------------------


PROFILE_GROUPS = (
    ("waiting (epoll)", ("select.epoll",)),
    ("HTTP: uvicorn, h11, starlette", ("uvicorn", "h11", "starlette")),
    ("thread hops: anyio, queue, locks", ("anyio", "queue.py", "threading.py", "_thread.")),
    ("asyncio", ("asyncio", "selectors.py", "_contextvars", "_asyncio")),
    ("pydantic", ("pydantic",)),
    ("the relay's code", ("agent_relay_runtime",)),
    ("json", ("json",)),
    ("sockets", ("_socket.",)),
    ("start-up: imports", ("importlib", "builtins.compile", "builtins.exec", "marshal", "_imp.")),
)


def profile_run(args: argparse.Namespace) -> None:
    """One run at the given concurrency with the relay process under cProfile (its
    event loop thread only: SQLite's worker threads are not profiled). Prints the top
    functions by own time and the loop's own time by group; the profile stays in the
    temp dir for pstats."""
    out = Path(tempfile.gettempdir()) / "relay_e2e.prof"
    with_node = "rest" in args.skip  # --skip rest: profile a run with the acking node
    result = anyio.run(
        throughput, args.messages, args.seconds, args.warmup, args.profile, with_node,
        args.client, out, args.node,
    )  # fmt: skip
    how = "node" if with_node else "REST"
    print(f"profiled: {how}, C={args.profile}: {result['msg_s']} msg/s (slowed by cProfile)")
    stats = pstats.Stats(str(out))
    stats.sort_stats("tottime").print_stats(20)
    groups: dict[str, float] = {}
    for (path, _, name), (_, _, own, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        where = f"{path}:{name}"
        group = next((g for g, keys in PROFILE_GROUPS if any(k in where for k in keys)), "other")
        groups[group] = groups.get(group, 0.0) + own
    total = sum(groups.values())
    print("the relay's event loop thread, own time by group:")
    for group, own in sorted(groups.items(), key=lambda kv: -kv[1]):
        print(f"  {own:7.2f} s {own / total:6.1%}  {group}")
    print(f"profile: {out}")


# -- main ----------------------------------------------------------------------------------------


def best_of(runs: int, *args: Any) -> dict[str, Any]:
    """The throughput run with the most messages a second, of ``runs``; every rate kept."""
    found = [anyio.run(throughput, *args) for _ in range(runs)]
    best = max(found, key=lambda r: r["msg_s"])
    return best | {"msg_s_runs": [r["msg_s"] for r in found]}


def comparison(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Lines of a before/after table of the throughput runs both have."""
    before = {(r["node"], r["concurrency"]): r for r in old.get("throughput", {}).get("runs", [])}
    lines = [
        "| run | before msg/s | after msg/s | ratio | relay CPU/msg before → after |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in new.get("throughput", {}).get("runs", []):
        was = before.get((r["node"], r["concurrency"]))
        if was is None:
            continue
        how = "node" if r["node"] else "REST"
        lines.append(
            f"| {how}, C={r['concurrency']} | {was['msg_s']} | {r['msg_s']} |"
            f" {r['msg_s'] / was['msg_s']:.2f} | {was['relay_cpu_ms_per_msg']} →"
            f" {r['relay_cpu_ms_per_msg']} ms |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=40000, help="per throughput run, at most")
    parser.add_argument(
        "--seconds", type=float, default=8.0, help="posting time per throughput run, at most"
    )
    parser.add_argument("--warmup", type=int, default=200, help="messages before each run")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--runs", type=int, default=1, help="of each throughput run; the best")
    parser.add_argument("--client", choices=["raw", "httpx"], default="raw")
    parser.add_argument(
        "--node", choices=["websockets", "lean", "lean-burst"], default="websockets",
        help="the acking node: the websockets library's client, or sans-I/O on a transport"
        " (acking each delivery, or with lean-burst each agent once a read)",
    )  # fmt: skip
    parser.add_argument("--samples", type=int, default=200, help="latency samples")
    parser.add_argument("--warmup-samples", type=int, default=20)
    parser.add_argument("--skip", nargs="*", default=[], choices=["rest", "node", "latency"])
    parser.add_argument("--out", type=Path, help="also write the figures as JSON here")
    parser.add_argument("--compare", type=Path, help="figures of an earlier --out, for ratios")
    parser.add_argument(
        "--profile", type=int, metavar="C", help="profile one REST run (--skip rest: a node run)"
    )
    parser.add_argument(
        "--floor", action="store_true",
        help="also the HTTP stack alone (uvicorn + Starlette, a trivial handler), at each C",
    )  # fmt: skip
    parser.add_argument(
        "--default-gc", action="store_true",
        help="the relay with CPython's default collector thresholds (as before gc_policy)",
    )  # fmt: skip
    parser.add_argument(
        "--relay-cpus", type=int, nargs="+", metavar="CPU",
        help="run the relay on these CPUs and the bench (clients, node) on the others: what"
        " the relay carries on N cores of its own, on a machine with more than N",
    )  # fmt: skip
    parser.add_argument("--serve-relay", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--serve-floor", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    configure_logging("warning")
    if args.default_gc:
        os.environ[DEFAULT_GC] = "1"  # the relay processes started from here inherit it
    if not os.environ.get(DEFAULT_GC):
        tune_for_serving()  # as `agent-relay-runtime relay` and `serve` run
    if args.serve_relay is not None:
        anyio.run(serve_relay_child, args.serve_relay)
        return
    if args.relay_cpus:
        global RELAY_CPUS
        wanted, available = set(args.relay_cpus), os.sched_getaffinity(0)
        if not wanted < available:
            parser.error(f"--relay-cpus: this machine has CPUs {sorted(available)}; the relay's"
                         " must be among them and leave one for the bench")  # fmt: skip
        RELAY_CPUS = wanted
        os.sched_setaffinity(0, available - wanted)
    if args.serve_floor:
        anyio.run(serve_floor_child)
        return
    if args.profile is not None:
        profile_run(args)
        return
    results: dict[str, Any] = {"machine": machine(), "when": time.strftime("%Y-%m-%d %H:%M")}
    results["client"] = args.client
    results["node_client"] = args.node
    results["relay_cpus"] = sorted(RELAY_CPUS) if RELAY_CPUS is not None else "all"
    rows: list[tuple[str, str, str, str]] = []

    def row(name: str, result: str, target: str = "", ok: bool | None = None) -> None:
        rows.append((name, result, target, "" if ok is None else "ok" if ok else "MISS"))

    modes = [node for node, name in ((False, "rest"), (True, "node")) if name not in args.skip]
    runs = []
    for with_node, c in itertools.product(modes, args.concurrency):
        r = best_of(args.runs, args.messages, args.seconds, args.warmup, c, with_node,
                    args.client, None, args.node)  # fmt: skip
        runs.append(r)
        how = "10 agents on an acking node" if with_node else "10 agents, REST only"
        of = f" (best of {r['msg_s_runs']})" if args.runs > 1 else ""
        row(
            f"{how}, C={c}: msg/s posted (deliveries/s)",
            f"{r['msg_s']}{of} ({r['deliveries_s']}); {r['messages']} msgs, POST p50"
            f" {r['post_p50_ms']} ms",
            f">= {TARGET_RATE} msg/s",
            r["msg_s"] >= TARGET_RATE,
        )
        if with_node:
            row(
                "  every delivery pushed to the node (msg/s); acks stored",
                f"{r['all_pushed_s']} s ({r['pushed_msg_s']}); {r['all_acks_stored_s']} s",
                f">= {TARGET_RATE} msg/s",
                r["pushed_msg_s"] >= TARGET_RATE,
            )
        row(
            "  relay CPU/msg; cores: relay loop + threads + writer, clients, others",
            f"{r['relay_cpu_ms_per_msg']} ms; {r['relay_loop_cores']:.2f} +"
            f" {r['relay_threads_cores']:.2f} + {r.get('relay_writer_cores', 0):.2f},"
            f" {r['clients_cores']:.2f},"
            f" {r['other_processes_cores']:.2f}",
        )
    if runs:
        results["throughput"] = {"fanout": FANOUT, "runs": runs}
    if args.floor:
        floors = []
        for c in args.concurrency:
            f = max((anyio.run(floor, args.seconds, c) for _ in range(args.runs)),
                    key=lambda r: r["req_s"])  # fmt: skip
            floors.append(f)
            row(
                f"HTTP stack alone (trivial handler), C={c}: requests/s; server CPU a request",
                f"{f['req_s']}; {f['server_cpu_ms_per_req']} ms",
            )
        results["floor"] = floors
    if "latency" not in args.skip:
        lat = anyio.run(latency, args.samples, args.warmup_samples)
        results["latency"] = lat
        d, s = lat["message_to_delivered"], lat["message_to_receipt_stored"]
        a = lat["post_answered"]
        row(
            f"message -> delivered, idle headless fake ({args.samples})",
            f"p50 {d['p50_ms']} / p90 {d['p90_ms']} / p99 {d['p99_ms']} / max {d['max_ms']} ms",
            f"p50 <= {TARGET_P50:g} / p99 <= {TARGET_P99:g}",
            d["p50_ms"] <= TARGET_P50 and d["p99_ms"] <= TARGET_P99,
        )
        row(
            "  message -> delivered receipt stored by the relay",
            f"p50 {s['p50_ms']} / p90 {s['p90_ms']} / p99 {s['p99_ms']} / max {s['max_ms']} ms",
        )
        row(
            "  the POST answered (the message stored)",
            f"p50 {a['p50_ms']} / p90 {a['p90_ms']} / p99 {a['p99_ms']} / max {a['max_ms']} ms",
        )
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    m = results["machine"]
    print(
        f"fan-out {FANOUT}, durable writes; each throughput run {args.messages} messages or"
        f" {args.seconds:g} s of posting, whichever comes first; {args.client} clients,"
        f" {args.node} node; relay on CPUs {results['relay_cpus']}\n"
    )
    print("| measure | result | target | |\n| --- | --- | --- | --- |")
    for name, result, target, verdict in rows:
        print(f"| {name} | {result} | {target} | {verdict} |")
    if args.compare is not None:
        print(f"\nagainst {args.compare}:\n")
        print("\n".join(comparison(json.loads(args.compare.read_text()), results)))
    print(f"\nmachine: {m['cores']} cores, {m['cpu']}, Python {m['python']}, Linux {m['kernel']}")
    if args.out is not None:
        print(f"written: {args.out}")


if __name__ == "__main__":
    main()

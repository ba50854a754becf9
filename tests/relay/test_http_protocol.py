"""The relay's HTTP protocol writes an answer's head and body as one write, and on a
connection upgraded to a websocket, the frames written in one loop step as one write;
its websocket protocol writes a text frame's head itself."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from agent_relay_runtime.relay.embedded import bind_tcp, server_config
from agent_relay_runtime.relay.http_protocol import _JoiningTransport, text_writer
from agent_relay_runtime.serving import ReadyServer

from .conftest import RunningRelay

pytestmark = pytest.mark.anyio


class Recording(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, Any]] = []

    def write(self, data: Any) -> None:
        self.calls.append(("write", bytes(data)))

    def close(self) -> None:
        self.calls.append(("close", None))

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.calls.append(("set_protocol", protocol))


async def next_round() -> None:
    """Let the callbacks that are ready now run (those scheduled with call_soon)."""
    done = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_soon(done.set_result, None)
    await done


async def test_a_head_and_the_body_after_it_are_one_write() -> None:
    real = Recording()
    joining = _JoiningTransport(real)
    joining.write(b"HTTP/1.1 201 Created\r\n\r\n")
    assert real.calls == []
    joining.write(b'{"ok":true}')
    assert real.calls == [("write", b'HTTP/1.1 201 Created\r\n\r\n{"ok":true}')]
    await next_round()
    assert len(real.calls) == 1  # nothing held, nothing more written


async def test_a_write_alone_goes_out_once_the_ready_callbacks_ran() -> None:
    real = Recording()
    joining = _JoiningTransport(real)
    joining.write(b"lonely")
    await next_round()
    assert real.calls == [("write", b"lonely")]


async def test_close_sends_what_is_held_first() -> None:
    real = Recording()
    joining = _JoiningTransport(real)
    joining.write(b"head")
    joining.close()
    assert real.calls == [("write", b"head"), ("close", None)]


async def test_after_an_upgrade_the_frames_of_one_loop_step_are_one_write() -> None:
    real = Recording()
    joining = _JoiningTransport(real)
    protocol = asyncio.Protocol()
    joining.set_protocol(protocol)
    for n in range(3):
        joining.write(b"frame%d;" % n)
    assert real.calls == [("set_protocol", protocol)]  # held while the step runs
    await next_round()
    assert real.calls[1:] == [("write", b"frame0;frame1;frame2;")]
    joining.write(b"next")
    joining.close()  # sends what is held first
    assert real.calls[2:] == [("write", b"next"), ("close", None)]


async def test_many_answers_on_one_connection_are_whole(relay: RunningRelay) -> None:
    """Through the real server: each answer on a keep-alive connection parses whole."""
    async with httpx.AsyncClient(base_url=relay.url) as http:
        for n in range(30):
            answer = await http.get("/v1/agents", headers={"authorization": f"Bearer {relay.key}"})
            assert answer.status_code == 200, n
            assert answer.json()["ok"] is True


async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    while True:
        text = await websocket.receive_text()
        if text == "bye":
            await websocket.close(4000, "asked to")
            return
        if text.startswith("many "):  # answered in one write through the scope's writer
            write = text_writer(websocket.scope)
            assert write is not None
            assert write([f"{n}: é" * n for n in range(int(text.split()[1]))])
            continue
        await websocket.send_text(text)


WROTE_AFTER_CLOSE: list[bool] = []


async def written_after_close(websocket: WebSocket) -> None:
    await websocket.accept()
    write = text_writer(websocket.scope)
    assert write is not None and write(["before"])
    await websocket.close(4001)
    WROTE_AFTER_CLOSE.append(write(["after"]))  # in the step that wrote the close frame


async def test_an_app_writes_many_text_messages_in_one_call_while_the_connection_is_open() -> None:
    async with echo_server() as url, connect(url, max_size=None) as ws:
        with anyio.fail_after(10):
            await ws.send("many 300")
            assert [await ws.recv() for _ in range(300)] == [f"{n}: é" * n for n in range(300)]
            await ws.send("still echoed")
            assert await ws.recv() == "still echoed"


async def test_nothing_is_written_through_the_scopes_writer_once_the_app_closed() -> None:
    async with echo_server() as url, connect(url.replace("/echo", "/closing")) as ws:
        with anyio.fail_after(10):
            assert await ws.recv() == "before"
            assert await closed_with(ws) == 4001
        assert WROTE_AFTER_CLOSE == [False]


@asynccontextmanager
async def echo_server(max_size: int | None = None) -> AsyncIterator[str]:
    """An echo websocket served as the relay is served (`server_config`); its url."""
    routes = [WebSocketRoute("/echo", echo), WebSocketRoute("/closing", written_after_close)]
    config = server_config(Starlette(routes=routes))
    if max_size is not None:
        config.ws_max_size = max_size
    server = ReadyServer(config)
    sock = bind_tcp("127.0.0.1", 0)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve, [sock])
            with anyio.fail_after(10):
                await server.ready.wait()
            yield f"ws://127.0.0.1:{sock.getsockname()[1]}/echo"
            server.should_exit = True
    finally:
        sock.close()


async def closed_with(ws: ClientConnection) -> int | None:
    with anyio.fail_after(10), pytest.raises(ConnectionClosed) as closed:
        while True:
            await ws.recv()
    return closed.value.rcvd.code if closed.value.rcvd is not None else None


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536, 200_000])
async def test_a_text_frame_read_and_written_by_hand_is_the_text_sent(size: int) -> None:
    """The relay reads and writes text frames itself (`TextFrameWebSocketProtocol`):
    every length encoding (7, 16 and 64 bits) arrives whole both ways, non-ASCII text
    included, and closing still goes the usual way."""
    text = ("é" * size)[: size // 2] + "x" * (size - size // 2 * 2) if size else ""
    async with echo_server() as url, connect(url, max_size=None) as ws:
        for _ in range(2):
            await ws.send(text)
            assert await ws.recv() == text
        await ws.send("bye")
        assert await closed_with(ws) == 4000


async def test_pings_and_fragments_go_through_websockets_and_texts_still_arrive() -> None:
    async with echo_server() as url, connect(url) as ws:
        with anyio.fail_after(10):
            await (await ws.ping(b"p1"))  # answered while texts are read by hand
            await ws.send("one")
            assert await ws.recv() == "one"
            await ws.send(["frag", "mented"])  # a message in three frames
            assert await ws.recv() == "fragmented"
            await (await ws.ping(b"p2"))
            await ws.send("two")
            assert await ws.recv() == "two"


async def test_invalid_utf8_and_oversize_messages_are_refused_with_their_codes() -> None:
    async with echo_server(max_size=1000) as url:
        async with connect(url) as ws:
            await ws.send(b"\xff\xfe", text=True)
            assert await closed_with(ws) == 1007
        async with connect(url, max_size=None) as ws:
            await ws.send("x" * 1001)
            assert await closed_with(ws) == 1009


def masked_text(text: bytes, *, masked: bool = True) -> bytes:
    key = b"\x01\x02\x03\x04"
    body = bytes(b ^ key[i % 4] for i, b in enumerate(text)) if masked else text
    size = len(text)
    head = (
        bytes((0x81, size | (0x80 if masked else 0)))
        if size < 126
        else bytes((0x81, 126 | (0x80 if masked else 0))) + size.to_bytes(2)
    )
    return head + (key if masked else b"") + body


async def test_frames_split_anywhere_and_an_unmasked_frame_are_read_as_the_protocol_says() -> None:
    async with echo_server() as url:
        port = int(url.split(":")[2].split("/")[0])
        stream = await anyio.connect_tcp("127.0.0.1", port)
        async with stream:
            await stream.send(
                b"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            )
            got = b""
            with anyio.fail_after(10):
                while b"\r\n\r\n" not in got:
                    got += await stream.receive()
                assert got.startswith(b"HTTP/1.1 101")
                got = got.split(b"\r\n\r\n", 1)[1]
                # Two frames (one with a 16-bit length), sent a byte at a time.
                frames = masked_text(b"hello") + masked_text(b"y" * 300)
                for n in range(len(frames)):
                    await stream.send(frames[n : n + 1])
                want = bytes((0x81, 5)) + b"hello" + bytes((0x81, 126)) + (300).to_bytes(2)
                want += b"y" * 300
                while len(got) < len(want):
                    got += await stream.receive()
                assert got == want
                # A client's frame must be masked: refused, with 1002 (protocol error).
                await stream.send(masked_text(b"bare", masked=False))
                got = b""
                while len(got) < 4:
                    got += await stream.receive()
                assert got[0] == 0x88 and int.from_bytes(got[2:4]) == 1002

"""The relay's HTTP protocol writes an answer's head and body as one write, and on a
connection upgraded to a websocket, the frames written in one loop step as one write;
its websocket protocol writes a text frame's head itself."""

from __future__ import annotations

import asyncio
from typing import Any

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from agent_relay_runtime.relay.embedded import bind_tcp, server_config
from agent_relay_runtime.relay.http_protocol import _JoiningTransport
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
        await websocket.send_text(text)


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536, 200_000])
async def test_a_text_frame_written_by_hand_reads_as_the_text_sent(size: int) -> None:
    """The relay writes a text frame's head itself (`TextFrameWebSocketProtocol`): every
    length encoding (7, 16 and 64 bits) reads back whole, non-ASCII text included, and
    closing still goes the usual way."""
    server = ReadyServer(server_config(Starlette(routes=[WebSocketRoute("/echo", echo)])))
    sock = bind_tcp("127.0.0.1", 0)
    url = f"ws://127.0.0.1:{sock.getsockname()[1]}/echo"
    text = ("é" * size)[: size // 2] + "x" * (size - size // 2 * 2) if size else ""
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve, [sock])
            with anyio.fail_after(10):
                await server.ready.wait()
                async with connect(url, max_size=None) as ws:
                    for _ in range(2):
                        await ws.send(text)
                        assert await ws.recv() == text
                    await ws.send("bye")
                    with pytest.raises(ConnectionClosed) as closed:
                        await ws.recv()
                    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4000
            server.should_exit = True
    finally:
        sock.close()

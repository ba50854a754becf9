"""The relay's HTTP protocol writes an answer's head and body as one write, and on a
connection upgraded to a websocket, the frames written in one loop step as one write."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from agent_relay_runtime.relay.http_protocol import _JoiningTransport

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

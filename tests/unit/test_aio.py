"""aio.put and aio.take: a memory stream's send and receive, yielding to the loop only
when they must wait."""

from __future__ import annotations

import anyio
import pytest

from agent_relay_runtime.aio import put, take

pytestmark = pytest.mark.anyio


async def test_put_and_take_yield_only_when_they_must_wait() -> None:
    send, receive = anyio.create_memory_object_stream[int](1)
    others: list[str] = []

    async def other() -> None:
        others.append("ran")

    async with anyio.create_task_group() as tg, send, receive:
        tg.start_soon(other)  # runs at the first yield
        await put(send, 1)  # room: no yield
        assert await take(receive) == 1  # waiting: no yield
        assert others == []
        await put(send, 2)
        full = anyio.Event()

        async def third() -> None:
            full.set()
            await put(send, 3)  # no room: waits (the loop runs others)

        tg.start_soon(third)
        await full.wait()
        assert others == ["ran"]
        assert [await take(receive), await take(receive)] == [2, 3]
        send.close()
        with pytest.raises(anyio.EndOfStream):
            await take(receive)

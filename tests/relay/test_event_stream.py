"""The workspace's event log over WebSocket and SSE: resuming from a cursor after a
dropped connection gives every event once, in order."""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest
from relay_sdk import AsyncRelay
from websockets.asyncio.client import connect

from agent_relay_runtime.relay.client import RelayClient

from .conftest import RunningRelay

pytestmark = pytest.mark.anyio


async def poster(relay: RunningRelay) -> Any:
    client = AsyncRelay(api_key=relay.key, base_url=relay.url)
    me = client.as_agent((await client.agents.register("alice")).token)
    await me.channels.create("general")
    return me


async def read_ws(url: str, count: int) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    async with connect(url) as ws:
        with anyio.fail_after(10):
            while len(got) < count:
                frame = json.loads(await ws.recv())
                if frame.get("type") != "keepalive":
                    got.append(frame)
    return got  # the socket is dropped here, mid-stream


async def test_a_websocket_listener_resumes_without_gap_or_duplicate(relay: RunningRelay) -> None:
    me = await poster(relay)
    texts = [f"m{i}" for i in range(6)]
    for text in texts[:3]:
        await me.send("general", text)
    base = relay.url.replace("http://", "ws://") + f"/v1/events/ws?token={relay.key}"
    first = await read_ws(f"{base}&types=message.*&cursor=0", 2)
    for text in texts[3:]:
        await me.send("general", text)
    rest = await read_ws(f"{base}&types=message.*&cursor={first[-1]['seq']}", 4)
    seen = [e["data"]["text"] for e in first + rest]
    assert seen == texts
    seqs = [e["seq"] for e in first + rest]
    assert seqs == sorted(set(seqs))


async def test_an_sse_listener_resumes_and_filters(relay: RunningRelay) -> None:
    me = await poster(relay)
    client = RelayClient(relay.url, relay.key)
    try:
        await me.send("general", "one")
        await me.send("general", "two")
        got: list[dict[str, Any]] = []
        with anyio.fail_after(10):
            async for event in client.follow(0, types=["message.created"], agent="alice"):
                got.append(event)
                break  # drop the stream after the first event
            await me.send("general", "three")
            async for event in client.follow(got[-1]["seq"], types=["message.*"]):
                got.append(event)
                if len(got) == 3:
                    break
        assert [e["data"]["text"] for e in got] == ["one", "two", "three"]
        nobody, _ = await client.events_page(0, agent="nobody")
        assert nobody == []
    finally:
        await client.aclose()


async def test_a_bad_cursor_or_key_is_refused(relay: RunningRelay) -> None:
    client = RelayClient(relay.url, relay.key)
    wrong = RelayClient(relay.url, "relay_ws_nope")
    try:
        with pytest.raises(Exception, match="cursor"):
            await client.call("GET", "/v1/events", cursor="yesterday")
        with pytest.raises(Exception, match="unauthorized"):
            await wrong.events_page(0)
    finally:
        await client.aclose()
        await wrong.aclose()

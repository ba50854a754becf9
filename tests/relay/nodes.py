"""A raw node for tests: a websocket to /v1/node/ws that sends and reads frames."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from websockets.asyncio.client import ClientConnection, connect

from agent_relay_runtime.node.link import node_socket_url


class RawNode:
    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.ids = 0

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send(json.dumps({"v": 1, **frame}))

    async def request(self, frame: dict[str, Any]) -> dict[str, Any]:
        """Send with an id; the reply or error with that id (other frames are skipped)."""
        self.ids += 1
        await self.send({**frame, "id": f"t{self.ids}"})
        return await self.expect(lambda f: f.get("id") == f"t{self.ids}")

    async def expect(self, match: Any, timeout: float = 10) -> dict[str, Any]:
        with anyio.fail_after(timeout):
            while True:
                frame = json.loads(await self.ws.recv())
                if match(frame):
                    return dict(frame)

    async def next_of(self, kind: str, timeout: float = 10) -> dict[str, Any]:
        return await self.expect(lambda f: f.get("type") == kind, timeout)


@asynccontextmanager
async def raw_node(
    url: str,
    key: str,
    name: str = "node-1",
    capabilities: list[dict[str, Any]] | None = None,
    **register: Any,
) -> AsyncIterator[tuple[RawNode, dict[str, Any]]]:
    """A node registered as ``name`` (``register``: more fields of its ``node.register``)
    and the answer to that."""
    async with connect(node_socket_url(url, key)) as ws:
        node = RawNode(ws)
        reply = await node.request(
            {"type": "node.register", "name": name, "capabilities": capabilities or [],
             **register}
        )  # fmt: skip
        yield node, reply

"""A real embedded relay on loopback: the store on a temp file, the REST app in uvicorn."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest
import uvicorn

from agent_relay_runtime.relay.embedded import server_config
from agent_relay_runtime.relay.rest import relay_app
from agent_relay_runtime.relay.sqlite import SqliteStore


@dataclass
class RunningRelay:
    url: str
    key: str
    workspace_id: str
    store: SqliteStore


@pytest.fixture
async def relay(tmp_path: Path) -> AsyncIterator[RunningRelay]:
    store = await SqliteStore.open(tmp_path / "relay.db")
    workspace, key = await store.create_workspace("test")
    # Listening before uvicorn starts: a client connecting early waits in the backlog.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    server = uvicorn.Server(server_config(relay_app(store)))  # as the embedded relay runs
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve, [sock])
            yield RunningRelay(f"http://127.0.0.1:{port}", key, workspace.id, store)
            server.should_exit = True
    finally:
        sock.close()
        await store.aclose()

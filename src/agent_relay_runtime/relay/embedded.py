"""The embedded relay: the store in the data dir, one workspace, the app under uvicorn.

`serve` runs it in-process when no relay is configured; ``agent-relay-runtime relay``
runs it alone for a team to share. The workspace key is shown once by the store, so it
is kept in ``relay/workspace.json`` (mode 0600) in the data dir: the same workspace
(and key) comes back on every start.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import uvicorn

from ..exceptions import ConfigError
from ..fsutil import write_private
from ..serving import ReadyServer, listen_tcp
from .housekeeping import HousekeepingConfig
from .http_protocol import CoalescingHttpToolsProtocol, TextFrameWebSocketProtocol
from .rest import relay_app
from .sqlite import SqliteStore
from .store import Store

__all__ = ["EmbeddedRelay", "WorkspaceInfo", "open_workspace", "run_embedded", "server_config"]


@dataclass
class WorkspaceInfo:
    """What a client needs to join the workspace (the key is a secret)."""

    name: str
    key: str
    relay_url: str


async def open_workspace(store: Store, key_file: Path, name: str) -> tuple[str, str]:
    """The workspace whose key ``key_file`` keeps (created, and the file written, on
    first use); its name and key."""
    if key_file.exists():  # noqa: ASYNC240 - small files, once at start
        saved = json.loads(key_file.read_text())  # noqa: ASYNC240
        found = await store.workspace_by_key(str(saved.get("key", "")))
        if found is not None:
            return found.name, str(saved["key"])
        raise ConfigError(
            f"{key_file} holds no key of this relay's workspaces; restore it or remove it"
            " to create a new workspace"
        )
    workspace, key = await store.create_workspace(name)
    key_file.parent.mkdir(parents=True, exist_ok=True)
    write_private(key_file, json.dumps({"name": workspace.name, "key": key}))
    return workspace.name, key


def bind_tcp(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (port 0: any free one)."""
    try:
        address = ipaddress.ip_address("127.0.0.1" if host == "localhost" else host)
    except ValueError:
        raise ConfigError(f"relay host: an IP address, not {host!r}") from None
    return listen_tcp(address, port, f"the relay cannot listen on {host}:{port}", 512)


def server_config(app: Any) -> uvicorn.Config:
    """How the relay is served: no access log, the app's lifespan (its services),
    16 MiB node frames, and no per-message deflate on the node socket (its frames are
    small JSON: compressing them cost ~0.7 ms of CPU a message at fan-out 10). No
    proxy-headers middleware: the relay uses no client address, and it cost a layer of
    every request. An answer's head and body go out in one write
    (`CoalescingHttpToolsProtocol`)."""
    return uvicorn.Config(
        app, log_config=None, access_log=False, lifespan="on", timeout_graceful_shutdown=2,
        ws_max_size=16 << 20, ws_per_message_deflate=False, proxy_headers=False,
        http=CoalescingHttpToolsProtocol, ws=TextFrameWebSocketProtocol,
    )  # fmt: skip


@dataclass
class EmbeddedRelay:
    workspace: WorkspaceInfo
    store: SqliteStore
    server: ReadyServer


@contextlib.asynccontextmanager
async def run_embedded(
    relay_dir: Path,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    workspace: str = "local",
    housekeeping: HousekeepingConfig | None = None,
) -> AsyncIterator[EmbeddedRelay]:
    """Serve the relay until the block ends; yields once it accepts connections.
    ``housekeeping``: when agents whose heartbeats stopped go offline, and abandoned
    uploads are deleted (by default after 90 s and an hour)."""
    relay_dir.mkdir(parents=True, exist_ok=True, mode=0o700)  # noqa: ASYNC240 - once
    store = await SqliteStore.open(relay_dir / "relay.db")
    try:
        name, key = await open_workspace(store, relay_dir / "workspace.json", workspace)
        sock = bind_tcp(host, port)
        bound = sock.getsockname()[1]
        shown = f"[{host}]" if ":" in host else host
        info = WorkspaceInfo(name=name, key=key, relay_url=f"http://{shown}:{bound}")
        server = ReadyServer(server_config(relay_app(store, housekeeping=housekeeping)))
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(server.serve, [sock])
                await server.ready.wait()
                yield EmbeddedRelay(info, store, server)
                server.should_exit = True
        finally:
            sock.close()
    finally:
        await store.aclose()


async def serve_alone(relay_dir: Path, host: str, port: int, workspace: str) -> int:
    """``agent-relay-runtime relay``: serve until SIGINT or SIGTERM."""
    import signal

    async with run_embedded(relay_dir, host=host, port=port, workspace=workspace) as relay:
        info = relay.workspace
        print(
            f"relay serving workspace {info.name} on {info.relay_url}\n"
            f"workspace key: {info.key}\n"
            f"join with: agent-relay-runtime serve --relay-url {info.relay_url}"
            " --workspace-key <key>",
            flush=True,
        )
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                break
    return 0

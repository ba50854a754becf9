"""`serve`: the daemon. Composes the supervisor, the delivery port and the control API.

This module is the one owner of signals (uvicorn's own handlers are switched off): the
first SIGINT or SIGTERM releases every session and then stops the server; a second
SIGINT kills every session's processes at once.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import signal
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import uvicorn

from .. import __version__
from ..contract import utcnow
from ..eventlog import EventLog
from ..exceptions import ConfigError
from ..logs import get_logger
from ..node.fleet import Fleet
from ..node.hosting import RelayHost
from ..node.link import RelayRefused
from ..node.runtime_actions import register_runtime_actions
from ..port import LocalDeliveryPort
from ..relay.client import RelayClient, RelayError
from ..relay.embedded import WorkspaceInfo, run_embedded
from ..sdk import AgentRelay
from ..serving import ReadyServer, listen_tcp
from ..supervisor import Supervisor
from .api import create_app
from .relaying import RelayAccess
from .state import DataDir

__all__ = ["DaemonConfig", "serve"]

_UNIX_PATH_MAX = 107


@dataclass
class DaemonConfig:
    data_dir: Path
    listen: str | None = None  # "unix:PATH" or "HOST:PORT" on loopback; default the socket
    event_capacity: int = 10_000
    relay_url: str | None = None  # join this relay; None: run the embedded one
    workspace_key: str | None = None
    relay_port: int = 0  # the embedded relay's port on 127.0.0.1 (0: any free one)
    node_name: str = field(default_factory=socket.gethostname)
    # The agent.* actions (spawn and stop agents here): for everyone in the workspace
    # (None), only for these participants, or not registered at all (agent_actions off).
    agent_actions: bool = True
    agent_actions_for: list[str] | None = None


def bind_listener(listen: str | None, data: DataDir) -> tuple[socket.socket, str]:
    """A bound, listening socket for ``listen`` and the URL clients use to reach it."""
    if listen is None or listen.startswith("unix:"):
        path = Path(listen[5:]) if listen else data.socket_path
        if len(str(path)) > _UNIX_PATH_MAX:
            raise ConfigError(
                f"socket path too long ({len(str(path))} > {_UNIX_PATH_MAX}): {path}; "
                "use a shorter --data-dir or --listen 127.0.0.1:PORT"
            )
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # a stale socket from a daemon that died (the lock says none runs)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)  # created 0600: only this user may connect
        try:
            sock.bind(str(path))
        finally:
            os.umask(old)
        sock.listen(128)
        return sock, f"unix:{path}"
    host, _, port_text = listen.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    try:
        address = ipaddress.ip_address("127.0.0.1" if host == "localhost" else host)
        port = int(port_text)
    except ValueError:
        raise ConfigError(f"--listen: expected unix:PATH or HOST:PORT, got {listen!r}") from None
    if not address.is_loopback:
        raise ConfigError(f"--listen: the control API binds to loopback only, not {host}")
    sock = listen_tcp(address, port, f"--listen: cannot bind {listen}", 128)
    bound_port = sock.getsockname()[1]
    shown = f"[{address}]" if address.version == 6 else str(address)
    return sock, f"http://{shown}:{bound_port}"


async def serve(config: DaemonConfig) -> int:
    """Run the daemon until a signal stops it; the process exit status."""
    log = get_logger()
    data = DataDir(config.data_dir)
    data.ensure()
    lock_fd = data.lock()
    url: str | None = None
    try:
        token = data.token()
        sock, url = bind_listener(config.listen, data)
        events = EventLog(config.event_capacity)
        port = LocalDeliveryPort()
        async with contextlib.AsyncExitStack() as stack:
            info = await _workspace(config, data, stack)
            supervisor = await stack.enter_async_context(
                Supervisor(data_dir=data.root, event_log=events, subreaper=True)
            )
            port.bind(supervisor)
            supervisor.subscribe(port.publish)
            host = RelayHost(supervisor, info.relay_url, info.key, config.node_name)
            relay = RelayAccess(info, host, data.root / "relay")
            fleet = Fleet(supervisor, host, info.relay_url, info.key, data.root)
            stack.push_async_callback(fleet.aclose)
            if config.agent_actions:  # (its task group nests outside the one below)
                await _offer_agent_actions(config, info, fleet, stack)
            app = create_app(supervisor, port, token, relay)
            server = ReadyServer(
                uvicorn.Config(
                    app,
                    log_config=None,
                    access_log=False,
                    lifespan="off",
                    timeout_graceful_shutdown=3,
                )
            )
            async with anyio.create_task_group() as tg:
                tg.start_soon(server.serve, [sock])
                joined = anyio.CancelScope()
                tg.start_soon(_host, host, joined)
                await server.ready.wait()
                state = _state(url, data)
                data.write_state(state)
                _announce(state, info)
                log.info("daemon_started", url=url, data_dir=str(data.root), pid=os.getpid())
                await _until_signalled(supervisor, events, server, log)
                joined.cancel()  # the sessions are released: leave the workspace
        return 0
    finally:
        data.clear_state()
        if url is not None and url.startswith("unix:"):
            with contextlib.suppress(FileNotFoundError):
                Path(url[5:]).unlink()  # noqa: ASYNC240 - once, at exit
        os.close(lock_fd)


def _state(url: str, data: DataDir) -> dict[str, Any]:
    return {
        "pid": os.getpid(),
        "url": url,
        "version": __version__,
        "data_dir": str(data.root),
        "token_file": str(data.token_file),
        "started_at": utcnow().isoformat(),
    }


def _announce(state: dict[str, Any], info: WorkspaceInfo) -> None:
    print(
        f"agent-relay-runtime {state['version']} serving on {state['url']} "
        f"(pid {state['pid']}, data dir {state['data_dir']})\n"
        f"workspace {info.name} on {info.relay_url}, key {info.key}",
        flush=True,
    )


async def _workspace(
    config: DaemonConfig, data: DataDir, stack: contextlib.AsyncExitStack
) -> WorkspaceInfo:
    """The workspace this daemon belongs to: the embedded relay's, or a remote one's."""
    if config.relay_url is None:
        relay = await stack.enter_async_context(
            run_embedded(data.root / "relay", port=config.relay_port)
        )
        return relay.workspace
    if not config.workspace_key:
        raise ConfigError("--relay-url needs --workspace-key (or RELAY_WORKSPACE_KEY)")
    client = RelayClient(config.relay_url, config.workspace_key)
    try:
        workspace = await client.workspace()
    except RelayError as exc:
        raise ConfigError(f"cannot join {config.relay_url}: {exc.relay_message}") from None
    finally:
        await client.aclose()
    return WorkspaceInfo(str(workspace["name"]), config.workspace_key, config.relay_url)


async def _offer_agent_actions(
    config: DaemonConfig, info: WorkspaceInfo, fleet: Fleet, stack: contextlib.AsyncExitStack
) -> None:
    """Register agent.create and friends on the workspace, handled by this node."""
    relay = await AgentRelay.join(
        workspace_key=info.key, base_url=info.relay_url, as_name=f"runtime-{config.node_name}"
    )
    stack.push_async_callback(relay.close)
    allowed = config.agent_actions_for
    register_runtime_actions(
        relay, fleet, available_to=None if allowed is None else [{"name": n} for n in allowed]
    )
    await relay.actions_ready()


async def _host(host: RelayHost, scope: anyio.CancelScope) -> None:
    """Keep the node joined; a relay that refuses it stops the daemon with the reason."""
    try:
        with scope:
            await host.run()
    except RelayRefused as exc:
        get_logger().error("relay_refused_node", reason=str(exc))
        print(f"error: the relay refused this node: {exc}", file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGTERM)


async def _until_signalled(
    supervisor: Supervisor, events: EventLog, server: ReadyServer, log: Any
) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with anyio.create_task_group() as tg:
            stopping = False
            async for signum in signals:
                if not stopping:
                    stopping = True
                    count = len(supervisor.sessions())
                    log.info("daemon_stopping", signal=signal.Signals(signum).name)
                    print(
                        f"stopping: releasing {count} session(s); Ctrl-C again to force",
                        flush=True,
                    )
                    tg.start_soon(_stop, supervisor, events, server, tg)
                elif signum == signal.SIGINT:
                    log.warning("daemon_forced_stop")
                    print("forced stop: killing every session", flush=True)
                    supervisor.kill_all()


async def _stop(
    supervisor: Supervisor, events: EventLog, server: ReadyServer, tg: anyio.abc.TaskGroup
) -> None:
    await supervisor.shutdown("daemon stopping")
    events.close()
    server.should_exit = True
    tg.cancel_scope.cancel()  # stop listening for signals

"""OpenClaw: headless over a gateway the runtime starts (``openclaw gateway run``), or
attached to a running gateway with ``endpoint`` (+ its token); ``--mode pty`` adds the
TUI (``openclaw tui``) in front of the gateway the runtime starts.

A gateway the runtime starts gets a config of its own, written 0600 into the session's
directory: the user's config (``$OPENCLAW_CONFIG_PATH``, else ``openclaw.json`` in
``$OPENCLAW_STATE_DIR`` or ``~/.openclaw``), with the session's loopback token, the
session's working directory as the agent workspace, and the choices a managed session
needs — no bootstrap files written into the workspace, no heartbeat turns, no update
check, and (by environment) no chat channels, no LAN advertising, no self-respawn.
``isolated`` also gives it a state directory of its own; otherwise it shares the
user's (sessions, transcripts, credentials).
"""

from __future__ import annotations

import copy
import json
import os
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import json5

from ..contract import SessionMode, SessionSpec, new_id
from ..drivers.openclaw_gateway import OpenClawGatewayDriver, session_key
from ..drivers.openclaw_tui import OpenClawTuiDriver
from ..drivers.opencode_server import free_loopback_port
from ..exceptions import ConfigError
from ..session.core import Session, SessionOptions
from ..spawning import creator
from .context import (
    LaunchContext,
    launch_session,
    make_state_dir,
    resolve_cwd,
    resolve_executable,
    session_env,
)
from .mcp_wiring import openclaw_servers

__all__ = ["OpenClawHarness", "create", "gateway_config"]

create = creator("openclaw")  # create(relay=…, model=…): spawn and register, see spawning

# What a gateway started for one managed session must not do (see the module docstring).
_QUIET_ENV = {
    "OPENCLAW_SKIP_CHANNELS": "1",
    "OPENCLAW_DISABLE_BONJOUR": "1",
    "OPENCLAW_NO_RESPAWN": "1",
    "OPENCLAW_NO_AUTO_UPDATE": "1",
}


class OpenClawHarness:
    name = "openclaw"
    executable = "openclaw"

    async def create(self, spec: SessionSpec, ctx: LaunchContext) -> Session:
        if spec.mode == SessionMode.PTY and spec.endpoint:
            raise ConfigError(
                "openclaw: --mode pty runs the TUI on a gateway of its own; "
                "with --endpoint, use --mode headless"
            )
        if spec.yolo:
            # OpenClaw asks only when its config says so; --yolo answers every ask with yes.
            spec = spec.model_copy(update={"approvals": "allow"})
        session_id = new_id("ses")
        key = session_key(spec.resume) if spec.resume else f"agent:main:relay-{session_id}"
        cwd = resolve_cwd(spec)
        options = SessionOptions(ready_timeout=spec.ready_timeout or 120.0)
        if spec.endpoint:
            if spec.model or spec.isolated:
                raise ConfigError(
                    "openclaw: --model and --isolated configure a gateway the runtime starts; "
                    "an attached gateway (--endpoint) keeps its own settings"
                )
            _check_endpoint(spec.endpoint)
            driver = OpenClawGatewayDriver(
                cwd=cwd, env={}, key=key, endpoint=spec.endpoint, token=spec.password,
                resume=bool(spec.resume),
            )  # fmt: skip
            return await launch_session(
                ctx, spec, driver=driver, session_id=session_id, options=options
            )
        user_env = {**os.environ, **spec.env}
        state_dir = make_state_dir(ctx, spec, session_id)
        token = secrets.token_urlsafe(32)
        port = free_loopback_port()
        config = gateway_config(
            _user_config(user_env),
            cwd=cwd,
            token=token,
            model=spec.model,
            log_file=state_dir / "gateway.log",
            port=port,
        )
        openclaw_servers(spec.mcp_servers, config)
        config_path = state_dir / "openclaw.json"
        fd = os.open(config_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(config, handle, indent=2)
        layer = {**_QUIET_ENV, "OPENCLAW_CONFIG_PATH": str(config_path)}
        if spec.isolated:
            (state_dir / "state").mkdir(mode=0o700)
            layer["OPENCLAW_STATE_DIR"] = str(state_dir / "state")
        executable = resolve_executable(spec.command or self.executable, user_env)
        if spec.command and os.sep in spec.command:
            layer["PATH"] = f"{_launcher_dir(spec.command)}{os.pathsep}{user_env.get('PATH', '')}"
        common: dict[str, Any] = {
            "cwd": cwd, "env": session_env(session_id, spec.env, layer), "key": key,
            "executable": executable, "token": token, "resume": bool(spec.resume),
            "args": spec.args, "port": port,
        }  # fmt: skip
        driver = (
            OpenClawTuiDriver(tui_argv=[executable, "tui", "--session", key], **common)
            if spec.mode == SessionMode.PTY
            else OpenClawGatewayDriver(**common)
        )
        return await launch_session(
            ctx, spec, driver=driver, session_id=session_id, options=options, state_dir=state_dir
        )


def _check_endpoint(endpoint: str) -> None:
    try:
        url = urlsplit(endpoint)
        valid = url.scheme in ("ws", "wss", "http", "https") and bool(url.hostname)
        url.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        valid = False
    if not valid:
        raise ConfigError(f"openclaw: --endpoint {endpoint!r} is not a ws://HOST:PORT URL")


def _user_config(env: dict[str, str]) -> dict[str, Any]:
    """The user's OpenClaw config (JSON5), or an empty one when there is none."""
    if env.get("OPENCLAW_CONFIG_PATH"):
        path = Path(env["OPENCLAW_CONFIG_PATH"]).expanduser()
    else:
        state = Path(env.get("OPENCLAW_STATE_DIR") or Path(env.get("HOME", "~")) / ".openclaw")
        path = state.expanduser() / "openclaw.json"
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"openclaw: cannot read its config {path}: {exc}") from exc
    try:
        config = json5.loads(text)
    except ValueError as exc:
        raise ConfigError(f"openclaw: its config {path} does not parse: {exc}") from exc
    if not isinstance(config, dict):
        raise ConfigError(f"openclaw: its config {path} is not an object")
    return config


def gateway_config(
    base: dict[str, Any],
    *,
    cwd: Path,
    token: str,
    model: str | None,
    log_file: Path | None = None,
    port: int | None = None,
) -> dict[str, Any]:
    """``base`` with what a gateway hosting one managed session needs; ``log_file`` is
    where its log goes unless the user's config names a file (else ``/tmp/openclaw/``).
    The port and token in it are also how the TUI finds the gateway."""
    config = copy.deepcopy(base)
    if log_file is not None:
        _table(config, "logging").setdefault("file", str(log_file))
    gateway = _table(config, "gateway")
    gateway.update(mode="local", bind="loopback", auth={"mode": "token", "token": token})
    if port is not None:
        gateway["port"] = port
    defaults = _table(_table(config, "agents"), "defaults")
    defaults["workspace"] = str(cwd)
    defaults["skipBootstrap"] = True  # else AGENTS.md, SOUL.md, … and a `git init` in cwd
    _table(defaults, "heartbeat")["every"] = "0m"  # turns come from messages only
    if model:
        current = defaults.get("model")
        defaults["model"] = {**(current if isinstance(current, dict) else {}), "primary": model}
    _table(config, "update")["checkOnStart"] = False
    return config


def _table(parent: dict[str, Any], name: str) -> dict[str, Any]:
    table = parent.get(name)
    if not isinstance(table, dict):
        table = parent[name] = {}
    return table


def _launcher_dir(command: str) -> Path:
    """The directory of the command as given, not resolved: an npm-installed launcher
    (`#!/usr/bin/env node`) needs the Node that npm's ``.bin`` holds beside its symlink."""
    return Path(command).expanduser().absolute().parent

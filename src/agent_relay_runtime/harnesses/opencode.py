"""OpenCode: headless over ``opencode serve`` (default; or attached to a running server
with ``endpoint``), or its TUI in a PTY."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

from ..contract import SessionMode, SessionSpec, new_id
from ..drivers.opencode_server import OpenCodeServerDriver, free_loopback_port
from ..drivers.opencode_tui import OpenCodeTuiDriver
from ..drivers.terminal import TerminalDriver
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
from .mcp_wiring import opencode_env
from .terminal import TerminalLaunch, create_terminal_session

__all__ = ["OpenCodeHarness", "create"]

create = creator("opencode")  # create(relay=…, model=…): spawn and register, see spawning


class OpenCodeHarness:
    name = "opencode"
    executable = "opencode"

    async def create(self, spec: SessionSpec, ctx: LaunchContext) -> Session:
        if spec.mode == SessionMode.PTY:
            if spec.endpoint:
                raise ConfigError("opencode: --endpoint attaches headless; it has no pty mode")
            return await self._create_tui(spec, ctx)
        session_id = new_id("ses")
        state_dir = make_state_dir(ctx, spec, session_id) if spec.isolated else None
        cwd = resolve_cwd(spec)
        env = session_env(
            session_id, _xdg_env(state_dir), _yolo_env(spec), spec.env,
            opencode_env(spec.mcp_servers, spec.env),
        )  # fmt: skip
        if spec.endpoint:
            driver = OpenCodeServerDriver(
                cwd=cwd,
                env=env,
                endpoint=spec.endpoint,
                password=spec.password,
                model=spec.model,
                resume=spec.resume,
            )
        else:
            driver = OpenCodeServerDriver(
                cwd=cwd,
                env=env,
                executable=resolve_executable(spec.command or self.executable, env),
                model=spec.model,
                resume=spec.resume,
                args=spec.args,
            )
        options = SessionOptions(ready_timeout=spec.ready_timeout or 60.0)
        return await launch_session(
            ctx, spec, driver=driver, session_id=session_id, options=options, state_dir=state_dir
        )

    async def _create_tui(self, spec: SessionSpec, ctx: LaunchContext) -> Session:
        """The TUI in a PTY, hosting its server on a port we choose, read through it."""
        launch = TerminalLaunch()
        if spec.isolated:
            launch.state_dir = make_state_dir(ctx, spec, launch.session_id)
        port, password = free_loopback_port(), secrets.token_urlsafe(24)
        launch.env = {
            **_xdg_env(launch.state_dir),
            **_yolo_env(spec),
            **opencode_env(spec.mcp_servers, spec.env),
            "OPENCODE_SERVER_PASSWORD": password,
            "OPENCODE_SERVER_USERNAME": "opencode",
        }
        launch.args = ["--port", str(port), "--hostname", "127.0.0.1"]
        if spec.resume:
            launch.args += ["--session", spec.resume]

        def driver(**kw: Any) -> TerminalDriver:
            url = f"http://127.0.0.1:{port}"
            return OpenCodeTuiDriver(**kw, base_url=url, password=password, resume=spec.resume)

        launch.driver = driver
        return await create_terminal_session(
            self.name, ctx.profiles.load("opencode"), spec, ctx, launch
        )


def _yolo_env(spec: SessionSpec) -> dict[str, str]:
    """--yolo: every permission allowed (OpenCode reads OPENCODE_PERMISSION as inline JSON)."""
    if not spec.yolo:
        return {}
    allow = dict.fromkeys(("edit", "bash", "webfetch", "external_directory"), "allow")
    return {"OPENCODE_PERMISSION": json.dumps(allow)}


def _xdg_env(state_dir: Path | None) -> dict[str, str]:
    """Separate XDG dirs (OpenCode's config, data, cache and state) for an isolated session."""
    if state_dir is None:
        return {}
    env = {}
    for name in ("DATA", "CONFIG", "CACHE", "STATE"):
        path = state_dir / "opencode" / name.lower()
        path.mkdir(parents=True)
        env[f"XDG_{name}_HOME"] = str(path)
    return env

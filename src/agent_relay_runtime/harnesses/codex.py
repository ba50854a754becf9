"""Codex: headless over ``codex app-server`` (default), or its TUI in a PTY."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..contract import SessionMode, SessionSpec, new_id
from ..drivers.codex_app_server import CodexAppServerDriver
from ..drivers.codex_tui import CodexTuiDriver
from ..drivers.terminal import TerminalDriver
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
from .mcp_wiring import codex_args
from .terminal import TerminalLaunch, create_terminal_session

__all__ = ["CodexHarness", "create"]

create = creator("codex")  # create(relay=…, model=…): spawn and register, see spawning

_ISOLATED_CONFIG = """\
# Written by agent-relay-runtime for an isolated session; removed on release.
check_for_update_on_startup = false

[features]
daemon_auto_start = false
"""


class CodexHarness:
    name = "codex"
    executable = "codex"

    async def create(self, spec: SessionSpec, ctx: LaunchContext) -> Session:
        if spec.mode == SessionMode.PTY:
            return await self._create_tui(spec, ctx)
        session_id = new_id("ses")
        cwd = resolve_cwd(spec)
        state_dir = make_state_dir(ctx, spec, session_id) if spec.isolated else None
        extra_env = _home_env(state_dir, cwd)
        env = session_env(session_id, extra_env, spec.env)
        driver = CodexAppServerDriver(
            executable=resolve_executable(spec.command or self.executable, env),
            cwd=cwd,
            env=env,
            model=spec.model,
            args=[*codex_args(spec.mcp_servers), *spec.args],
            resume=spec.resume,
            yolo=spec.yolo,
        )
        options = SessionOptions(ready_timeout=spec.ready_timeout or 60.0)
        return await launch_session(
            ctx, spec, driver=driver, session_id=session_id, options=options, state_dir=state_dir
        )

    async def _create_tui(self, spec: SessionSpec, ctx: LaunchContext) -> Session:
        """The TUI in a PTY, read exactly through its rollout file."""
        launch = TerminalLaunch()
        cwd = resolve_cwd(spec)
        if spec.isolated:
            launch.state_dir = make_state_dir(ctx, spec, launch.session_id)
        launch.env = _home_env(launch.state_dir, cwd)
        home = Path(
            launch.env.get("CODEX_HOME")
            or spec.env.get("CODEX_HOME")
            or os.environ.get("CODEX_HOME")
            or Path.home() / ".codex"
        )
        launch.args += codex_args(spec.mcp_servers)
        if spec.yolo:
            launch.args.append("--dangerously-bypass-approvals-and-sandbox")
        if spec.resume:
            launch.args = ["resume", spec.resume, *launch.args]

        def driver(**kw: Any) -> TerminalDriver:
            return CodexTuiDriver(**kw, codex_home=home, thread_id=spec.resume)

        launch.driver = driver
        return await create_terminal_session(
            self.name, ctx.profiles.load("codex"), spec, ctx, launch
        )


def _home_env(state_dir: Path | None, cwd: Path) -> dict[str, str]:
    """CODEX_HOME for an isolated session: a config that trusts its working directory
    and never checks for updates or starts a detached daemon."""
    if state_dir is None:
        return {}
    home = state_dir / "codex-home"
    home.mkdir()
    trust = f'\n[projects."{cwd}"]\ntrust_level = "trusted"\n'
    (home / "config.toml").write_text(_ISOLATED_CONFIG + trust)
    return {"CODEX_HOME": str(home)}

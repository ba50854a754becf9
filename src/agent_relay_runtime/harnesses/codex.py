"""Codex: headless over ``codex app-server`` (default), or its TUI in a PTY."""

from __future__ import annotations

from ..contract import SessionMode, SessionSpec, new_id
from ..drivers.codex_app_server import CodexAppServerDriver
from ..session.core import Session, SessionOptions
from .context import (
    LaunchContext,
    launch_session,
    make_state_dir,
    resolve_cwd,
    resolve_executable,
    session_env,
)
from .terminal import create_terminal_session

__all__ = ["CodexHarness"]

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
            return await create_terminal_session(self.name, ctx.profiles.load("codex"), spec, ctx)
        session_id = new_id("ses")
        cwd = resolve_cwd(spec)
        state_dir = make_state_dir(ctx, spec, session_id) if spec.isolated else None
        extra_env: dict[str, str] = {}
        if state_dir is not None:
            home = state_dir / "codex-home"
            home.mkdir()
            trust = f'\n[projects."{cwd}"]\ntrust_level = "trusted"\n'
            (home / "config.toml").write_text(_ISOLATED_CONFIG + trust)
            extra_env["CODEX_HOME"] = str(home)
        env = session_env(session_id, extra_env, spec.env)
        driver = CodexAppServerDriver(
            executable=resolve_executable(spec.command or self.executable, env),
            cwd=cwd,
            env=env,
            model=spec.model,
            args=spec.args,
            resume=spec.resume,
            yolo=spec.yolo,
        )
        options = SessionOptions(ready_timeout=spec.ready_timeout or 60.0)
        return await launch_session(
            ctx, spec, driver=driver, session_id=session_id, options=options, state_dir=state_dir
        )

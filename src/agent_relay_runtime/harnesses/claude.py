"""Claude Code: headless over stream-json (default), or its TUI in a PTY."""

from __future__ import annotations

from ..contract import SessionMode, SessionSpec, new_id
from ..drivers.claude_stream import ClaudeStreamDriver
from ..session.core import Session, SessionOptions
from .context import (
    LaunchContext,
    launch_session,
    resolve_cwd,
    resolve_executable,
    session_env,
)
from .terminal import create_terminal_session

__all__ = ["ClaudeHarness"]


class ClaudeHarness:
    name = "claude"
    executable = "claude"

    async def create(self, spec: SessionSpec, ctx: LaunchContext) -> Session:
        if spec.mode == SessionMode.PTY:
            return await create_terminal_session(self.name, ctx.profiles.load("claude"), spec, ctx)
        session_id = new_id("ses")
        env = session_env(session_id, spec.env)
        driver = ClaudeStreamDriver(
            executable=resolve_executable(spec.command or self.executable, env),
            cwd=resolve_cwd(spec),
            env=env,
            model=spec.model,
            args=spec.args,
        )
        options = SessionOptions(ready_timeout=spec.ready_timeout or 60.0)
        return await launch_session(
            ctx, spec, driver=driver, session_id=session_id, options=options
        )

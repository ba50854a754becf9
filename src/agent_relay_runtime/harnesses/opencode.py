"""OpenCode: headless over ``opencode serve`` (default; or attached to a running server
with ``endpoint``), or its TUI in a PTY."""

from __future__ import annotations

from ..contract import SessionMode, SessionSpec, new_id
from ..drivers.opencode_server import OpenCodeServerDriver
from ..exceptions import ConfigError
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

__all__ = ["OpenCodeHarness"]


class OpenCodeHarness:
    name = "opencode"
    executable = "opencode"

    async def create(self, spec: SessionSpec, ctx: LaunchContext) -> Session:
        if spec.mode == SessionMode.PTY:
            if spec.endpoint:
                raise ConfigError("opencode: --endpoint attaches headless; it has no pty mode")
            profile = ctx.profiles.load("opencode")
            return await create_terminal_session(self.name, profile, spec, ctx)
        session_id = new_id("ses")
        cwd = resolve_cwd(spec)
        state_dir = make_state_dir(ctx, spec, session_id) if spec.isolated else None
        extra_env: dict[str, str] = {}
        if state_dir is not None:
            for name in ("DATA", "CONFIG", "CACHE", "STATE"):
                path = state_dir / "opencode" / name.lower()
                path.mkdir(parents=True)
                extra_env[f"XDG_{name}_HOME"] = str(path)
        env = session_env(session_id, extra_env, spec.env)
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

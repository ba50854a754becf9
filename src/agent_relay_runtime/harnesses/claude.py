"""Claude Code: headless over stream-json (default), or its TUI in a PTY."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from ..contract import SessionMode, SessionSpec, new_id
from ..drivers.claude_stream import ClaudeStreamDriver
from ..drivers.claude_tui import ClaudeTuiDriver, hook_settings
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
from .mcp_wiring import claude_args, claude_env
from .terminal import TerminalLaunch, create_terminal_session

__all__ = ["ClaudeHarness", "create"]

create = creator("claude")  # create(relay=…, model=…): spawn and register, see spawning


class ClaudeHarness:
    name = "claude"
    executable = "claude"

    async def create(self, spec: SessionSpec, ctx: LaunchContext) -> Session:
        if spec.mode == SessionMode.PTY:
            return await self._create_tui(spec, ctx)
        session_id = new_id("ses")
        cwd = resolve_cwd(spec)
        state_dir = make_state_dir(ctx, spec, session_id) if spec.isolated else None
        extra_env = _config_env(spec, cwd, state_dir)
        env = session_env(session_id, extra_env, spec.env)
        driver = ClaudeStreamDriver(
            executable=resolve_executable(spec.command or self.executable, env),
            cwd=cwd,
            env=env,
            model=spec.model,
            args=[*claude_args(spec.mcp_servers), *spec.args],
            resume=spec.resume,
            yolo=spec.yolo,
        )
        options = SessionOptions(ready_timeout=spec.ready_timeout or 60.0)
        return await launch_session(
            ctx, spec, driver=driver, session_id=session_id, options=options, state_dir=state_dir
        )

    async def _create_tui(self, spec: SessionSpec, ctx: LaunchContext) -> Session:
        """The TUI in a PTY, its hooks reporting to a callback URL of the runtime."""
        launch = TerminalLaunch()
        cwd = resolve_cwd(spec)
        launch.state_dir = make_state_dir(ctx, spec, launch.session_id)
        settings = launch.state_dir / "hooks-settings.json"
        launch.env = _config_env(spec, cwd, launch.state_dir if spec.isolated else None)
        launch.args = ["--settings", str(settings), *claude_args(spec.mcp_servers)]
        if spec.yolo:
            launch.args.append("--dangerously-skip-permissions")
        if spec.resume:
            launch.args += ["--resume", spec.resume]
        launch.driver = lambda **kw: ClaudeTuiDriver(**kw)

        async def prepare(driver: TerminalDriver) -> list[Callable[[], None]]:
            assert isinstance(driver, ClaudeTuiDriver)
            url, unregister = await ctx.callback(driver.on_hook)
            settings.write_text(json.dumps(hook_settings(url, spec.approval_timeout), indent=2))
            return [unregister]

        launch.prepare = prepare
        return await create_terminal_session(
            self.name, ctx.profiles.load("claude"), spec, ctx, launch
        )


def _config_env(spec: SessionSpec, cwd: Path, state_dir: Path | None) -> dict[str, str]:
    """Env for an isolated config dir, and for the root check of the bypass flag."""
    env: dict[str, str] = claude_env(spec.mcp_servers)
    if state_dir is not None:
        env["CLAUDE_CONFIG_DIR"] = str(seed_config_dir(state_dir, cwd, spec.env))
    if spec.yolo and os.geteuid() == 0:
        env["IS_SANDBOX"] = "1"  # as root, Claude refuses to bypass permissions without it
    return env


def seed_config_dir(state_dir: Path, cwd: Path, env: dict[str, str]) -> Path:
    """A CLAUDE_CONFIG_DIR in which no first-run dialog blocks start-up: onboarding done,
    the working folder trusted, and the API key (if one is given) approved."""
    config = state_dir / "claude-config"
    config.mkdir()
    key = env.get("ANTHROPIC_API_KEY") or os.environ.get("ANTHROPIC_API_KEY") or ""
    seed = {
        "hasCompletedOnboarding": True,
        "lastOnboardingVersion": "9.9.9",
        "customApiKeyResponses": {"approved": [key[-20:]] if key else [], "rejected": []},
        "projects": {
            str(cwd): {"hasTrustDialogAccepted": True, "hasCompletedProjectOnboarding": True}
        },
    }
    (config / ".claude.json").write_text(json.dumps(seed, indent=2))
    return config

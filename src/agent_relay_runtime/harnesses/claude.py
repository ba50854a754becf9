"""Claude Code: headless over stream-json (default), or its TUI in a PTY."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..contract import SessionMode, SessionSpec, new_id
from ..drivers.claude_stream import ClaudeStreamDriver
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

__all__ = ["ClaudeHarness"]


class ClaudeHarness:
    name = "claude"
    executable = "claude"

    async def create(self, spec: SessionSpec, ctx: LaunchContext) -> Session:
        if spec.mode == SessionMode.PTY:
            return await create_terminal_session(self.name, ctx.profiles.load("claude"), spec, ctx)
        session_id = new_id("ses")
        cwd = resolve_cwd(spec)
        state_dir = make_state_dir(ctx, spec, session_id) if spec.isolated else None
        extra_env: dict[str, str] = {}
        if state_dir is not None:
            extra_env["CLAUDE_CONFIG_DIR"] = str(seed_config_dir(state_dir, cwd, spec.env))
        if spec.yolo and os.geteuid() == 0:
            extra_env["IS_SANDBOX"] = "1"  # as root, Claude refuses to bypass permissions without
        env = session_env(session_id, extra_env, spec.env)
        driver = ClaudeStreamDriver(
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

"""Harnesses defined by a profile alone, run in a PTY by the terminal driver."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..contract import SessionMode, SessionSpec, new_id
from ..drivers.terminal import TerminalDriver
from ..exceptions import ConfigError
from ..profiles import Profile
from ..session.core import Session, SessionOptions
from .context import (
    LaunchContext,
    launch_session,
    resolve_cwd,
    resolve_executable,
    session_env,
)
from .mcp_wiring import generic_env

__all__ = ["TerminalHarness", "TerminalLaunch", "create_terminal_session"]


class TerminalHarness:
    """A CLI whose only interface is its terminal (``generic``, ``aider``, the fake TUI…)."""

    def __init__(self, name: str) -> None:
        self.name = name

    async def create(self, spec: SessionSpec, ctx: LaunchContext) -> Session:
        if spec.mode not in (None, SessionMode.PTY):
            raise ConfigError(f"harness {self.name!r} has no {spec.mode.value} mode (only pty)")
        return await create_terminal_session(self.name, ctx.profiles.load(self.name), spec, ctx)


def _model_args(profile: Profile, model: str | None) -> list[str]:
    if not model:
        return []
    if not profile.command.model_args:
        raise ConfigError(f"harness {profile.name!r} does not take a model (no command.model_args)")
    return [arg.replace("{model}", model) for arg in profile.command.model_args]


@dataclass
class TerminalLaunch:
    """What a harness adds to a plain profile launch (Claude's TUI: hooks, config)."""

    session_id: str = field(default_factory=lambda: new_id("ses"))
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    state_dir: Path | None = None
    driver: Callable[..., TerminalDriver] | None = None
    # Called with the driver before it starts; returns cleanups for the session's end.
    prepare: Callable[[TerminalDriver], Awaitable[list[Callable[[], None]]]] | None = None


async def create_terminal_session(
    harness: str,
    profile: Profile,
    spec: SessionSpec,
    ctx: LaunchContext,
    launch: TerminalLaunch | None = None,
) -> Session:
    """Build and launch a PTY session for ``profile``; returns once it is spawned."""
    launch = launch or TerminalLaunch()
    env = session_env(
        launch.session_id,
        {"TERM": "xterm-256color"},
        profile.command.env,
        generic_env(spec.mcp_servers),
        launch.env,
        spec.env,
    )
    executable = spec.command or profile.resolve_executable()
    if not executable:
        raise ConfigError(f"harness {harness!r} needs an executable: pass --command EXECUTABLE")
    argv = [
        resolve_executable(executable, env),
        *profile.command.args,
        *_model_args(profile, spec.model),
        *launch.args,
        *spec.args,
    ]
    if spec.idle_after is not None:
        idle = profile.idle.model_copy(update={"quiet": spec.idle_after})
        profile = profile.model_copy(update={"idle": idle})
    cwd = resolve_cwd(spec)
    if launch.driver is not None:
        driver = launch.driver(profile=profile, argv=argv, cwd=cwd, env=env)
    else:
        driver = TerminalDriver(harness=harness, profile=profile, argv=argv, cwd=cwd, env=env)
    cleanups = await launch.prepare(driver) if launch.prepare else []
    options = SessionOptions(
        ready_timeout=spec.ready_timeout or profile.ready.timeout,
        stall_timeout=profile.busy.stall_timeout,
    )
    return await launch_session(
        ctx,
        spec,
        driver=driver,
        session_id=launch.session_id,
        options=options,
        state_dir=launch.state_dir,
        cleanups=cleanups,
    )

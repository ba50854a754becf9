"""What harnesses share: the launch context the runtime lends them, and spec checks."""

from __future__ import annotations

import os
import shutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..contract import SessionSpec
from ..drivers.base import Driver
from ..exceptions import CwdNotFound, ExecutableNotFound
from ..observe.callbacks import CallbackHandler
from ..profiles import ProfileRegistry
from ..session.approvals import ApprovalPolicy
from ..session.core import Session, SessionOptions
from ..transports.process import SESSION_MARKER

__all__ = [
    "LaunchContext",
    "launch_session",
    "make_state_dir",
    "resolve_cwd",
    "resolve_executable",
    "session_env",
]


Callback = Callable[[CallbackHandler], Awaitable[tuple[str, Callable[[], None]]]]


@dataclass
class LaunchContext:
    """Implements `HarnessContext`: where sessions start and what they may use.

    ``callback`` gives a driver a loopback URL that calls its handler (for hooks).
    """

    data_dir: Path
    profiles: ProfileRegistry
    launch: Callable[[Session], Awaitable[None]]
    callback: Callback
    own_children: set[int] = field(default_factory=set)


async def launch_session(
    ctx: LaunchContext,
    spec: SessionSpec,
    *,
    driver: Driver,
    session_id: str,
    options: SessionOptions,
    state_dir: Path | None = None,
    cleanups: list[Callable[[], None]] | None = None,
) -> Session:
    """Wrap ``driver`` in a `Session` and start it; returns once its process is spawned.

    ``state_dir`` (from `make_state_dir`) is removed when the session ends, unless the
    spec asks to keep it.
    """
    options.approval_policy = ApprovalPolicy(spec.approvals)
    options.approval_timeout = spec.approval_timeout
    session = Session(
        name=spec.name or driver.harness,
        driver=driver,
        session_id=session_id,
        options=options,
        own_children=ctx.own_children,
    )
    session.cleanups += cleanups or []
    if state_dir is not None and not spec.keep_state:
        session.cleanups.append(lambda: shutil.rmtree(state_dir, ignore_errors=True))
    try:
        await ctx.launch(session)
    except BaseException:
        for cleanup in session.cleanups:
            cleanup()
        raise
    return session


def make_state_dir(ctx: LaunchContext, spec: SessionSpec, session_id: str) -> Path:
    """A private directory for one session's files (config it is given, hook settings)."""
    path = ctx.data_dir / "sessions" / f"{spec.name}-{session_id}"
    path.mkdir(parents=True, mode=0o700)
    return path


def resolve_cwd(spec: SessionSpec) -> Path:
    cwd = (spec.cwd or Path.cwd()).expanduser()
    if not cwd.is_dir():
        raise CwdNotFound(f"cwd not found: {cwd}")
    return cwd.resolve()


def resolve_executable(executable: str, env: dict[str, str]) -> str:
    """An absolute path for ``executable`` (a path, or a name looked up on PATH)."""
    if os.sep in executable:
        path = Path(executable).expanduser()
        if not path.exists():
            raise ExecutableNotFound(f"executable not found: {executable}")
        if not os.access(path, os.X_OK) or path.is_dir():
            raise ExecutableNotFound(f"executable not runnable: {executable}")
        return str(path.resolve())
    found = shutil.which(executable, path=env.get("PATH", os.defpath))
    if found is None:
        raise ExecutableNotFound(f"executable not found on PATH: {executable}")
    return found


def session_env(session_id: str, *layers: dict[str, str]) -> dict[str, str]:
    """The daemon's environment, then each layer, then the session marker (always last)."""
    env = dict(os.environ)
    for layer in layers:
        env.update(layer)
    env[SESSION_MARKER] = session_id
    return env

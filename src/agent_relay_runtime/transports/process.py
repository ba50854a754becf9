"""Processes the runtime owns or watches, and how they are made to end.

Every session runs in a process group of its own (its leader called ``setsid``). Release
escalates — the harness's own goodbye, then SIGTERM to the group, then SIGKILL to the
group, each bounded — and finally sweeps the descendants that left the group: agent CLIs
run shell tools in sessions of their own, out of the group's reach. Two nets catch them:
a snapshot of the leader's descendants taken before each signal, and the environment
marker (`SESSION_MARKER`) that every process of a session inherits.

Exit is observed through a pidfd (``pidfd_open``), which becomes readable when the
process ends: no thread and no polling per process. On kernels without pidfds a short
poll is the fallback.

Liveness is judged by process *state*: a zombie is dead even though ``kill(pid, 0)``
still succeeds (PID 1 on some machines never reaps orphans).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from time import monotonic

import anyio
import psutil
from anyio.abc import TaskStatus

from ..contract import ExitInfo

__all__ = [
    "SESSION_MARKER",
    "ChildProcess",
    "EscalationPolicy",
    "ForeignProcess",
    "ProcessHandle",
    "alive",
    "enable_subreaper",
    "escalate",
    "marked_processes",
    "wait_gone",
]

SESSION_MARKER = "AGENT_RELAY_SESSION"
"""Environment variable set to the session id in every session's environment."""

_POLL_FALLBACK = 0.05


def _pidfd(pid: int) -> int | None:
    """A pidfd for ``pid``, or None when the process is gone or pidfds are unavailable."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def alive(proc: psutil.Process) -> bool:
    """True when ``proc`` still runs (a zombie does not count)."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


async def wait_gone(procs: Iterable[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait until every process has ended, at most ``timeout`` s; return those still alive."""
    pending = [p for p in procs if alive(p)]
    if not pending:
        return []
    with anyio.move_on_after(timeout):
        async with anyio.create_task_group() as tg:
            for proc in pending:
                tg.start_soon(_wait_one, proc)
    return [p for p in pending if alive(p)]


async def _wait_one(proc: psutil.Process) -> None:
    fd = _pidfd(proc.pid)
    if fd is None:
        while alive(proc):
            await anyio.sleep(_POLL_FALLBACK)
        return
    try:
        # A pidfd becomes readable when the process terminates (zombie or reaped).
        if alive(proc):
            await anyio.wait_readable(fd)
    finally:
        anyio.notify_closing(fd)
        os.close(fd)


def descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def marked_processes(marker: str) -> list[psutil.Process]:
    """Every process (but this one) whose environment carries ``SESSION_MARKER=marker``."""
    found = []
    me = os.getpid()
    for proc in psutil.process_iter():
        if proc.pid == me:
            continue
        try:
            if proc.environ().get(SESSION_MARKER) == marker:
                found.append(proc)
        except psutil.Error:
            continue
    return found


def enable_subreaper() -> bool:
    """Make this process the reaper of orphaned descendants (Linux ``PR_SET_CHILD_SUBREAPER``).

    Orphans of a session then stay our descendants, so release still finds them after
    their parent died, and we reap them instead of leaving zombies to an init that may not.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(36, 1, 0, 0, 0)) == 0  # 36 = PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        return False


def reap_adopted(pids: Iterable[int], own: set[int]) -> None:
    """Reap zombies among ``pids`` that became our children by adoption (not ``own``)."""
    for pid in pids:
        if pid in own:
            continue
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)


class ProcessHandle:
    """A process the runtime watches. ``pgid`` is None when its group is not ours to signal."""

    def __init__(self, pid: int, pgid: int | None) -> None:
        self.pid = pid
        self.pgid = pgid
        self.returncode: int | None = None
        self._exited = anyio.Event()

    @property
    def exited(self) -> bool:
        return self._exited.is_set()

    async def wait(self) -> int | None:
        """Wait for the process to end; its return code (negative: killed by that signal)."""
        await self._exited.wait()
        return self.returncode

    def _set_exited(self, returncode: int | None) -> None:
        self.returncode = returncode
        self._exited.set()

    async def watch(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run until the process ends (start it in a task group)."""
        raise NotImplementedError

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the group when it is ours, else to the process."""
        try:
            if self.pgid is not None and self.pgid != os.getpgrp():
                os.killpg(self.pgid, sig)
            else:
                os.kill(self.pid, sig)
        except ProcessLookupError:
            pass
        except PermissionError:
            # The group may hold only zombies we cannot signal; the sweep handles the rest.
            with contextlib.suppress(OSError):
                os.kill(self.pid, sig)


class ChildProcess(ProcessHandle):
    """A direct child that we reap ourselves (the PTY transport's leader)."""

    async def watch(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        fd = _pidfd(self.pid)
        task_status.started()
        try:
            if fd is not None:
                await anyio.wait_readable(fd)
            done, code = self._reap(blocking=fd is not None)
            while not done:
                await anyio.sleep(_POLL_FALLBACK)
                done, code = self._reap(blocking=False)
        finally:
            if fd is not None:
                anyio.notify_closing(fd)
                os.close(fd)
        self._set_exited(code)

    def _reap(self, *, blocking: bool) -> tuple[bool, int | None]:
        """(ended, return code); the code is None if someone else reaped the child."""
        try:
            pid, status = os.waitpid(self.pid, 0 if blocking else os.WNOHANG)
        except ChildProcessError:
            return True, None
        if pid == 0:
            return False, None
        return True, os.waitstatus_to_exitcode(status)


class ForeignProcess(ProcessHandle):
    """A process we did not start (attach by pid): watched, never reaped; exit code unknown."""

    def __init__(self, pid: int) -> None:
        proc = psutil.Process(pid)  # raises psutil.NoSuchProcess for a bad pid
        self._proc = proc
        pgid = os.getpgid(pid)
        # Only signal the whole group when the process leads it: otherwise the group may
        # be a shell's or ours.
        super().__init__(pid, pgid if pgid == pid else None)

    async def watch(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await _wait_one(self._proc)
        self._set_exited(None)


@dataclass
class EscalationPolicy:
    """Bounds of each release step, in seconds."""

    graceful_timeout: float = 3.0
    term_timeout: float = 3.0
    kill_timeout: float = 2.0


@dataclass
class _Tree:
    """Processes known to belong to a session, by pid."""

    procs: dict[int, psutil.Process] = field(default_factory=dict)

    def add(self, procs: Iterable[psutil.Process]) -> None:
        for proc in procs:
            self.procs.setdefault(proc.pid, proc)

    def living(self, exclude: int) -> list[psutil.Process]:
        return [p for pid, p in self.procs.items() if pid != exclude and alive(p)]


async def _snapshot(tree: _Tree, handle: ProcessHandle, marker: str | None) -> None:
    def scan() -> list[psutil.Process]:
        found = descendants(handle.pid)
        if marker:
            found += marked_processes(marker)
        return found

    tree.add(await anyio.to_thread.run_sync(scan))


def _signal_all(procs: Iterable[psutil.Process], sig: int) -> None:
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.send_signal(sig)


async def escalate(
    handle: ProcessHandle,
    *,
    graceful: Callable[[], Awaitable[None]] | None,
    policy: EscalationPolicy,
    marker: str | None = None,
    own_children: set[int] | None = None,
) -> ExitInfo:
    """End ``handle``'s process and everything it started; report what it took.

    Steps: ``graceful()`` (the harness's goodbye) → SIGTERM → SIGKILL, each bounded, the
    signals going to the process group and to every known descendant; then a sweep that
    SIGKILLs any descendant or marked process still alive.
    """
    started = monotonic()
    info = ExitInfo()
    tree = _Tree()
    signalled: set[int] = set()  # processes besides the leader that had to be signalled
    await _snapshot(tree, handle, marker)

    if graceful is not None and not handle.exited:
        with anyio.move_on_after(policy.graceful_timeout):
            await graceful()
            await handle.wait()
        info.graceful = handle.exited

    steps = ((signal.SIGTERM, policy.term_timeout), (signal.SIGKILL, policy.kill_timeout))
    for sig, timeout in steps:
        await _snapshot(tree, handle, marker)
        living = tree.living(handle.pid)
        if handle.exited and not living:
            break
        info.signals_sent.append(signal.Signals(sig).name)
        if not handle.exited:
            handle.signal(sig)
        _signal_all(living, sig)
        signalled.update(p.pid for p in living)
        with anyio.move_on_after(timeout):
            await handle.wait()
        await wait_gone(living, max(0.0, timeout))

    await _snapshot(tree, handle, marker)
    leftovers = tree.living(handle.pid)
    if leftovers:
        _signal_all(leftovers, signal.SIGKILL)
        signalled.update(p.pid for p in leftovers)
        await wait_gone(leftovers, policy.kill_timeout)
    info.swept = sorted(signalled)
    info.survivors = sorted(p.pid for p in tree.living(handle.pid))
    if not handle.exited:
        info.survivors.insert(0, handle.pid)
    reap_adopted(tree.procs, own_children or set())
    code = handle.returncode
    if code is not None and code < 0:
        info.signal = -code
    else:
        info.exit_code = code
    info.duration_ms = round((monotonic() - started) * 1000, 3)
    return info


def exit_reason(returncode: int | None) -> str:
    """A human phrase for a return code: ``exit code 3`` or ``killed by SIGKILL``."""
    if returncode is None:
        return "ended (exit code unknown)"
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit code {returncode}"

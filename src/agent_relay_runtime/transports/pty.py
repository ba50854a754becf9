"""A child process on a pseudo-terminal, read without a thread.

ptyprocess forks the child into a new session whose controlling terminal is the PTY
(so the child leads its own process group). The master fd is non-blocking and read when
the event loop says it is readable; reads are batched (up to `_BATCH` bytes per wake-up)
so that a flood of output costs few wake-ups. Exit is observed through a pidfd. Writes
are serialized, and wait for the PTY to drain rather than fail when its buffer is full.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import TaskStatus
from ptyprocess import PtyProcess

from ..exceptions import ExecutableNotFound, TransportClosed
from .process import ChildProcess

__all__ = ["PtyTransport"]

_READ = 64 * 1024
_BATCH = 1 << 20
_DRAIN_AFTER_EXIT = 1.0


class PtyTransport:
    """Owns a PTY child; call `run` in a task group (it signals once spawned)."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        cwd: Path,
        env: Mapping[str, str],
        rows: int,
        cols: int,
        on_output: Callable[[bytes], None],
    ) -> None:
        self.argv = list(argv)
        self.cwd = cwd
        self.env = dict(env)
        self.rows = rows
        self.cols = cols
        self._on_output = on_output
        self.handle: ChildProcess | None = None
        self._proc: Any = None
        self._fd = -1
        self._lock = anyio.Lock()
        self._eof = anyio.Event()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Spawn, signal started, pump output; return once the child exited and was drained."""
        proc = await anyio.to_thread.run_sync(self._spawn)
        self._proc = proc
        self._fd = proc.fd
        os.set_blocking(self._fd, False)
        handle = ChildProcess(proc.pid, proc.pid)
        self.handle = handle
        try:
            async with anyio.create_task_group() as tg:
                await tg.start(handle.watch)
                tg.start_soon(self._read_loop)
                task_status.started()
                await handle.wait()
                # The child is gone; let the reader take its last output. A descendant that
                # kept the terminal open would otherwise keep us here.
                with anyio.move_on_after(_DRAIN_AFTER_EXIT):
                    await self._eof.wait()
                tg.cancel_scope.cancel()
            self._read_available()
        finally:
            with anyio.CancelScope(shield=True):
                await self._close(handle)

    def _spawn(self) -> Any:
        try:
            return PtyProcess.spawn(
                self.argv,
                cwd=str(self.cwd),
                env=self.env,
                dimensions=(self.rows, self.cols),
            )
        except FileNotFoundError as exc:
            raise ExecutableNotFound(f"executable not found: {self.argv[0]}") from exc
        except PermissionError as exc:
            raise ExecutableNotFound(f"executable not runnable: {self.argv[0]} ({exc})") from exc

    async def _close(self, handle: ChildProcess) -> None:
        if not handle.exited:
            # Cancelled before the child ended (forced teardown): never leave it behind.
            handle.signal(signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                await anyio.to_thread.run_sync(os.waitpid, handle.pid, 0)
        if self._fd >= 0:
            anyio.notify_closing(self._fd)
            # ptyprocess owns a file object over the fd; closing it closes the fd, and
            # marking the process closed keeps its __del__ from touching a reaped pid.
            self._proc.fileobj.close()
            self._proc.closed = True
            self._proc.terminated = True
            self._fd = -1

    async def _read_loop(self) -> None:
        try:
            while True:
                await anyio.wait_readable(self._fd)
                if not self._read_available():
                    return
        finally:
            self._eof.set()

    def _read_available(self) -> bool:
        """Read what is there (up to a batch) and hand it on; False at end of output."""
        if self._fd < 0:
            return False
        chunks: list[bytes] = []
        size = 0
        open_ = True
        while size < _BATCH:
            try:
                chunk = os.read(self._fd, _READ)
            except BlockingIOError:
                break
            except OSError as exc:
                # EIO: every holder of the terminal's slave side has closed it.
                if exc.errno not in (errno.EIO, errno.EBADF):
                    raise
                open_ = False
                break
            if not chunk:
                open_ = False
                break
            chunks.append(chunk)
            size += len(chunk)
        if chunks:
            self._on_output(b"".join(chunks))
        return open_

    async def write(self, data: bytes) -> None:
        """Write all of ``data`` to the terminal, in order with other writers."""
        async with self._lock:
            view = memoryview(data)
            while view:
                if self._fd < 0:
                    raise TransportClosed("terminal is closed")
                try:
                    written = os.write(self._fd, view)
                except BlockingIOError:
                    await anyio.wait_writable(self._fd)
                    continue
                except OSError as exc:
                    raise TransportClosed(f"terminal write failed: {exc.strerror}") from exc
                view = view[written:]

    def resize(self, rows: int, cols: int) -> None:
        self.rows, self.cols = rows, cols
        if self._proc is not None and self._fd >= 0:
            self._proc.setwinsize(rows, cols)

"""A child process that speaks JSON lines on stdin/stdout (stream-json, app-server, …),
or a server process whose output is only a log (``opencode serve``).

The child starts in a new session (so in its own process group), stdout is decoded by
`JsonLinesDecoder` (or, without ``on_message``, kept like stderr and shown to
``on_output``), and stderr is drained
into a bounded tail that a failure report can quote. Writes are serialized so that two
writers never interleave within a line.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import ByteReceiveStream, Process, TaskStatus

from ..buffers import BoundedTail
from ..exceptions import ExecutableNotFound, TransportClosed
from .framing import DEFAULT_MAX_LINE, FramingError, JsonLinesDecoder, encode_line
from .process import ProcessHandle

__all__ = ["StdioTransport"]

_READ = 256 * 1024
_DRAIN_AFTER_EXIT = 2.0


class _AsyncioChild(ProcessHandle):
    """A child started by `anyio.open_process`; asyncio's child watcher reaps it."""

    def __init__(self, process: Process) -> None:
        super().__init__(process.pid, process.pid)
        self._process = process

    async def watch(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        self._set_exited(await self._process.wait())


def use_pidfd_child_watcher() -> None:
    """On Python 3.11, let asyncio watch children with pidfds instead of a thread each.

    Must be called from the running event loop. From 3.12 on asyncio does this by itself
    where pidfds exist.
    """
    if sys.version_info >= (3, 12):
        return
    import asyncio
    import os

    try:
        os.close(os.pidfd_open(os.getpid()))
    except (AttributeError, OSError):
        return
    loop = asyncio.get_running_loop()
    policy = asyncio.get_event_loop_policy()
    watcher = policy._watcher if hasattr(policy, "_watcher") else None
    if isinstance(watcher, asyncio.PidfdChildWatcher):
        if getattr(watcher, "_loop", None) is not loop:
            watcher.attach_loop(loop)
        return
    watcher = asyncio.PidfdChildWatcher()
    watcher.attach_loop(loop)
    asyncio.set_child_watcher(watcher)


class StdioTransport:
    """Owns a JSON-lines child process; call `run` in a task group (it signals once spawned)."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        cwd: Path,
        env: Mapping[str, str],
        on_message: Callable[[dict[str, Any]], None] | None,
        on_error: Callable[[FramingError], None] | None = None,
        on_output: Callable[[bytes], None] | None = None,
        max_line: int = DEFAULT_MAX_LINE,
        stderr_limit: int = 64 * 1024,
    ) -> None:
        self.argv = list(argv)
        self.cwd = cwd
        self.env = dict(env)
        self._on_message = on_message
        self._on_error = on_error
        self._on_output = on_output
        self._decoder = JsonLinesDecoder(max_line)
        self.stderr = BoundedTail(stderr_limit)
        self.stdout = BoundedTail(stderr_limit)  # kept only when stdout is not a protocol
        self.handle: ProcessHandle | None = None
        self._process: Process | None = None
        self._write_lock = anyio.Lock()
        self._stdout_done = anyio.Event()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Spawn, signal started, pump stdout/stderr; return once the process has exited."""
        use_pidfd_child_watcher()
        try:
            process = await anyio.open_process(
                self.argv,
                cwd=self.cwd,
                env=self.env,
                start_new_session=True,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        except FileNotFoundError as exc:
            raise ExecutableNotFound(f"executable not found: {self.argv[0]}") from exc
        except PermissionError as exc:
            raise ExecutableNotFound(f"executable not runnable: {self.argv[0]} ({exc})") from exc
        self._process = process
        handle = _AsyncioChild(process)
        self.handle = handle
        try:
            async with anyio.create_task_group() as tg:
                await tg.start(handle.watch)
                task_status.started()
                assert process.stdout is not None and process.stderr is not None
                tg.start_soon(self._pump_stdout, process.stdout)
                tg.start_soon(self._pump_stderr, process.stderr)
                await handle.wait()
                # Give the readers a bounded moment to drain what the process wrote last; a
                # descendant that inherited the pipes could otherwise hold them open forever.
                with anyio.move_on_after(_DRAIN_AFTER_EXIT):
                    await self._stdout_done.wait()
                tg.cancel_scope.cancel()
        finally:
            if not handle.exited:
                # Cancelled before the process ended (forced teardown): never leave it.
                handle.signal(signal.SIGKILL)
            with anyio.CancelScope(shield=True):
                await process.aclose()  # closes the pipes and waits for the process

    async def _pump_stdout(self, stream: ByteReceiveStream) -> None:
        try:
            while True:
                try:
                    data = await stream.receive(_READ)
                except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
                    break
                if self._on_message is None:
                    self.stdout.add(data)
                    if self._on_output is not None:
                        self._on_output(data)
                else:
                    self._dispatch(self._decoder.feed(data))
            self._dispatch(self._decoder.finish())
        finally:
            self._stdout_done.set()

    def _dispatch(self, items: list[dict[str, Any] | FramingError]) -> None:
        for item in items:
            if isinstance(item, FramingError):
                if self._on_error is not None:
                    self._on_error(item)
            elif self._on_message is not None:
                self._on_message(item)

    async def _pump_stderr(self, stream: ByteReceiveStream) -> None:
        while True:
            try:
                self.stderr.add(await stream.receive(_READ))
            except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
                return

    async def send(self, obj: dict[str, Any]) -> None:
        """Write one JSON object as one line."""
        await self.write(encode_line(obj))

    async def write(self, data: bytes) -> None:
        process = self._require()
        assert process.stdin is not None
        async with self._write_lock:
            try:
                await process.stdin.send(data)
            except (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError) as exc:
                raise TransportClosed(f"stdin of pid {process.pid} is closed") from exc

    async def close_stdin(self) -> None:
        process = self._require()
        if process.stdin is not None:
            async with self._write_lock:
                with contextlib.suppress(anyio.BrokenResourceError, OSError):
                    await process.stdin.aclose()

    def _require(self) -> Process:
        if self._process is None:
            raise TransportClosed("process not started")
        return self._process

"""A process the runtime did not start, attached by pid for observation and release.

It takes no messages (there is no channel into it); the session reports its exit, and
release escalates on it — its group only if it leads one — then sweeps its descendants.
"""

from __future__ import annotations

import os

import anyio
import psutil
from anyio.abc import TaskStatus

from ..contract import (
    Capabilities,
    DeliveryMode,
    Evidence,
    RelayMessage,
    SessionMode,
    SessionState,
    SignalSource,
)
from ..exceptions import DeliveryFailed, InvalidRequest
from ..transports.process import ForeignProcess, ProcessHandle
from .base import Driver, SessionPort

__all__ = ["AttachedDriver"]


def _refuse_reason(pid: int) -> str | None:
    """Why attaching to ``pid`` would be dangerous, if it would."""
    if pid <= 1:
        return "refusing to attach to init"
    me = psutil.Process()
    if pid == me.pid or pid in {p.pid for p in me.parents()}:
        return "refusing to attach to the daemon itself or one of its ancestors"
    try:
        if os.getpgid(pid) == os.getpgrp():
            return "refusing to attach to a process in the daemon's own process group"
    except ProcessLookupError:
        return None
    return None


class AttachedDriver(Driver):
    mode = SessionMode.ATTACHED
    capabilities = Capabilities(delivery_modes=(), idle_signal=SignalSource.PROCESS)

    def __init__(self, *, harness: str, pid: int) -> None:
        why = _refuse_reason(pid)
        if why:
            raise InvalidRequest(f"cannot attach to pid {pid}: {why}")
        try:
            self._handle = ForeignProcess(pid)
            self.argv = psutil.Process(pid).cmdline()
        except (psutil.NoSuchProcess, ProcessLookupError):
            raise InvalidRequest(f"cannot attach to pid {pid}: no such process") from None
        except psutil.AccessDenied:
            raise InvalidRequest(f"cannot attach to pid {pid}: permission denied") from None
        self.harness = harness

    @property
    def process(self) -> ProcessHandle:
        return self._handle

    async def run(
        self, port: SessionPort, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        async with anyio.create_task_group() as tg:
            await tg.start(self._handle.watch)
            task_status.started()
            port.set_state(
                SessionState.READY, f"attached to pid {self._handle.pid}", SignalSource.PROCESS
            )
            await self._handle.wait()

    async def inject(self, message: RelayMessage, mode: DeliveryMode) -> Evidence:
        raise DeliveryFailed("an attached process takes no messages", retryable=False)

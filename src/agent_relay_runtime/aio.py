"""Small async helpers the runtime's modules share."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any, TypeVar

import anyio
from anyio.abc import TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

__all__ = ["CallbackStatus", "Notifier", "collapse_single", "put", "running", "take", "wait_any"]

T = TypeVar("T")


class Notifier:
    """Every task waiting in `wait` wakes at the next `notify`; a later waiter waits anew."""

    def __init__(self) -> None:
        self._event = anyio.Event()
        self.count = 0

    def notify(self) -> None:
        self.count += 1
        event, self._event = self._event, anyio.Event()
        event.set()

    async def wait(self) -> None:
        await self._event.wait()

    def waiter(self) -> anyio.Event:
        """The event the next `notify` sets: take it *before* checking for work, then wait
        on it, and a notify that comes while checking is not missed."""
        return self._event


@asynccontextmanager
async def running(run: Callable[..., Coroutine[Any, Any, None]]) -> AsyncIterator[None]:
    """``run`` in a task of its own for the block: started (it reports so through its
    ``task_status``) before the block, cancelled after it. A service's lifespan."""
    async with anyio.create_task_group() as tg:
        await tg.start(run)
        yield
        tg.cancel_scope.cancel()


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    found: list[BaseException] = []
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            found += _leaves(exc)
        else:
            found.append(exc)
    return found


@contextmanager
def collapse_single() -> Iterator[None]:
    """Re-raise a task group's lone error as itself, so callers can catch it by type."""
    try:
        yield
    except BaseExceptionGroup as group:
        leaves = _leaves(group)
        if len(leaves) == 1:
            raise leaves[0] from None
        raise


class CallbackStatus(TaskStatus[None]):
    """A task status that runs a callback on ``started()``: lets a caller run a task's body
    directly (not in a child task) and still act at the moment it reports readiness."""

    def __init__(self, callback: Callable[[], None]) -> None:
        self._callback = callback

    def started(self, value: None = None) -> None:
        self._callback()


async def wait_any(*events: anyio.Event) -> None:
    """Return as soon as one of ``events`` is set."""

    async def one(event: anyio.Event, scope: anyio.CancelScope) -> None:
        await event.wait()
        scope.cancel()

    async with anyio.create_task_group() as tg:
        for event in events:
            tg.start_soon(one, event, tg.cancel_scope)


async def put(stream: MemoryObjectSendStream[T], item: T) -> None:
    """``stream.send(item)`` without yielding to the loop when there is room: anyio's
    `send` always does (a checkpoint), and a frame a yield is a loop iteration (and an
    epoll call) for every frame of a busy node link."""
    try:
        stream.send_nowait(item)
    except anyio.WouldBlock:
        await stream.send(item)


async def take(stream: MemoryObjectReceiveStream[T]) -> T:
    """``stream.receive()`` without yielding to the loop when an item is waiting (see
    `put`); `anyio.EndOfStream` once it is closed and empty."""
    try:
        return stream.receive_nowait()
    except anyio.WouldBlock:
        return await stream.receive()

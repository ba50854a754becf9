"""The supervisor: the registry of live sessions and the one place they start and stop.

It is an async context manager owning the task group that every session runs in. Leaving
it releases every session. It is also the runtime's `RuntimeNode`: a delivery port hands
it messages by session name, and every session event flows through it, numbered, into
the `EventLog` and out to subscribers (the port, the control API's followers).
"""

from __future__ import annotations

import contextlib
import os
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import anyio
import psutil
from anyio.abc import TaskGroup, TaskStatus

from .aio import CallbackStatus, collapse_single
from .contract import ExitInfo, MessageContext, MessageReceipt, RelayMessage, SessionSpec
from .drivers.attached import AttachedDriver
from .eventlog import EventLog
from .events import SessionEvent
from .exceptions import NameInUse, SessionNotFound, SessionStartFailed
from .harnesses import HarnessRegistry, LaunchContext
from .logs import get_logger
from .observe.callbacks import CallbackHandler, CallbackServer
from .profiles import ProfileRegistry, default_profile_dirs
from .session.core import Session
from .transports.process import enable_subreaper
from .transports.stdio import use_pidfd_child_watcher
from .versions import cli_version, untested_note

__all__ = ["Supervisor"]

_REAP_INTERVAL = 10.0
_ENDED_KEPT = 200


class Supervisor:
    """Creates, attaches, finds and releases sessions."""

    def __init__(
        self,
        *,
        data_dir: Path,
        profiles: ProfileRegistry | None = None,
        event_log: EventLog | None = None,
        subreaper: bool = False,
    ) -> None:
        self.data_dir = data_dir
        self.harnesses = HarnessRegistry(
            profiles or ProfileRegistry(default_profile_dirs(data_dir))
        )
        self.events = event_log or EventLog()
        self.subreaper = subreaper
        self.log = get_logger()
        self._sessions: dict[str, Session] = {}
        self._reserved: set[str] = set()
        self._ended: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._subscribers: list[Callable[[SessionEvent], None]] = []
        self._own_children: set[int] = set()
        self._tg: TaskGroup | None = None
        self.callbacks = CallbackServer()
        self._ctx = LaunchContext(
            data_dir=data_dir,
            profiles=self.harnesses.profiles,
            launch=self._launch,
            callback=self._callback,
            own_children=self._own_children,
        )

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        use_pidfd_child_watcher()
        if self.subreaper:
            self.subreaper = enable_subreaper()
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        if self.subreaper:
            self._tg.start_soon(self._reap_orphans)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._tg is not None
        with anyio.CancelScope(shield=True):
            await self.shutdown()
        self.callbacks.close()
        self._tg.cancel_scope.cancel()
        with collapse_single():
            return await self._tg.__aexit__(exc_type, exc, tb)

    async def shutdown(self, reason: str = "runtime shutting down") -> None:
        """Release every session, concurrently."""
        async with anyio.create_task_group() as tg:
            for session in list(self._sessions.values()):
                tg.start_soon(session.release, reason)

    def kill_all(self) -> None:
        """SIGKILL every session's processes now (a forced shutdown); releases in flight
        then finish at once."""
        for session in self.sessions():
            session.kill_now()

    # -- sessions ------------------------------------------------------------------------------

    def subscribe(self, handler: Callable[[SessionEvent], None]) -> Callable[[], None]:
        """Call ``handler`` with every numbered event of every session."""
        self._subscribers.append(handler)
        return lambda: self._subscribers.remove(handler) if handler in self._subscribers else None

    def sessions(self) -> list[Session]:
        """Live sessions (an ended one may linger here a moment while it is swept)."""
        return [s for s in self._sessions.values() if not s.done]

    def ended(self) -> list[dict[str, Any]]:
        lingering = [s.info() for s in self._sessions.values() if s.done]
        return list(self._ended.values()) + lingering

    def get(self, name: str) -> Session:
        session = self._sessions.get(name)
        if session is not None and not session.done:
            return session
        if session is not None:
            raise SessionNotFound(f"session {name!r} has ended ({session.end_reason})")
        ended = self._ended.get(name)
        if ended is not None:
            raise SessionNotFound(f"session {name!r} has ended ({ended.get('reason')})")
        raise SessionNotFound(f"no session named {name!r}")

    async def create(self, spec: SessionSpec, *, wait: bool = True) -> Session:
        """Start a session; unless ``wait`` is False, return once it is ready."""
        name = spec.name or self.auto_name(spec.harness)
        spec = spec.model_copy(update={"name": name})
        self._reserve(name)
        try:
            session = await self.harnesses.create(spec, self._ctx)
        finally:
            self._reserved.discard(name)
        if wait:
            try:
                await session.wait_ready()
            except SessionStartFailed as exc:
                await session.release("start failed")
                detail = session.driver.failure_detail()
                tail = f"; last output: {detail[-300:]!r}" if detail else ""
                note = await self._version_note(session)
                raise SessionStartFailed(f"{exc.message}{tail}{note}") from None
        if spec.task:
            await session.receive_message(RelayMessage(text=spec.task))
        return session

    @staticmethod
    async def _version_note(session: Session) -> str:
        """When a start fails on a CLI version the runtime was not tested on, say so."""
        argv = session.driver.argv
        if not argv:
            return ""
        version = await anyio.to_thread.run_sync(cli_version, argv[0])
        note = untested_note(session.identity.harness, version)
        return f"; note: {note}" if note else ""

    async def attach(self, name: str, pid: int, harness: str = "process") -> Session:
        """Adopt a running process for observation and release."""
        self._reserve(name)
        try:
            driver = AttachedDriver(harness=harness, pid=pid)
            session = Session(name=name, driver=driver, own_children=self._own_children)
            await self._launch(session)
        finally:
            self._reserved.discard(name)
        await session.wait_ready(5.0)
        return session

    async def release(self, name: str, reason: str | None = None) -> ExitInfo:
        return await self.get(name).release(reason)

    async def deliver(
        self, target: str, message: RelayMessage, ctx: MessageContext
    ) -> MessageReceipt:
        return await self.get(target).receive_message(message, ctx)

    # -- internals -----------------------------------------------------------------------------

    async def _callback(self, handler: CallbackHandler) -> tuple[str, Callable[[], None]]:
        assert self._tg is not None, "supervisor not entered"
        return await self.callbacks.register(self._tg, handler)

    def auto_name(self, harness: str) -> str:
        taken = {s.name for s in self.sessions()} | self._reserved
        index = 1
        while f"{harness}-{index}" in taken:
            index += 1
        return f"{harness}-{index}"

    def _reserve(self, name: str) -> None:
        live = self._sessions.get(name)
        if (live is not None and not live.done) or name in self._reserved:
            raise NameInUse(f"a session named {name!r} already exists")
        self._reserved.add(name)

    async def _launch(self, session: Session) -> None:
        assert self._tg is not None, "supervisor not entered"
        session.on_event(self._on_event)
        self._sessions[session.name] = session
        try:
            await self._tg.start(self._run_session, session)
        except BaseException:
            self._sessions.pop(session.name, None)
            raise

    async def _run_session(
        self, session: Session, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        def started() -> None:
            pid = session.identity.pid
            if pid is not None and session.identity.mode != "attached":
                self._own_children.add(pid)
            task_status.started()

        try:
            await session.run(task_status=CallbackStatus(started))
        except Exception:
            if session.identity.pid is None:
                raise  # failed to start: the creator gets the error
            session.log.exception("session_crashed")
        finally:
            self._forget(session)

    def _forget(self, session: Session) -> None:
        if self._sessions.get(session.name) is session:
            del self._sessions[session.name]
        self._own_children.discard(session.identity.pid or -1)
        self._ended[session.name] = session.info()
        self._ended.move_to_end(session.name)
        while len(self._ended) > _ENDED_KEPT:
            self._ended.popitem(last=False)

    def _on_event(self, event: SessionEvent) -> None:
        numbered = self.events.append(event)
        for handler in list(self._subscribers):
            try:
                handler(numbered)
            except Exception:
                self.log.exception("event_subscriber_failed", event_type=event.type)

    async def _reap_orphans(self) -> None:
        """As subreaper we inherit orphans; reap those that died and nobody else waits for.

        A zombie child that is not a session leader and was already a zombie at the
        previous pass is an adopted orphan: asyncio or a transport would have reaped a
        child of its own within milliseconds.
        """
        seen: set[int] = set()
        me = psutil.Process()
        while True:
            await anyio.sleep(_REAP_INTERVAL)
            zombies = set()
            for child in me.children():
                with contextlib.suppress(psutil.Error):
                    if child.status() == psutil.STATUS_ZOMBIE:
                        zombies.add(child.pid)
            for pid in (zombies & seen) - self._own_children:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, os.WNOHANG)  # noqa: ASYNC222 - WNOHANG never blocks
            seen = zombies

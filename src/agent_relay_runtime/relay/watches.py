"""Watches, relay side: an agent asks to be told once when another agent is idle, or
takes a delivery; the relay tells it with a DM from its system participant ``relay``.

What fires a watch is in the workspace's event log, where the runtime's nodes put their
sessions' events (``agent.events`` frames):

- ``idle``: a ``status.changed`` event of the agent whose ``state`` is ``idle`` or
  ``ready`` (both are idle boundaries: see `SessionState.is_idle`);
- ``delivered``: a ``delivery.delivered`` event of the agent; with a ``message_id``, only
  that message's, and its ``delivery.failed`` fires the watch too (the message will never
  be taken: the notice says so).

Only events after the watch was made fire it (its ``after_seq``), except that a watch
whose condition already holds fires at once: the agent's last status before the watch
is idle, or the message's receipt is final.

`WatchService.run` follows the log from a cursor kept in the store, waking on the
store's commit notifier. Firing is one transaction that deletes the watch (see
`Store.fire_watch`), so reading events again after a restart cannot fire a watch twice,
and an event committed just before the relay died still fires its watch when it is back.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import anyio
from anyio.abc import TaskStatus

from ..logs import get_logger
from .store import EventRecord, Store, Watch, WatchOn

__all__ = ["IDLE_STATES", "WatchService", "fires", "notice"]

IDLE_STATES = frozenset({"idle", "ready"})
PAGE = 500
CURSOR_EVERY = 1000  # store the cursor when it has moved this far: a short catch-up


def fires(watch: Watch, event: EventRecord) -> bool:
    """Whether ``event`` (of the watched agent, after the watch was made) fires ``watch``."""
    if watch.on == "idle":
        return event.type == "status.changed" and event.data.get("state") in IDLE_STATES
    if watch.message_id is None:
        return event.type == "delivery.delivered"
    kinds = ("delivery.delivered", "delivery.failed")
    return event.type in kinds and event.data.get("message_id") == watch.message_id


def notice(watch: Watch, event: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The DM's text and structured data for ``watch`` fired by ``event``."""
    agent, data = watch.agent_name, event.get("data") or {}
    if watch.on == "idle":
        text = f"@{agent} is idle"
    elif event.get("type") == "delivery.failed":
        reason = data.get("reason") or "failed"
        text = f"@{agent} did not take message {data.get('message_id')}: {reason}"
    else:
        text = f"@{agent} took message {data.get('message_id')}"
    fields: dict[str, Any] = {"watch_id": watch.id, "agent": agent, "on": watch.on}
    if watch.message_id is not None:
        fields["message_id"] = watch.message_id
    return text, {**fields, "notify": watch.watcher_name, "event": event}


class WatchService:
    """Makes watches, fires those already satisfied, and follows the log for the rest."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.log = get_logger(component="relay.watches")

    async def watch(
        self,
        workspace_id: str,
        watcher_id: str,
        agent_id: str,
        on: WatchOn,
        message_id: str | None = None,
    ) -> Watch:
        """A new watch; fired before this returns if its condition holds already."""
        watch = await self.store.add_watch(workspace_id, watcher_id, agent_id, on, message_id)
        await self._settle(watch)
        return watch

    @contextlib.asynccontextmanager
    async def lifespan(self, app: object) -> AsyncIterator[None]:
        """Run the service while the app serves (a Starlette lifespan)."""
        async with anyio.create_task_group() as tg:
            await tg.start(self.run)
            yield
            tg.cancel_scope.cancel()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Catch up (watches made just before a restart, then the log from the stored
        cursor), report started, then follow the log until cancelled."""
        for watch in await self.store.list_watches(None):
            await self._settle(watch)
        cursor = saved = await self.store.watch_cursor()
        started = False
        while True:
            waiter = self.store.committed.waiter()  # before reading: no commit is missed
            found, cursor = await self.store.watched_events(cursor, PAGE)
            for workspace_id, event in found:
                await self._on_event(workspace_id, event)
            if cursor - saved >= CURSOR_EVERY:
                await self.store.save_watch_cursor(cursor)
                saved = cursor
            if len(found) == PAGE:
                continue  # more to read
            if not started:
                task_status.started()
                started = True
            await waiter.wait()

    async def _on_event(self, workspace_id: str, event: EventRecord) -> None:
        if event.agent is None or (event.type == "status.changed" and not _idle(event)):
            return  # cannot fire anything: spare the look-up
        for watch in await self.store.watches_on(workspace_id, event.agent):
            if watch.after_seq < event.seq and fires(watch, event):
                await self._fire(watch, event.model_dump())

    async def _settle(self, watch: Watch) -> None:
        """Fire ``watch`` if what it waits for held when it was made."""
        if watch.on == "idle":
            last = await self.store.last_status(
                watch.workspace_id, watch.agent_name, watch.after_seq
            )
            if last is not None and _idle(last):
                await self._fire(watch, last.model_dump())
        elif watch.message_id is not None:
            delivery = await self.store.delivery_of(watch.agent_id, watch.message_id)
            if delivery is not None and delivery.status in ("delivered", "failed"):
                # Its event is somewhere in the log; the receipt says the same.
                event = {
                    "seq": None, "type": f"delivery.{delivery.status}", "agent": watch.agent_name,
                    "action": None, "created_at": delivery.updated_at,
                    "data": {
                        "delivery_id": delivery.id, "message_id": delivery.message_id,
                        "agent_name": watch.agent_name, "seq": delivery.seq,
                        "reason": delivery.reason, "evidence": delivery.evidence,
                    },
                }  # fmt: skip
                await self._fire(watch, event)

    async def _fire(self, watch: Watch, event: dict[str, Any]) -> None:
        text, data = notice(watch, event)
        try:
            fired = await self.store.fire_watch(watch.id, text, data)
        except Exception as exc:
            # One watch that cannot fire must not stop the others (nor the service): it
            # stays pending, and the next event that fires it tries again.
            self.log.error("watch_not_fired", watch=watch.id, error=repr(exc))
            return
        if fired is not None:
            self.log.info("watch_fired", watch=watch.id, agent=watch.agent_name, on=watch.on)


def _idle(event: EventRecord) -> bool:
    return event.data.get("state") in IDLE_STATES

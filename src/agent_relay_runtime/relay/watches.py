"""Watches, relay side: an agent asks to be told once when another agent is idle, or
takes a delivery; the relay tells it with a DM from its system participant ``relay``.

What fires a watch is in the workspace's event log, where the runtime's nodes put their
sessions' events (``agent.events`` frames) and the relay what it knows itself:

- ``idle``: a ``status.changed`` event of the agent whose ``state`` is ``idle`` or
  ``ready`` (both are idle boundaries: see `SessionState.is_idle`);
- ``delivered``: a ``delivery.delivered`` event of the agent; with a ``message_id``, only
  that message's, and its ``delivery.failed`` fires the watch too (the message will never
  be taken: the notice says so);
- either: an ``agent.deregistered`` event of the agent (`AGENT_DEREGISTERED`: its node
  deregistered it, as the runtime's do when its session ends or is released). What the
  watch waits for will not come, and the notice says the agent is gone. An agent that is
  merely offline (its node went away, and may come back with it) is not gone.

Only events after the watch was made fire it (its ``after_seq``), except that a watch
whose condition already holds fires at once: the agent's last status before the watch
is idle, or the message's receipt is final; or the agent is gone already (which beats
an idle status before it, not a final receipt: the message was taken, or not, all the
same).

The notice's data (the DM's metadata and the ``watch.fired`` event) says how it ended in
``outcome``: ``met`` (idle, or took the delivery), ``failed`` (the watched message's
delivery failed) or ``gone``.

`WatchService.run` follows the log from a cursor kept in the store, waking on the
store's commit notifier. Firing is one transaction that deletes the watch (see
`Store.fire_watch`), so reading events again after a restart cannot fire a watch twice,
and an event committed just before the relay died still fires its watch when it is back.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any, Literal

import anyio
from anyio.abc import TaskStatus

from ..aio import running
from ..logs import get_logger
from .store import AGENT_DEREGISTERED, EventRecord, Store, Watch, WatchOn

__all__ = ["IDLE_STATES", "Outcome", "WatchService", "fires", "notice"]

Outcome = Literal["met", "failed", "gone"]

IDLE_STATES = frozenset({"idle", "ready"})
PAGE = 500
CURSOR_EVERY = 1000  # store the cursor when it has moved this far: a short catch-up


def fires(watch: Watch, event: EventRecord) -> bool:
    """Whether ``event`` (of the watched agent, after the watch was made) fires ``watch``."""
    if event.type == AGENT_DEREGISTERED:
        return True  # gone: what the watch waits for will not come
    if watch.on == "idle":
        return event.type == "status.changed" and event.data.get("state") in IDLE_STATES
    if watch.message_id is None:
        return event.type == "delivery.delivered"
    kinds = ("delivery.delivered", "delivery.failed")
    return event.type in kinds and event.data.get("message_id") == watch.message_id


def notice(watch: Watch, event: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The DM's text and structured data for ``watch`` fired by ``event``."""
    agent, data, kind = watch.agent_name, event.get("data") or {}, event.get("type")
    outcome: Outcome = "met"
    if kind == AGENT_DEREGISTERED:
        outcome = "gone"
        why = f"deregistered by node {data['node']}" if data.get("node") else "deregistered"
        text = f"@{agent} is gone ({why}): it will not {_awaited(watch)}"
    elif watch.on == "idle":
        text = f"@{agent} is idle"
    elif kind == "delivery.failed":
        outcome = "failed"
        reason = data.get("reason") or "failed"
        text = f"@{agent} did not take message {data.get('message_id')}: {reason}"
    else:
        text = f"@{agent} took message {data.get('message_id')}"
    fields: dict[str, Any] = {"watch_id": watch.id, "agent": agent, "on": watch.on}
    if watch.message_id is not None:
        fields["message_id"] = watch.message_id
    return text, {**fields, "notify": watch.watcher_name, "outcome": outcome, "event": event}


def _awaited(watch: Watch) -> str:
    """What ``watch`` waits for the agent to do, as in "it will not …"."""
    if watch.on == "idle":
        return "become idle"
    return f"take message {watch.message_id}" if watch.message_id else "take a delivery"


class WatchService:
    """Makes watches, fires those already satisfied, and follows the log for the rest."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.log = get_logger(component="relay.watches")
        # Told of each watch made (by `watch`, the only way one is made): while none is
        # pending, `run` waits for this instead of reading the log after every commit.
        self._made = anyio.Event()
        self._made_after: int | None = None  # the least after_seq of those made since

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
        after = self._made_after
        self._made_after = watch.after_seq if after is None else min(after, watch.after_seq)
        self._made.set()
        await self._settle(watch)
        return watch

    def lifespan(self, app: object) -> AbstractAsyncContextManager[None]:
        """Run the service while the app serves (a Starlette lifespan)."""
        return running(self.run)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Catch up (watches made just before a restart, then the log from the stored
        cursor), report started, then follow the log until cancelled."""
        for watch in await self.store.list_watches(None):
            await self._settle(watch)
        cursor = saved = await self.store.watch_cursor()
        started = False
        while True:
            waiter = self.store.committed.waiter()  # before reading: no commit is missed
            found, cursor, watching = await self.store.watched_events(cursor, PAGE)
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
            if watching:
                await waiter.wait()
                continue
            # No watch is pending: nothing in the log can fire one before one is made, and
            # a watch fires only on events after its after_seq.
            await self._made.wait()
            self._made = anyio.Event()
            if self._made_after is not None:
                cursor, self._made_after = max(cursor, self._made_after), None

    async def _on_event(self, workspace_id: str, event: EventRecord) -> None:
        if event.agent is None or (event.type == "status.changed" and not _idle(event)):
            return  # cannot fire anything: spare the look-up
        for watch in await self.store.watches_on(workspace_id, event.agent):
            if watch.after_seq < event.seq and fires(watch, event):
                await self._fire(watch, event.model_dump())

    async def _settle(self, watch: Watch) -> None:
        """Fire ``watch`` if what it waits for held when it was made, or its agent is gone."""
        held = await self._held(watch)
        gone = await self.store.gone_event(watch.agent_id)
        # A receipt is news even of an agent gone since; an idle status before it is not.
        if held is not None and (watch.on == "delivered" or gone is None):
            await self._fire(watch, held)
        elif gone is not None:
            await self._fire(watch, gone.model_dump())

    async def _held(self, watch: Watch) -> dict[str, Any] | None:
        """The event by which what ``watch`` waits for held when it was made, if it did."""
        if watch.on == "idle":
            last = await self.store.last_status(
                watch.workspace_id, watch.agent_name, watch.after_seq
            )
            return last.model_dump() if last is not None and _idle(last) else None
        if watch.message_id is None:
            return None
        delivery = await self.store.delivery_of(watch.agent_id, watch.message_id)
        if delivery is None or delivery.status not in ("delivered", "failed"):
            return None
        # Its event is somewhere in the log; the receipt says the same.
        return {
            "seq": None, "type": f"delivery.{delivery.status}", "agent": watch.agent_name,
            "action": None, "created_at": delivery.updated_at,
            "data": {
                "delivery_id": delivery.id, "message_id": delivery.message_id,
                "agent_name": watch.agent_name, "seq": delivery.seq,
                "reason": delivery.reason, "evidence": delivery.evidence,
            },
        }  # fmt: skip

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
            self.log.info(
                "watch_fired", watch=watch.id, agent=watch.agent_name, on=watch.on,
                outcome=data["outcome"],
            )  # fmt: skip


def _idle(event: EventRecord) -> bool:
    return event.data.get("state") in IDLE_STATES

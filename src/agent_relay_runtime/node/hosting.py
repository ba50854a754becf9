"""Hosting the supervisor's sessions on a relay: each session is an agent of the
workspace, relay deliveries go into sessions with honest receipts, and session events
go to the workspace's event log.

For each delivery the node reports every receipt the session gives (``accepted`` or
``deferred``, then ``delivered`` or ``failed``) and, once a delivery's receipt is final,
acknowledges cumulatively: ``up_to_seq`` moves over the longest run of final seqs. A
delivery the relay sends again (after a reconnect, or a relay restart before the ack)
carries the same message id, which the session has seen: it answers with the receipt it
gave, and the message goes into the agent once.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import anyio

from ..aio import Notifier, collapse_single
from ..contract import DeliveryMode, MessageContext, MessageReceipt, RelayMessage
from ..events import ReceiptEvent, SessionEvent, SessionExited, SessionFailed, SessionStarted
from ..exceptions import SessionNotFound
from ..logs import get_logger
from ..relay.wire import (
    AgentDeregister,
    AgentEvents,
    AgentRegister,
    Deliver,
    DeliveryAck,
    DeliveryReceipt,
    Frame,
    InventoryAgent,
    InventorySync,
)
from ..supervisor import Supervisor
from .link import LinkClosed, RelayLink, RelayRefused

__all__ = ["HostedAgent", "RelayHost"]

EVENT_BATCH = 500
EVENT_BACKLOG = 50_000


@dataclass
class HostedAgent:
    """A session as an agent of the workspace, and where its deliveries stand."""

    name: str
    agent_id: str = ""
    token: str = ""
    acked: int = 0
    seq_of: dict[str, int] = field(default_factory=dict)  # message id → seq
    told: dict[int, str] = field(default_factory=dict)  # seq → last status reported
    final: set[int] = field(default_factory=set)


class RelayHost:
    """Joins ``supervisor`` to a relay as the node ``name``. Run with `run`."""

    def __init__(self, supervisor: Supervisor, base_url: str, key: str, name: str) -> None:
        self.supervisor = supervisor
        self.link = RelayLink(
            base_url, key, name, handler=self._on_frame, on_connected=self._register_all
        )
        self.agents: dict[str, HostedAgent] = {}
        self.registered = Notifier()
        self._events: deque[SessionEvent] = deque()
        self._events_ready = anyio.Event()
        self.dropped_events = 0
        self._starting: dict[str, anyio.Event] = {}
        self._tg: anyio.abc.TaskGroup | None = None
        self.log = get_logger(node=name)

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        unsubscribe = self.supervisor.subscribe(self._on_session_event)
        try:
            with collapse_single():
                await self._run(task_status)
        finally:
            unsubscribe()

    async def _run(self, task_status: anyio.abc.TaskStatus[None]) -> None:
        async with anyio.create_task_group() as tg:
            self._tg = tg
            await tg.start(self.link.run)
            tg.start_soon(self._forward_events)
            task_status.started()

    # -- agents ---------------------------------------------------------------------------

    async def _register_all(self) -> None:
        """On every connection: each live session again, then the inventory (what this
        node hosts now; the relay drops what it still binds here and is not in it)."""
        names = [s.name for s in self.supervisor.sessions() if not s.done]
        names += [n for n in self._starting if n in self.agents and n not in names]
        for name in names:  # (one still starting was registered before it started)
            await self.register(name)
        listed = [
            InventoryAgent(agent_id=h.agent_id, name=h.name, session_ref=h.name)
            for h in self.agents.values()
        ]
        await self.link.request(InventorySync(agents=listed))

    async def register(self, name: str) -> HostedAgent:
        """Make ``name`` an agent of the workspace hosted here (again, after a reconnect);
        its token comes back. A session may be registered before it starts, so that it can
        be given its token (`agent.create`)."""
        data = await self.link.request(AgentRegister(name=name, session_ref=name, resumable=False))
        hosted = self.agents.setdefault(name, HostedAgent(name))
        hosted.agent_id, hosted.token = str(data["agent_id"]), str(data["token"])
        hosted.acked = int(data.get("delivery_ack_seq") or 0)
        self.registered.notify()
        self.log.info("agent_registered", session=name, agent_id=hosted.agent_id)
        return hosted

    async def deregister(self, name: str, *, forget: bool = False) -> None:
        """The agent leaves the workspace (its session ended); with ``forget`` (its session
        never ran), the relay removes it where nothing refers to it yet."""
        await self._deregister(name, forget=forget)

    @contextlib.contextmanager
    def starting(self, name: str) -> Iterator[None]:
        """While ``name`` is registered but its session not yet started (and given its
        task), deliveries to it wait (instead of failing as unhosted) until the block ends,
        and its session ending does not deregister it: the block's owner does."""
        started = self._starting[name] = anyio.Event()
        try:
            yield
        finally:
            del self._starting[name]
            started.set()

    async def _deregister(self, name: str, *, forget: bool = False) -> None:
        hosted = self.agents.pop(name, None)
        if hosted is not None:
            frame = AgentDeregister(name=name, agent_id=hosted.agent_id)
            if forget:  # an extension field, sent only when set
                frame = AgentDeregister(name=name, agent_id=hosted.agent_id, forget=True)
            with contextlib.suppress(LinkClosed, RelayRefused, TimeoutError):
                await self.link.request(frame)

    # -- deliveries ---------------------------------------------------------------------------

    async def _on_frame(self, frame: Frame) -> None:
        if isinstance(frame, Deliver):
            starting = self._starting.get(frame.agent)
            if starting is not None and self._tg is not None:
                # Not in the link's reader: it must go on reading while the session starts.
                self._tg.start_soon(self._deliver_once_started, frame, starting)
            else:
                await self._deliver(frame)

    async def _deliver_once_started(self, frame: Deliver, started: anyio.Event) -> None:
        await started.wait()
        with contextlib.suppress(LinkClosed):
            await self._deliver(frame)

    async def _deliver(self, frame: Deliver) -> None:
        hosted = self.agents.get(frame.agent)
        data = frame.payload.data
        message = RelayMessage(
            id=frame.msg_id, text=str(data.get("text", "")), sender=data.get("from_name"),
            channel=data.get("channel_name"), thread_id=data.get("thread_id"),
            mode=DeliveryMode.STEER if frame.mode == "steer" else DeliveryMode.WAIT,
            metadata={"relay_delivery_id": frame.delivery_id},
        )  # fmt: skip
        ctx = MessageContext(delivery_id=frame.delivery_id, seq=frame.seq)
        if hosted is None:
            await self._answer_unhosted(frame)
            return
        hosted.seq_of[frame.msg_id] = frame.seq
        try:
            receipt = await self.supervisor.deliver(frame.agent, message, ctx)
        except SessionNotFound:
            await self._answer_unhosted(frame)
            return
        await self._report(hosted, frame.seq, receipt)

    async def _answer_unhosted(self, frame: Deliver) -> None:
        receipt = DeliveryReceipt(
            agent=frame.agent, seq=frame.seq, status="failed", retryable=True,
            reason=f"no session named {frame.agent!r} on this node",
        )  # fmt: skip
        with contextlib.suppress(LinkClosed):
            await self.link.send(receipt)

    async def _report(self, hosted: HostedAgent, seq: int, receipt: MessageReceipt) -> None:
        if hosted.told.get(seq) == receipt.status or (seq in hosted.final and not receipt.final):
            return
        hosted.told[seq] = receipt.status
        frame = DeliveryReceipt(agent=hosted.name, seq=seq, status=receipt.status)
        updates: dict[str, Any] = {}
        for key in ("reason", "retryable"):
            if getattr(receipt, key, None) is not None:
                updates[key] = getattr(receipt, key)
        available = getattr(receipt, "available_at", None)
        if available is not None:
            updates["available_at"] = available.isoformat()
        evidence = getattr(receipt, "evidence", None)
        if evidence is not None:
            updates["evidence"] = f"{evidence.kind}: {evidence.detail}".rstrip(": ")
        frame = frame.model_copy(update=updates)
        with contextlib.suppress(LinkClosed):
            await self.link.send(frame)
            if receipt.final:
                hosted.final.add(seq)
                await self._ack(hosted)

    async def _ack(self, hosted: HostedAgent) -> None:
        up_to = hosted.acked
        while up_to + 1 in hosted.final:
            up_to += 1
        if up_to > hosted.acked:
            hosted.final.difference_update(range(hosted.acked + 1, up_to + 1))
            for seq in range(hosted.acked + 1, up_to + 1):
                hosted.told.pop(seq, None)
            hosted.acked = up_to
            hosted.seq_of = {m: s for m, s in hosted.seq_of.items() if s > up_to}
            await self.link.send(DeliveryAck(agent=hosted.name, up_to_seq=up_to))

    # -- session events -----------------------------------------------------------------------

    def _on_session_event(self, event: SessionEvent) -> None:
        if len(self._events) >= EVENT_BACKLOG:
            self._events.popleft()
            self.dropped_events += 1
        self._events.append(event)
        self._events_ready.set()

    async def _forward_events(self) -> None:
        while True:
            await self._events_ready.wait()
            self._events_ready = anyio.Event()
            while self._events:
                event = self._events.popleft()
                with contextlib.suppress(LinkClosed, RelayRefused, TimeoutError):
                    await self._forward(event)

    async def _forward(self, event: SessionEvent) -> None:
        name = event.session
        if isinstance(event, SessionStarted):
            if name not in self.agents:  # else registered before it started, token and all
                await self.register(name)
        elif isinstance(event, ReceiptEvent):
            hosted = self.agents.get(name)
            seq = hosted.seq_of.get(event.receipt.message_id) if hosted else None
            if hosted is not None and seq is not None and seq > hosted.acked:
                await self._report(hosted, seq, event.receipt)
            return
        if name not in self.agents:
            return
        batch = [event.model_dump(mode="json", exclude={"session"})]
        while self._events and len(batch) < EVENT_BATCH and self._events[0].session == name:
            nxt = self._events[0]
            if isinstance(nxt, (SessionStarted, ReceiptEvent, SessionExited, SessionFailed)):
                break
            batch.append(self._events.popleft().model_dump(mode="json", exclude={"session"}))
        await self.link.send(AgentEvents.model_validate({"agent": name, "events": batch}))
        if isinstance(event, (SessionExited, SessionFailed)) and name not in self._starting:
            await self._deregister(name)  # (a session still starting: its creator decides)

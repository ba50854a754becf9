"""The relay's real-time half: which node connection hosts which agent and handles which
action, and the pumps that push each agent's deliveries to its node.

Durable first: a delivery reaches a pump only after the commit that wrote it. A pump
that is caught up takes the committed delivery (and its payload) straight from the
write, without a read; one that is behind (it just started, or it missed one) reads its
backlog from the store. Either way it sends seqs in order, each once per connection; a
new connection starts again after the agent's acknowledged seq (at least once on the
wire; the runtime deduplicates by message id).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any, Protocol

import anyio

from .store import Agent, Delivery, Store
from .wire import Deliver, DeliverPayload, Frame

__all__ = ["Hub", "Link", "Pump"]

BACKLOG_PAGE = 500


class Link(Protocol):
    """A node's connection, as the hub sees it."""

    node_id: str
    task_group: anyio.abc.TaskGroup  # lives as long as the connection

    async def send(self, frame: Frame) -> None: ...


class Pump:
    """Pushes one agent's deliveries, in seq order, over one node connection."""

    def __init__(self, store: Store, agent: Agent, link: Link, acked_seq: int) -> None:
        self.store, self.agent, self.link = store, agent, link
        self.sent = acked_seq
        self._live: deque[tuple[Delivery, dict[str, Any]]] = deque()
        self._behind = True  # read the backlog first
        self._wake = anyio.Event()
        self.scope = anyio.CancelScope()

    def offer(self, delivery: Delivery, payload: dict[str, Any]) -> None:
        """A delivery just committed for this agent."""
        self._live.append((delivery, payload))
        self._wake.set()

    async def run(self) -> None:
        with self.scope:
            while True:
                if self._behind:
                    page = await self.store.deliveries_after(self.agent.id, self.sent, BACKLOG_PAGE)
                    self._behind = len(page) == BACKLOG_PAGE
                    for delivery, payload in page:
                        await self._push(delivery, payload)
                    continue
                while self._live and not self._behind:
                    delivery, payload = self._live.popleft()
                    if delivery.seq <= self.sent:
                        continue  # read with the backlog already
                    if delivery.seq != self.sent + 1:
                        self._behind = True  # a gap: the store has what is missing
                        self._live.appendleft((delivery, payload))
                        break
                    await self._push(delivery, payload)
                if not self._behind and not self._live:
                    await self._wake.wait()
                    self._wake = anyio.Event()

    async def _push(self, delivery: Delivery, payload: dict[str, Any]) -> None:
        frame = Deliver(
            delivery_id=delivery.id, agent_id=self.agent.id, agent=self.agent.name,
            msg_id=delivery.message_id, seq=delivery.seq, mode=delivery.mode,
            payload=DeliverPayload(type="message.created", data=payload),
        )  # fmt: skip
        await self.link.send(frame)
        self.sent = delivery.seq


class Hub:
    """Live connections: agent → its pump, (workspace, action) → the link handling it."""

    def __init__(self, store: Store) -> None:
        self._pumps: dict[str, Pump] = {}
        self._handlers: dict[tuple[str, str], Link] = {}
        self._nodes: dict[str, Link] = {}
        store.on_deliveries.append(self._offer)

    def _offer(self, deliveries: Sequence[Delivery], payload: dict[str, Any]) -> None:
        if not self._pumps:
            return  # nobody connected: the deliveries wait in the store (not even looked at)
        for delivery in deliveries:
            pump = self._pumps.get(delivery.agent_id)
            if pump is not None:
                pump.offer(delivery, payload)

    def attach(self, pump: Pump) -> None:
        """``pump`` now carries its agent's deliveries; an older one for it stops."""
        old = self._pumps.get(pump.agent.id)
        if old is not None and old is not pump:
            old.scope.cancel()
        self._pumps[pump.agent.id] = pump

    def detach(self, pump: Pump) -> None:
        pump.scope.cancel()
        if self._pumps.get(pump.agent.id) is pump:
            del self._pumps[pump.agent.id]

    def node_connected(self, link: Link) -> None:
        self._nodes[link.node_id] = link

    def node_gone(self, link: Link) -> bool:
        """Forget ``link``; False if a newer connection of the same node took over."""
        for key in [k for k, v in self._handlers.items() if v is link]:
            del self._handlers[key]
        if self._nodes.get(link.node_id) is link:
            del self._nodes[link.node_id]
            return True
        return False

    def handle(self, workspace_id: str, actions: list[str], link: Link) -> None:
        """``link`` handles exactly ``actions`` from now on."""
        for key in [k for k, v in self._handlers.items() if v is link]:
            del self._handlers[key]
        for name in actions:
            self._handlers[(workspace_id, name)] = link

    def handler(self, workspace_id: str, action: str) -> Link | None:
        return self._handlers.get((workspace_id, action))

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

import json
import weakref
from collections import deque
from json.encoder import encode_basestring_ascii
from typing import Any, NamedTuple, Protocol

import anyio

from .store import Agent, NewDeliveries, Store, delivery_id
from .wire import VERSION, Frame

__all__ = ["Hub", "Link", "Outgoing", "Pump", "deliver_text", "payload_text"]

BACKLOG_PAGE = 500


def payload_text(payload: dict[str, Any]) -> str:
    """A ``deliver`` frame's ``payload`` as JSON: made once for a message, whatever the
    number of its targets (a fan-out of ten pushes the same payload ten times)."""
    return json.dumps({"type": "message.created", "data": payload}, separators=(",", ":"))


class Outgoing(NamedTuple):
    """A delivery as its pump sends it: made from the keys of a commit (`NewDeliveries`)
    or a backlog read, never a model (cheaper, twenty thousand a second)."""

    seq: int
    message_id: str
    mode: str
    payload: str  # the deliver frame's payload, encoded by `payload_text`


def deliver_text(agent: Agent, out: Outgoing) -> str:
    """The ``deliver`` frame's JSON text (as `wire.encode` would write a `wire.Deliver`).
    Written out rather than dumped from a dict (1.8 µs against 6.7: ten a message fanned
    out to ten agents)."""
    q = encode_basestring_ascii
    return (
        f'{{"v":{VERSION},"type":"deliver","delivery_id":{q(delivery_id(agent.id, out.seq))},'
        f'"agent_id":{q(agent.id)},"agent":{q(agent.name)},"msg_id":{q(out.message_id)},'
        f'"seq":{int(out.seq)},"mode":{q(out.mode)},"payload":{out.payload}}}'
    )


class Link(Protocol):
    """A node's connection, as the hub sees it."""

    node_id: str
    task_group: anyio.abc.TaskGroup  # lives as long as the connection

    async def send(self, frame: Frame) -> None: ...

    async def send_text(self, text: str) -> None:
        """A frame already encoded."""
        ...


class Pump:
    """Pushes one agent's deliveries, in seq order, over one node connection."""

    def __init__(self, store: Store, agent: Agent, link: Link, acked_seq: int) -> None:
        self.store, self.agent, self.link = store, agent, link
        self.sent = acked_seq
        self._live: deque[Outgoing] = deque()
        self._behind = True  # read the backlog first
        self._wake = anyio.Event()
        self.scope = anyio.CancelScope()

    def offer(self, out: Outgoing) -> None:
        """A delivery just committed for this agent."""
        self._live.append(out)
        self._wake.set()

    async def run(self) -> None:
        with self.scope:
            while True:
                if self._behind:
                    page = await self.store.deliveries_after(self.agent.id, self.sent, BACKLOG_PAGE)
                    self._behind = len(page) == BACKLOG_PAGE
                    for delivery, payload in page:
                        await self._push(
                            Outgoing(delivery.seq, delivery.message_id, delivery.mode,
                                     payload_text(payload))
                        )  # fmt: skip
                    continue
                while self._live and not self._behind:
                    out = self._live.popleft()
                    if out.seq <= self.sent:
                        continue  # read with the backlog already
                    if out.seq != self.sent + 1:
                        self._behind = True  # a gap: the store has what is missing
                        self._live.appendleft(out)
                        break
                    await self._push(out)
                if not self._behind and not self._live:
                    await self._wake.wait()
                    self._wake = anyio.Event()

    async def _push(self, out: Outgoing) -> None:
        await self.link.send_text(deliver_text(self.agent, out))
        self.sent = out.seq


class Hub:
    """Live connections: agent → its pump, (workspace, action) → the link handling it."""

    def __init__(self, store: Store) -> None:
        self._pumps: dict[str, Pump] = {}
        self._handlers: dict[tuple[str, str], Link] = {}
        self._nodes: dict[str, Link] = {}
        self._gone: weakref.WeakSet[Link] = weakref.WeakSet()  # closed: nothing more for them
        store.on_deliveries.append(self._offer)

    def _offer(self, new: NewDeliveries, payload: dict[str, Any]) -> None:
        if not self._pumps:
            return  # nobody connected: the deliveries wait in the store
        encoded: str | None = None
        for agent_id, seq in new.rows:
            pump = self._pumps.get(agent_id)
            if pump is not None:
                encoded = encoded or payload_text(payload)
                pump.offer(Outgoing(seq, new.message_id, new.mode, encoded))

    def attach(self, pump: Pump) -> None:
        """``pump`` now carries its agent's deliveries; an older one for it stops (and
        one of a link that is gone does not start)."""
        if pump.link in self._gone:
            pump.scope.cancel()
            return
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
        """Forget ``link``, and take nothing more for it (a handler of one of its frames
        may still be finishing); False if a newer connection of the same node took over."""
        self._gone.add(link)
        for key in [k for k, v in self._handlers.items() if v is link]:
            del self._handlers[key]
        if self._nodes.get(link.node_id) is link:
            del self._nodes[link.node_id]
            return True
        return False

    def node_link(self, node_id: str) -> Link | None:
        """The node's connection now, if it is connected."""
        return self._nodes.get(node_id)

    def node_live(self, node_id: str) -> bool:
        """Whether the node is connected now."""
        return node_id in self._nodes

    def live_nodes(self) -> list[str]:
        """The ids of the nodes connected now."""
        return list(self._nodes)

    def handle(self, workspace_id: str, actions: list[str], link: Link) -> None:
        """``link`` handles exactly ``actions`` from now on (nothing, if it is gone)."""
        if link in self._gone:
            return
        for key in [k for k, v in self._handlers.items() if v is link]:
            del self._handlers[key]
        for name in actions:
            self._handlers[(workspace_id, name)] = link

    def handler(self, workspace_id: str, action: str) -> Link | None:
        return self._handlers.get((workspace_id, action))

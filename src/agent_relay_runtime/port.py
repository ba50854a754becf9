"""The delivery port: where messages for hosted sessions come from, where receipts go.

The runtime is a *node*: it hosts sessions and exposes `RuntimeNode.deliver`. A port
connects a node to a message source. `LocalDeliveryPort` is the in-process one that
`serve` uses until it joins a relay: ``send`` hands the message straight to the node. A
relay port implements the same protocol over the relay's node channel: deliveries arrive
from the relay, and the receipts published here are acknowledged back to it.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Protocol

import anyio

from .aio import Notifier
from .contract import MessageContext, MessageReceipt, RelayMessage
from .events import ReceiptEvent, SessionEvent

__all__ = ["DeliveryPort", "LocalDeliveryPort", "RuntimeNode"]


class RuntimeNode(Protocol):
    """What a port calls into: the supervisor."""

    async def deliver(
        self, target: str, message: RelayMessage, ctx: MessageContext
    ) -> MessageReceipt: ...


class DeliveryPort(Protocol):
    def bind(self, node: RuntimeNode) -> None:
        """Attach the node that hosts the sessions."""

    async def send(self, target: str, message: RelayMessage) -> MessageReceipt:
        """Send ``message`` to the session named ``target``; the first receipt."""
        ...

    async def wait_final(self, message_id: str, timeout: float) -> MessageReceipt:
        """Wait for ``delivered`` or ``failed``; TimeoutError after ``timeout`` s."""
        ...

    def publish(self, event: SessionEvent) -> None:
        """Take every session event (receipts included) from the node."""


class LocalDeliveryPort:
    """In-process port: the daemon's control API is the only sender."""

    def __init__(self, remember: int = 10_000) -> None:
        self._node: RuntimeNode | None = None
        self._receipts: OrderedDict[str, MessageReceipt] = OrderedDict()
        self._remember = remember
        self._changed = Notifier()

    def bind(self, node: RuntimeNode) -> None:
        self._node = node

    async def send(self, target: str, message: RelayMessage) -> MessageReceipt:
        assert self._node is not None, "port not bound to a node"
        receipt = await self._node.deliver(target, message, MessageContext())
        self._record(receipt)
        return receipt

    async def wait_final(self, message_id: str, timeout: float) -> MessageReceipt:
        with anyio.fail_after(timeout):
            while True:
                receipt = self._receipts.get(message_id)
                if receipt is not None and receipt.final:
                    return receipt
                await self._changed.wait()

    def publish(self, event: SessionEvent) -> None:
        if isinstance(event, ReceiptEvent):
            self._record(event.receipt)

    def _record(self, receipt: MessageReceipt) -> None:
        current = self._receipts.get(receipt.message_id)
        if current is not None and current.final and not receipt.final:
            return  # an initial receipt reported after the final one: keep the final
        self._receipts[receipt.message_id] = receipt
        self._receipts.move_to_end(receipt.message_id)
        while len(self._receipts) > self._remember:
            self._receipts.popitem(last=False)
        self._changed.notify()

"""The delivery queue with a scripted injector: order, receipts, dedup, failure."""

from __future__ import annotations

from collections.abc import Callable

import anyio
import pytest

from agent_relay_runtime.contract import (
    DeliveryMode,
    Evidence,
    MessageContext,
    MessageReceipt,
    RelayMessage,
    SessionState,
    SignalSource,
)
from agent_relay_runtime.exceptions import DeliveryFailed
from agent_relay_runtime.session.delivery import DeliveryQueue
from agent_relay_runtime.session.state import StateMachine

pytestmark = pytest.mark.anyio
S = SessionState
P = SignalSource.PROTOCOL


class Rig:
    """A queue over a real state machine; injecting starts a turn, like an agent."""

    def __init__(self, maxlen: int = 100) -> None:
        self.receipts: list[MessageReceipt] = []
        self.injected: list[str] = []
        self.fail_next: DeliveryFailed | None = None
        self.block = anyio.Event()
        self.block.set()
        self.machine = StateMachine(lambda *a: self.queue.poke(), P)
        self.queue = DeliveryQueue(
            session="s",
            state=self.machine,
            inject=self.inject,
            on_receipt=self.receipts.append,
            maxlen=maxlen,
        )

    async def inject(self, message: RelayMessage, mode: DeliveryMode) -> Evidence:
        await self.block.wait()
        if self.fail_next:
            error, self.fail_next = self.fail_next, None
            raise error
        self.injected.append(message.text)
        self.machine.set(S.BUSY, "turn", P)
        return Evidence(kind="protocol_ack")

    def submit(self, text: str, mode: DeliveryMode = DeliveryMode.WAIT, **kw: str) -> str:
        return self.queue.submit(RelayMessage(text=text, mode=mode, **kw), MessageContext()).status

    def statuses(self, text_index: int) -> list[str]:
        ids = []
        for r in self.receipts:
            if r.message_id not in ids:
                ids.append(r.message_id)
        return [r.status for r in self.receipts if r.message_id == ids[text_index]]

    async def until(self, check: Callable[[], bool]) -> None:
        with anyio.fail_after(5):
            while not check():
                await anyio.lowlevel.checkpoint()


async def test_idle_session_accepts_and_delivers() -> None:
    rig = Rig()
    rig.machine.set(S.READY, "up", P)
    async with anyio.create_task_group() as tg:
        tg.start_soon(rig.queue.run)
        assert rig.submit("one") == "accepted"
        await rig.until(lambda: rig.injected == ["one"])
        assert rig.statuses(0) == ["accepted", "delivered"]
        tg.cancel_scope.cancel()


async def test_busy_session_defers_until_the_next_idle_boundary() -> None:
    rig = Rig()
    rig.machine.set(S.READY, "up", P)
    async with anyio.create_task_group() as tg:
        tg.start_soon(rig.queue.run)
        rig.submit("first")
        await rig.until(lambda: rig.injected == ["first"])
        assert rig.submit("second") == "deferred"  # the first one's turn is running
        await anyio.wait_all_tasks_blocked()
        assert rig.injected == ["first"]
        rig.machine.set(S.IDLE, "turn over", P)
        await rig.until(lambda: rig.injected == ["first", "second"])
        assert rig.statuses(1) == ["deferred", "delivered"]
        tg.cancel_scope.cancel()


async def test_steer_goes_before_queued_waits() -> None:
    rig = Rig()
    rig.machine.set(S.READY, "up", P)
    async with anyio.create_task_group() as tg:
        tg.start_soon(rig.queue.run)
        rig.submit("A")
        await rig.until(lambda: rig.injected == ["A"])
        rig.submit("B")
        rig.submit("C")
        assert rig.submit("STEER", DeliveryMode.STEER) == "accepted"
        await rig.until(lambda: rig.injected == ["A", "STEER"])
        rig.machine.set(S.IDLE, "done", P)
        await rig.until(lambda: len(rig.injected) == 3)
        rig.machine.set(S.IDLE, "done", P)
        rig.machine.set(S.BUSY, "x", P)
        rig.machine.set(S.IDLE, "done", P)
        await rig.until(lambda: len(rig.injected) == 4)
        assert rig.injected == ["A", "STEER", "B", "C"]
        tg.cancel_scope.cancel()


async def test_a_starting_session_defers_even_steer() -> None:
    rig = Rig()
    assert rig.submit("early", DeliveryMode.STEER) == "deferred"
    assert rig.receipts[-1].reason == "session is starting"  # type: ignore[union-attr]


async def test_duplicates_are_not_injected_twice() -> None:
    rig = Rig()
    rig.machine.set(S.READY, "up", P)
    async with anyio.create_task_group() as tg:
        tg.start_soon(rig.queue.run)
        rig.queue.submit(RelayMessage(id="m1", text="once"), MessageContext())
        await rig.until(lambda: rig.injected == ["once"])
        again = rig.queue.submit(RelayMessage(id="m1", text="once"), MessageContext())
        assert again.status == "delivered"
        keyed = rig.queue.submit(
            RelayMessage(text="k", idempotency_key="key-1", mode=DeliveryMode.IMMEDIATE),
            MessageContext(),
        )
        await rig.until(lambda: rig.injected == ["once", "k"])
        same_key = rig.queue.submit(
            RelayMessage(text="k", idempotency_key="key-1"), MessageContext()
        )
        assert same_key.message_id == keyed.message_id
        await anyio.wait_all_tasks_blocked()
        assert rig.injected == ["once", "k"]
        tg.cancel_scope.cancel()


async def test_injection_failure_reports_failed_with_retryable() -> None:
    rig = Rig()
    rig.machine.set(S.READY, "up", P)
    rig.fail_next = DeliveryFailed("no evidence", retryable=False)
    async with anyio.create_task_group() as tg:
        tg.start_soon(rig.queue.run)
        rig.submit("lost?")
        await rig.until(lambda: len(rig.receipts) == 2)
        final = rig.receipts[-1]
        assert final.status == "failed" and not final.retryable  # type: ignore[union-attr]
        assert final.reason == "no evidence"  # type: ignore[union-attr]
        tg.cancel_scope.cancel()


async def test_a_full_queue_refuses_with_a_retryable_failure() -> None:
    rig = Rig(maxlen=2)
    rig.submit("1")
    rig.submit("2")
    assert rig.submit("3") == "failed"
    assert rig.receipts[-1].retryable  # type: ignore[union-attr]


async def test_closing_fails_what_was_queued_and_refuses_more() -> None:
    rig = Rig()
    rig.submit("queued")
    rig.queue.close("session released")
    assert rig.statuses(0) == ["deferred", "failed"]
    assert rig.receipts[-1].retryable  # type: ignore[union-attr]  # never injected
    assert rig.submit("late") == "failed"


async def test_a_delivery_cut_short_may_have_landed() -> None:
    rig = Rig()
    rig.machine.set(S.READY, "up", P)
    rig.block = anyio.Event()  # injection hangs
    async with anyio.create_task_group() as tg:
        tg.start_soon(rig.queue.run)
        rig.submit("in flight")
        await anyio.wait_all_tasks_blocked()
        tg.cancel_scope.cancel()
    final = rig.receipts[-1]
    assert final.status == "failed" and not final.retryable  # type: ignore[union-attr]


async def test_a_turn_that_ends_before_the_injection_returns_still_frees_the_queue() -> None:
    # A fast agent can finish the turn a message started before the driver reports the
    # evidence; the next waiting message must not wait for an idle boundary that passed.
    rig = Rig()
    rig.machine.set(S.READY, "up", P)

    async def quick(message: RelayMessage, mode: DeliveryMode) -> Evidence:
        rig.injected.append(message.text)
        rig.machine.set(S.BUSY, "turn", P)
        rig.machine.set(S.IDLE, "turn over", P)
        return Evidence(kind="protocol_ack")

    rig.queue._inject = quick
    async with anyio.create_task_group() as tg:
        tg.start_soon(rig.queue.run)
        rig.submit("one")
        rig.submit("two")
        await rig.until(lambda: rig.injected == ["one", "two"])
        tg.cancel_scope.cancel()

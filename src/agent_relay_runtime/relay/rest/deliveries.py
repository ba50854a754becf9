"""Deliveries over REST, for an agent without a node socket (relaycast's durable delivery
API): poll what is waiting, then ack, fail or defer each one.

- ``GET /v1/deliveries?limit=N&wait=S`` (agent token): the agent's deliveries after its
  acknowledged seq that are not settled and not deferred to a later time, oldest first,
  at most ``limit`` (1–500, 50). With ``wait`` (seconds, at most `MAX_WAIT`) and nothing
  waiting, the answer waits until a delivery for the agent is committed, a deferred one
  comes due, or the time is up (then ``[]``); it sleeps on the store's commit callbacks
  and a timer, never polls. ``?status=queued|delivered|acked|failed|dead_lettered``
  lists by relaycast's state instead (``queued`` includes deferred ones; nothing is
  ever dead-lettered here).
- ``POST /v1/deliveries/{id}/ack`` ``{}``: delivered (a ``delivery.delivered`` receipt,
  the agent's ack its evidence) and settled.
- ``POST /v1/deliveries/{id}/fail`` ``{error | reason, retryable}``: failed and settled;
  it does not come back (``retryable`` tells the sender whether sending again is safe).
- ``POST /v1/deliveries/{id}/defer`` ``{available_at | delay_ms, reason}``: held back
  until then (a ``delivery.deferred`` receipt), then it is waiting again.

Each answer is relaycast's `Delivery` (a listing's items add the ``message``: the same
payload a node's ``deliver`` frame carries). Settling moves the agent's acknowledged seq
as a node's cumulative ack does (see `sqlite.polling`). Errors: the workspace key is
403 ``agent_token_required``; an id that is not one of the caller's deliveries 404
``delivery_not_found``; settling one settled already 409
``delivery_already_acked|failed|delivered``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, get_args

import anyio
from pydantic import Field
from starlette.requests import Request
from starlette.routing import Route

from ...aio import Notifier
from ..store import Agent, Delivery, DeliveryFinal, NewDeliveries, NotFound, SettleOutcome, Store
from .kit import Api, ApiError, Body, Caller

__all__ = ["MAX_WAIT", "delivery_view", "routes"]

MAX_WAIT = 60.0  # seconds a poll may wait
MAX_DELAY_MS = 30 * 24 * 3600 * 1000  # a deferral of at most 30 days
ListState = Literal["queued", "delivered", "acked", "failed", "dead_lettered"]


class Ack(Body):
    """No fields: an empty body, or ``{}``."""


class Fail(Body):
    error: Annotated[str, Field(max_length=2000)] | None = None  # relaycast's name
    reason: Annotated[str, Field(max_length=2000)] | None = None  # the runtime receipts'
    retryable: bool | None = None


class Defer(Body):
    available_at: str | None = None
    delay_ms: Annotated[int, Field(ge=0, le=MAX_DELAY_MS)] | None = None
    reason: Annotated[str, Field(max_length=2000)] | None = None


def delivery_view(delivery: Delivery, payload: dict[str, Any]) -> dict[str, Any]:
    """A delivery as relaycast's `DeliveryItem` (its `Delivery` plus the ``message``)."""
    if delivery.status == "failed":
        status = "failed"
    elif delivery.acked:
        status = "acked"
    else:
        status = "delivered" if delivery.status == "delivered" else "queued"
    return {
        "id": delivery.id, "message_id": delivery.message_id,
        "channel_id": payload["channel_id"], "agent_id": delivery.agent_id, "status": status,
        "seq": delivery.seq, "location_type": "relay", "mode": delivery.mode,
        "priority": "normal", "reason": delivery.reason, "retryable": delivery.retryable,
        "error": delivery.reason if delivery.status == "failed" else None,
        "available_at": delivery.available_at, "evidence": delivery.evidence,
        "created_at": payload["created_at"], "updated_at": delivery.updated_at,
        "message": payload,
    }  # fmt: skip


class Bell:
    """Wakes the polls of an agent when a delivery for it has been committed."""

    def __init__(self, store: Store) -> None:
        self._agents: dict[str, tuple[Notifier, int]] = {}
        store.on_deliveries.append(self._ring)

    def _ring(self, new: NewDeliveries, payload: dict[str, Any]) -> None:
        if not self._agents:
            return  # nobody polling
        for agent_id, _ in new.rows:
            found = self._agents.get(agent_id)
            if found is not None:
                found[0].notify()

    @contextmanager
    def listening(self, agent_id: str) -> Iterator[Notifier]:
        notifier, count = self._agents.get(agent_id, (Notifier(), 0))
        self._agents[agent_id] = (notifier, count + 1)
        try:
            yield notifier
        finally:
            notifier, count = self._agents[agent_id]
            if count == 1:
                del self._agents[agent_id]
            else:
                self._agents[agent_id] = (notifier, count - 1)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _due(body: Defer) -> str:
    """When a deferred delivery comes back, as the store writes times."""
    if (body.available_at is None) == (body.delay_ms is None):
        raise ApiError(400, "invalid_request", "give one of available_at or delay_ms")
    if body.delay_ms is not None:
        return _iso(datetime.now(UTC) + timedelta(milliseconds=body.delay_ms))
    assert body.available_at is not None
    try:
        moment = datetime.fromisoformat(body.available_at)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise ApiError(
            400, "invalid_request",
            f"available_at: an ISO-8601 time with its offset, not {body.available_at!r}",
        )  # fmt: skip
    return _iso(moment)


def _seconds_until(moment: str) -> float:
    return (datetime.fromisoformat(moment) - datetime.now(UTC)).total_seconds()


def _query(request: Request) -> tuple[int, float, ListState | None]:
    query = request.query_params
    try:
        limit = int(query.get("limit") or 50)
        wait = float(query.get("wait") or 0)
    except ValueError:
        raise ApiError(400, "invalid_request", "limit and wait: numbers") from None
    if not 1 <= limit <= 500:
        raise ApiError(400, "invalid_request", f"limit: 1 to 500, not {limit}")
    if not 0 <= wait <= MAX_WAIT:
        raise ApiError(400, "invalid_request", f"wait: 0 to {MAX_WAIT:g} seconds, not {wait:g}")
    status = query.get("status") or None
    if status is not None and status not in get_args(ListState):
        raise ApiError(400, "invalid_request", f"status: one of {', '.join(get_args(ListState))}")
    if status is not None and wait:
        raise ApiError(400, "invalid_request", "wait: only when polling (no status)")
    return limit, wait, status  # type: ignore[return-value]


def routes(api: Api) -> list[Route]:
    store = api.store
    bell = Bell(store)

    def agent_of(caller: Caller) -> Agent:
        if caller.agent is None:
            raise ApiError(
                403, "agent_token_required",
                "deliveries belong to an agent: call with its token (at_…), not the workspace key",
            )  # fmt: skip
        return caller.agent

    async def poll(agent: Agent, limit: int, wait: float) -> list[tuple[Delivery, dict[str, Any]]]:
        deadline = anyio.current_time() + wait
        with bell.listening(agent.id) as notifier:
            while True:
                waiter = notifier.waiter()  # before reading: a commit meanwhile is not missed
                page = await store.pending_deliveries(agent.id, limit)
                left = deadline - anyio.current_time()
                if page.items or left <= 0:
                    return page.items
                if page.next_due is not None:  # a deferred one comes due before then
                    left = min(left, max(_seconds_until(page.next_due), 0.001))
                with anyio.move_on_after(left):
                    await waiter.wait()

    async def list_deliveries(request: Request, caller: Caller) -> Any:
        agent = agent_of(caller)
        limit, wait, status = _query(request)
        if status == "dead_lettered":
            found = []
        elif status is not None:
            found = await store.deliveries_in_state(agent.id, status, limit)
        else:
            found = await poll(agent, limit, wait)
        return [delivery_view(d, payload) for d, payload in found]

    async def settle(request: Request, agent: Agent, outcome: SettleOutcome, **details: Any) -> Any:
        delivery_id = request.path_params["id"]
        try:
            delivery, payload = await store.settle_delivery(
                agent.id, delivery_id, outcome, **details
            )
        except NotFound:
            raise ApiError(
                404, "delivery_not_found", f"no delivery {delivery_id!r} for {agent.name}"
            ) from None
        except DeliveryFinal as exc:
            raise ApiError(409, f"delivery_already_{exc.state}", str(exc)) from None
        return delivery_view(delivery, payload)

    async def ack(request: Request, caller: Caller) -> Any:
        agent = agent_of(caller)
        await api.body_of(request, Ack)
        return await settle(request, agent, "ack")

    async def fail(request: Request, caller: Caller) -> Any:
        agent = agent_of(caller)
        body = await api.body_of(request, Fail)
        reason = body.error if body.error is not None else body.reason
        return await settle(request, agent, "fail", reason=reason, retryable=body.retryable)

    async def defer(request: Request, caller: Caller) -> Any:
        agent = agent_of(caller)
        body = await api.body_of(request, Defer)
        due = _due(body)
        return await settle(request, agent, "defer", reason=body.reason, available_at=due)

    endpoint = api.endpoint
    return [
        Route("/v1/deliveries", endpoint(list_deliveries), methods=["GET"]),
        Route("/v1/deliveries/{id}/ack", endpoint(ack), methods=["POST"]),
        Route("/v1/deliveries/{id}/fail", endpoint(fail), methods=["POST"]),
        Route("/v1/deliveries/{id}/defer", endpoint(defer), methods=["POST"]),
    ]

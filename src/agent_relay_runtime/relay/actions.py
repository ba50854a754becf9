"""Typed actions, relay side: registration from a node's capabilities, policy, input
checking, fire-and-forget dispatch to the handling node, results, timeouts.

An action is a node capability of kind ``action`` whose metadata carries
``description``, ``input_schema`` (JSON Schema, from the handler's pydantic model),
``available_to`` (selectors; absent lets everyone invoke), ``when_offline`` (``fail``:
an invocation while no handler is connected fails at once; ``queue``: it waits for the
handler to come back) and ``timeout_s``. The relay enforces the policy and the schema
before anything reaches the handler: a caller outside the policy gets ``action.denied``,
bad input gets the validation errors, and in both cases the handler never runs.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import anyio
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from .hub import Hub, Link
from .store import Action, Agent, Invocation, Store, ordered_id
from .wire import ActionInvoke, Capability

__all__ = ["ActionService", "Refused", "allowed"]


class Refused(Exception):
    """An invocation the relay will not pass on: ``code`` says why."""

    def __init__(self, status: int, code: str, message: str, invocation_id: str | None = None):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.invocation_id = invocation_id


def allowed(action: Action, caller: Agent | None) -> bool:
    """Whether ``caller`` (None: the workspace key itself) may invoke ``action``."""
    if caller is None or not action.available_to:
        return caller is None or action.available_to is None
    for selector in action.available_to:
        name, kind = selector.get("name"), selector.get("type")
        if (name is None or name in (caller.name, "*")) and (kind is None or kind == caller.kind):
            return True
    return False


class ActionService:
    def __init__(self, store: Store, hub: Hub) -> None:
        self.store, self.hub = store, hub
        self._inflight: dict[str, tuple[Link, anyio.CancelScope]] = {}

    # -- handlers --------------------------------------------------------------------------

    async def handler_online(
        self, workspace_id: str, link: Link, capabilities: list[Capability]
    ) -> list[dict[str, Any]]:
        """``link`` handles the ``action`` capabilities given, and no others; what was
        accepted (every capability is: those of other kinds are recorded, not served)."""
        accepted, names = [], []
        for capability in capabilities:
            answer: dict[str, Any] = {"name": capability.name, "accepted": True}
            if capability.kind is not None:
                answer["kind"] = capability.kind
            if capability.kind == "action":
                try:
                    action = _action_of(workspace_id, capability, link.node_id)
                except ValueError as exc:
                    answer.update(accepted=False, reason=str(exc))
                else:
                    await self.store.put_action(action)
                    names.append(action.name)
                    # So that clients listing tools (the MCP server) learn of it at once.
                    await self.store.append_event(
                        workspace_id, "action.registered",
                        {"name": action.name, "description": action.description},
                        action=action.name,
                    )  # fmt: skip
            accepted.append(answer)
        for gone in await self.store.drop_actions(workspace_id, link.node_id, names):
            await self.store.append_event(
                workspace_id, "action.unregistered", {"name": gone}, action=gone
            )
        self.hub.handle(workspace_id, names, link)
        for name in names:  # what was queued while no handler was there
            for waiting in await self.store.waiting_invocations(workspace_id, name):
                action_now = await self.store.action_named(workspace_id, name)
                if action_now is not None:
                    await self._dispatch(link, action_now, waiting, link.task_group)
        return accepted

    async def handler_gone(self, link: Link) -> None:
        """Invocations ``link`` had not answered fail (the handler may have run them)."""
        for invocation_id, (owner, scope) in list(self._inflight.items()):
            if owner is link:
                scope.cancel()
                del self._inflight[invocation_id]
                await self.store.finish_invocation(
                    invocation_id, error="the handler disconnected before it answered"
                )

    # -- invocations -------------------------------------------------------------------------

    async def invoke(
        self, workspace_id: str, name: str, input: Any, caller: Agent | None
    ) -> Invocation:
        """Record an invocation and pass it to the handler; returns at once."""
        action = await self.store.action_named(workspace_id, name)
        if action is None:
            raise Refused(404, "action_not_found", f"no action named {name!r}")
        caller_name = caller.name if caller else None
        caller_id = caller.id if caller else None
        if not allowed(action, caller):
            denied = await self.store.record_invocation(
                workspace_id, name, caller_agent_id=caller_id, caller_name=caller_name,
                input=input, status="denied",
                error=f"{caller_name or 'the workspace'} is not in {name}'s available_to",
            )  # fmt: skip
            raise Refused(403, "action_denied", denied.error or "", denied.id)
        errors = input_errors(action, input)
        if errors:
            raise Refused(400, "invalid_input", f"{name} input: {errors}")
        link = self.hub.handler(workspace_id, name)
        if link is None and action.when_offline == "fail":
            return await self.store.record_invocation(
                workspace_id, name, caller_agent_id=caller_id, caller_name=caller_name,
                input=input, status="failed", error=f"no handler of {name} is connected",
            )  # fmt: skip
        record = await self.store.record_invocation(
            workspace_id, name, caller_agent_id=caller_id, caller_name=caller_name, input=input
        )
        if link is not None:
            await self._dispatch(link, action, record, link.task_group)
        return record

    async def result(self, link: Link, invocation_id: str, output: Any, error: str | None) -> None:
        """The handler's answer (a late one, after a timeout, changes nothing)."""
        owner = self._inflight.pop(invocation_id, None)
        if owner is not None:
            owner[1].cancel()
        await self.store.finish_invocation(invocation_id, output=output, error=error)

    async def _dispatch(
        self, link: Link, action: Action, record: Invocation, tg: anyio.abc.TaskGroup
    ) -> None:
        scope = anyio.CancelScope()
        self._inflight[record.id] = (link, scope)
        await self.store.mark_dispatched(record.id, link.node_id)
        frame = ActionInvoke(
            invocation_id=record.id, action=action.name, input=record.input or {},
            agent_id=record.caller_agent_id, agent_name=record.caller_name,
        )  # fmt: skip
        await link.send(frame)
        if action.timeout_s:
            tg.start_soon(self._expire, record.id, action.timeout_s, scope)

    async def _expire(self, invocation_id: str, timeout: float, scope: anyio.CancelScope) -> None:
        with scope:
            await anyio.sleep(timeout)  # a deadline, not synchronization
            self._inflight.pop(invocation_id, None)
            await self.store.finish_invocation(
                invocation_id, error=f"the handler did not answer within {timeout:g} s"
            )


def input_errors(action: Action, input: Any) -> str:
    """The input's problems against the action's schema, as one line ('' if none)."""
    if not action.input_schema:
        return ""
    validator = Draft202012Validator(action.input_schema)
    found = sorted(validator.iter_errors(input), key=lambda e: list(e.absolute_path))
    return "; ".join(
        f"{'.'.join(map(str, e.absolute_path)) or 'input'}: {e.message}" for e in found
    )


def _action_of(workspace_id: str, capability: Capability, node_id: str) -> Action:
    meta = capability.metadata or {}
    schema = meta.get("input_schema") or {}
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        raise ValueError(f"input_schema is not a JSON Schema: {exc.message}") from None
    available = meta.get("available_to")
    if available is not None and not (
        isinstance(available, list) and all(isinstance(s, dict) for s in available)
    ):
        raise ValueError("available_to: a list of selectors like {'name': 'engineer'}")
    when_offline = meta.get("when_offline", "fail")
    if when_offline not in ("fail", "queue"):
        raise ValueError("when_offline: 'fail' or 'queue'")
    return Action(
        id=ordered_id("act"), workspace_id=workspace_id, name=capability.name,
        description=str(meta.get("description") or ""), input_schema=schema,
        available_to=available, owner=node_id, when_offline=when_offline,
        timeout_s=meta.get("timeout_s"),
        registered_at=datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    )  # fmt: skip

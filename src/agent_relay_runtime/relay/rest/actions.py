"""Actions: list (with their JSON Schemas), invoke (fire and forget), look up and complete
an invocation; and each message's delivery receipts."""

from __future__ import annotations

from typing import Any

from pydantic import Field
from starlette.requests import Request
from starlette.routing import Route

from ..actions import ActionService, Refused
from ..store import Action, Invocation
from .kit import Api, ApiError, Body, Caller

__all__ = ["routes"]


class Invoke(Body):
    input: Any = None


class Complete(Body):
    output: Any = None
    error: str | None = Field(default=None, max_length=64 * 1024)


def action_view(action: Action) -> dict[str, Any]:
    return action.model_dump(exclude={"id", "workspace_id", "owner"})


def invocation_view(record: Invocation) -> dict[str, Any]:
    return {"invocation_id": record.id, **record.model_dump(exclude={"id", "workspace_id"})}


def routes(api: Api, actions: ActionService) -> list[Route]:
    store = api.store

    async def list_actions(request: Request, caller: Caller) -> Any:
        return [action_view(a) for a in await store.list_actions(caller.workspace.id)]

    async def invoke(request: Request, caller: Caller) -> Any:
        body = await api.body_of(request, Invoke)
        given = {} if body.input is None else body.input
        try:
            record = await actions.invoke(
                caller.workspace.id, request.path_params["name"], given, caller.agent
            )
        except Refused as exc:
            raise ApiError(exc.status, exc.code, exc.message) from None
        return {"invocation_id": record.id, "status": record.status, "error": record.error}

    async def invocation(request: Request, caller: Caller) -> Any:
        record = await store.invocation(request.path_params["id"])
        if (
            record is None
            or record.workspace_id != caller.workspace.id
            or record.action != request.path_params["name"]
        ):
            raise ApiError(
                404, "invocation_not_found", f"no invocation {request.path_params['id']!r}"
            )
        return invocation_view(record)

    async def complete(request: Request, caller: Caller) -> Any:
        # The REST twin of an action.result frame, for handlers without a node socket.
        await invocation(request, caller)
        body = await api.body_of(request, Complete)
        record, _ = await store.finish_invocation(
            request.path_params["id"], output=body.output, error=body.error
        )
        return invocation_view(record)

    async def receipts(request: Request, caller: Caller) -> Any:
        message = await api.message_named(caller, request.path_params["id"])
        return [
            {"agent_name": r.agent_name, **r.delivery.model_dump()}
            for r in await store.receipts(message.id)
        ]

    endpoint = api.endpoint
    invocation_path = "/v1/actions/{name}/invocations/{id}"
    return [
        Route("/v1/actions", endpoint(list_actions), methods=["GET"]),
        Route("/v1/actions/{name}/invoke", endpoint(invoke, 202), methods=["POST"]),
        Route(invocation_path, endpoint(invocation), methods=["GET"]),
        Route(invocation_path + "/complete", endpoint(complete), methods=["POST"]),
        Route("/v1/messages/{id}/receipts", endpoint(receipts), methods=["GET"]),
    ]

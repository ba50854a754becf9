"""The workspace and its agents: register, list, look up, who am I."""

from __future__ import annotations

from typing import Any, Literal

from starlette.requests import Request
from starlette.routing import Route

from ..store import Conflict
from .kit import Api, ApiError, Body, Caller, agent_view, workspace_view

__all__ = ["routes"]


class RegisterAgent(Body):
    name: str
    type: Literal["agent", "human", "system"] = "agent"
    persona: str | None = None
    metadata: dict[str, Any] | None = None


def routes(api: Api) -> list[Route]:
    store = api.store

    async def workspace_info(request: Request, caller: Caller) -> Any:
        return workspace_view(caller.workspace)

    async def register_agent(request: Request, caller: Caller) -> Any:
        if caller.agent is not None:
            raise ApiError(
                403, "workspace_key_required", "registering an agent needs the workspace key"
            )
        body = await api.body_of(request, RegisterAgent)
        try:
            agent, token = await store.register_agent(
                caller.workspace.id, body.name, kind=body.type, persona=body.persona,
                metadata=body.metadata,
            )  # fmt: skip
        except Conflict as exc:
            raise ApiError(409, "agent_already_exists", str(exc)) from None
        return {
            "id": agent.id, "name": agent.name, "token": token, "status": agent.status,
            "created_at": agent.created_at,
        }  # fmt: skip

    async def list_agents(request: Request, caller: Caller) -> Any:
        return [agent_view(a) for a in await store.list_agents(caller.workspace.id)]

    async def get_agent(request: Request, caller: Caller) -> Any:
        return agent_view(await api.agent_named(caller, request.path_params["name"]))

    async def me(request: Request, caller: Caller) -> Any:
        return agent_view(api.as_agent(caller))

    return [
        Route("/v1/workspace", api.endpoint(workspace_info), methods=["GET"]),
        Route("/v1/agents", api.endpoint(register_agent, 201), methods=["POST"]),
        Route("/v1/agents", api.endpoint(list_agents), methods=["GET"]),
        Route("/v1/agent", api.endpoint(me), methods=["GET"]),
        Route("/v1/agents/{name}", api.endpoint(get_agent), methods=["GET"]),
    ]

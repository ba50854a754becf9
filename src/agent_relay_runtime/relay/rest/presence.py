"""Presence: an agent marks itself online (each heartbeat) or offline.

Each call sets the agent's ``status`` and its ``last_seen`` to now. An agent whose
heartbeats stop is marked offline by the relay's housekeeping once its ``last_seen`` is
older than the presence timeout (90 s by default: three of the SDK's 30 s heartbeats, so
a caller over REST heartbeats more often than that); its ``last_seen`` stays. An agent
hosted by a connected node stays online without heartbeats: see `relay.housekeeping`.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.routing import Route

from ..store import AgentStatus
from .kit import Api, Body, Caller, agent_view

__all__ = ["routes"]


class Empty(Body):
    """No fields: an empty body, or ``{}``."""


def routes(api: Api) -> list[Route]:
    async def set_presence(request: Request, caller: Caller, status: AgentStatus) -> Any:
        agent = api.as_agent(caller)
        await api.body_of(request, Empty)
        return agent_view(await api.store.set_presence(agent.id, status))

    async def heartbeat(request: Request, caller: Caller) -> Any:
        return await set_presence(request, caller, "online")

    async def disconnect(request: Request, caller: Caller) -> Any:
        return await set_presence(request, caller, "offline")

    return [
        Route("/v1/agents/heartbeat", api.endpoint(heartbeat), methods=["POST"]),
        Route("/v1/agents/disconnect", api.endpoint(disconnect), methods=["POST"]),
    ]

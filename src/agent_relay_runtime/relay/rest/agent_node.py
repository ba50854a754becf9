"""``POST /v1/agent/node-token``: an agent's implicit direct node, for the relaycast SDK's
``WsClient`` given an agent token (it calls this on every (re)connect, then connects to
``/v1/node/ws`` with the node token and sends ``node.register`` only: see `node_server`).

Agent token only (the workspace key: 403 ``agent_token_required``), body ``{}`` → 201
``{node_id, node_name, token}``: the agent's direct node (made on first use: role
``direct``, ``max_agents`` 1, ``direct-<agent name>``) and a new node token (``nt_live_…``,
shown once). The token before stops working for new connections. Unlike re-enrolling a
node over ``POST /v1/nodes`` this is not refused while the node is connected: the SDK asks
again whenever its socket drops, often before the relay has noticed the drop. The
connection still open, if any, is closed when the new one registers (`node_server`).

An agent a live node hosts now (it registered the agent over its socket) is that node's:
409 ``agent_hosted_by_node``, so a second connection does not take its deliveries from
under the runtime that runs it.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.routing import Route

from ..hub import Hub
from .kit import Api, ApiError, Caller

__all__ = ["routes"]


def routes(api: Api, hub: Hub) -> list[Route]:
    store = api.store

    async def node_token(request: Request, caller: Caller) -> Any:
        agent = api.as_agent(caller)
        if agent.node_id is not None and hub.node_live(agent.node_id):
            host = await store.node_entry_by_id(agent.node_id)
            if host is not None and host.direct_agent_id != agent.id:
                raise ApiError(
                    409,
                    "agent_hosted_by_node",
                    f"{agent.name} is hosted by node {host.name!r}, connected now",
                )
        node, token = await store.direct_node_token(agent.id)
        return {"node_id": node.id, "node_name": node.name, "token": token}

    return [Route("/v1/agent/node-token", api.endpoint(node_token, 201), methods=["POST"])]

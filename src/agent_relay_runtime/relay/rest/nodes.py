"""Nodes over REST (relaycast's ``/v1/nodes``): enroll a node and get its node token, the
roster, and the agents bound to a node.

- ``POST /v1/nodes`` (workspace key) ``{name, node_id?, role?, capabilities?: [str],
  max_agents?, tags?, version?, kind?: "ws", delivery_adapter?: "ws.node.v1"}`` → 201, the
  roster entry and ``token`` (``nt_live_…``, 192 random bits, shown once; the relay keeps
  its SHA-256). The node then connects to ``/v1/node/ws`` with that token, as itself only.
  Enrolling a name (or ``node_id``) that exists again, as relaycast does, gives the node a
  new token (the old one stops working) and takes what is given; a node that connected
  with the workspace key gets its first token this way. Refused while the node is
  connected (409 ``node_live``): its identity is not moved from under a running node.
  ``role`` ``broker`` (default; ``max_agents`` 0 is no limit) or ``direct`` (one agent:
  ``max_agents`` other than 1 is 400 ``direct_node_capacity_exceeded``). Only websocket
  nodes are served: ``kind`` other than ``ws`` is 400 ``unsupported_node_kind``, and a
  ``delivery`` config or another ``delivery_adapter`` (HTTP push) 400
  ``unsupported_node_delivery``. A name or ``node_id`` that is another node's: 409
  ``node_name_conflict`` / ``node_id_conflict``.
- ``GET /v1/nodes?capability=C&name=N``, ``GET /v1/nodes/{name}``: roster entries
  (relaycast's `NodeRosterEntry`). ``live``: a socket of the node is connected now;
  ``status`` ``online`` if so, else ``offline``; ``capabilities`` as the node declared
  them on connecting (as enrolled before that); ``active_agents``: the entries of its
  agent list (below); ``handlers_live``: live and declaring capabilities; ``load`` 0 (not
  reported here); ``last_heartbeat_at``: when it last connected or went away;
  ``enrolled``: it holds a node token.
- ``GET /v1/nodes/{name}/agents``: relaycast's `NodeAgentBinding` for each agent bound
  to the node over REST (``status`` ``active``), oldest first, then, while the node is
  connected, each agent it hosts over its socket without such a binding (``status``
  ``hosted``, ``id`` ``hosted_<agent id>``); ``hosted`` says whether the node hosts the
  agent now.
- ``POST /v1/nodes/{name}/agents`` (workspace key) ``{agent_name, session_ref?,
  priority?}`` → 201, the binding. An agent is bound to one node at a time: binding it
  elsewhere moves it; again to the same node updates ``session_ref`` and ``priority``. A
  node with ``max_agents`` agents already (bound, or hosted now): 409
  ``node_capacity_exceeded``. A binding is a record of placement: deliveries still reach
  an agent through the node that registers it on its socket (``agent.register``), or
  over REST polling. (The socket holds the node to ``max_agents`` too, counting what it
  hosts: see `node_server`.)
- ``DELETE /v1/nodes/{name}/agents/{agent}`` (workspace key): the binding dropped; 404
  ``node_agent_binding_not_found`` if there is none (an agent hosted over the socket
  leaves with ``agent.deregister``).

Unknown node: 404 ``node_not_found``; unknown agent: 404 ``agent_not_found``; an agent
token on a write: 403 ``workspace_key_required``. Reads take any token of the workspace.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field
from starlette.requests import Request
from starlette.routing import Route

from ..hub import Hub
from ..store import Conflict, NodeBinding, NodeEntry, Store, Workspace
from .kit import Api, ApiError, Body, Caller

__all__ = ["binding_view", "node_token_owner", "node_view", "routes"]

WS_ADAPTER = "ws.node.v1"  # relaycast's name for delivery over the node socket
NodeName = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[^#/][^/]*$")]
Short = Annotated[str, Field(min_length=1, max_length=200)]


class CreateNode(Body):
    name: NodeName
    node_id: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    kind: Literal["ws", "http_push", "poll"] | None = None
    role: Literal["direct", "broker"] | None = None
    delivery_adapter: Short | None = None
    delivery: dict[str, Any] | None = None
    capabilities: Annotated[list[Short], Field(max_length=256)] | None = None
    max_agents: Annotated[int, Field(ge=0)] | None = None
    tags: Annotated[list[Short], Field(max_length=64)] | None = None
    version: Short | None = None


class BindAgent(Body):
    agent_name: Annotated[str, Field(min_length=1)]
    session_ref: Annotated[str, Field(max_length=1000)] | None = None
    priority: int | None = None


async def node_token_owner(store: Store, token: str) -> tuple[Workspace, NodeEntry] | None:
    """The workspace and node a node token was given for, if it is still the node's."""
    node = await store.node_by_token(token)
    workspace = await store.workspace_by_id(node.workspace_id) if node is not None else None
    return (workspace, node) if workspace is not None and node is not None else None


def node_view(node: NodeEntry, live: bool, active_agents: int) -> dict[str, Any]:
    return {
        "id": node.id, "name": node.name, "kind": "ws", "role": node.role,
        "delivery_adapter": WS_ADAPTER, "delivery": None, "capabilities": node.capabilities,
        "tags": node.tags, "version": node.version or "unknown",
        "status": "online" if live else "offline", "live": live,
        "handlers_live": live and bool(node.capabilities), "load": 0.0,
        "active_agents": active_agents, "max_agents": node.max_agents,
        "last_heartbeat_at": node.last_seen, "created_at": node.created_at,
        "enrolled": node.enrolled,
    }  # fmt: skip


def binding_view(node: NodeEntry, binding: NodeBinding) -> dict[str, Any]:
    return {
        "id": binding.id or f"hosted_{binding.agent_id}", "agent_id": binding.agent_id,
        "agent_name": binding.agent_name, "node_id": node.id, "node_name": node.name,
        "node_kind": "ws", "node_role": node.role,
        "status": "active" if binding.id else "hosted", "session_ref": binding.session_ref,
        "priority": binding.priority, "created_at": binding.created_at,
        "updated_at": binding.updated_at, "hosted": binding.hosted,
    }  # fmt: skip


def workspace_key(caller: Caller) -> None:
    if caller.agent is not None:
        raise ApiError(403, "workspace_key_required", "managing nodes needs the workspace key")


def routes(api: Api, hub: Hub) -> list[Route]:
    store = api.store

    async def node_named(caller: Caller, name: str) -> NodeEntry:
        node = await store.node_entry(caller.workspace.id, name)
        if node is None:
            raise ApiError(404, "node_not_found", f"no node named {name!r}")
        return node

    async def entry(node: NodeEntry) -> dict[str, Any]:
        live = hub.node_live(node.id)
        return node_view(node, live, len(await store.node_bindings(node.id, hosted=live)))

    async def create(request: Request, caller: Caller) -> Any:
        workspace_key(caller)
        body = await api.body_of(request, CreateNode)
        if body.kind not in (None, "ws"):
            raise ApiError(
                400, "unsupported_node_kind", f"{body.kind} nodes are not served: ws only"
            )
        if body.delivery is not None or body.delivery_adapter not in (None, WS_ADAPTER):
            raise ApiError(
                400,
                "unsupported_node_delivery",
                f"nodes take deliveries over their socket here ({WS_ADAPTER}): no HTTP push",
            )
        existing = await store.node_entry(caller.workspace.id, body.name)
        if body.node_id is not None:
            existing = await store.node_entry_by_id(body.node_id)
            if existing is not None and existing.workspace_id != caller.workspace.id:
                raise ApiError(409, "node_id_conflict", f"the node id {body.node_id!r} is taken")
        role = body.role or (existing.role if existing is not None else "broker")
        max_agents = body.max_agents
        if role == "direct":
            if max_agents not in (None, 1):
                raise ApiError(
                    400, "direct_node_capacity_exceeded", "a direct node hosts one agent"
                )
            max_agents = 1
        if existing is not None and hub.node_live(existing.id):
            raise ApiError(
                409,
                "node_live",
                f"node {existing.name!r} is connected now: enroll it again once it is not",
            )
        capabilities = None
        if body.capabilities is not None:
            capabilities = [{"name": name} for name in dict.fromkeys(body.capabilities)]
        try:
            node, token = await store.enroll_node(
                caller.workspace.id, body.name, node_id=body.node_id, role=role,
                capabilities=capabilities, max_agents=max_agents, tags=body.tags,
                version=body.version,
            )  # fmt: skip
        except Conflict as exc:
            raise ApiError(409, "node_name_conflict", str(exc)) from None
        return {**await entry(node), "token": token}

    async def roster(request: Request, caller: Caller) -> Any:
        name, capability = request.query_params.get("name"), request.query_params.get("capability")
        found = []
        for node in await store.node_entries(caller.workspace.id):
            if name and node.name != name:
                continue
            if capability and all(c.get("name") != capability for c in node.capabilities):
                continue
            found.append(await entry(node))
        return found

    async def get_node(request: Request, caller: Caller) -> Any:
        return await entry(await node_named(caller, request.path_params["name"]))

    async def agents(request: Request, caller: Caller) -> Any:
        node = await node_named(caller, request.path_params["name"])
        bindings = await store.node_bindings(node.id, hosted=hub.node_live(node.id))
        return [binding_view(node, binding) for binding in bindings]

    async def bind(request: Request, caller: Caller) -> Any:
        workspace_key(caller)
        node = await node_named(caller, request.path_params["name"])
        body = await api.body_of(request, BindAgent)
        agent = await api.agent_named(caller, body.agent_name)
        try:
            binding = await store.bind_node_agent(
                node.id, agent.id, session_ref=body.session_ref, priority=body.priority or 0,
                hosted=hub.node_live(node.id),
            )  # fmt: skip
        except Conflict as exc:
            raise ApiError(409, "node_capacity_exceeded", str(exc)) from None
        return binding_view(node, binding)

    async def unbind(request: Request, caller: Caller) -> Any:
        workspace_key(caller)
        node = await node_named(caller, request.path_params["name"])
        agent = await api.agent_named(caller, request.path_params["agent"])
        if not await store.unbind_node_agent(node.id, agent.id):
            raise ApiError(
                404,
                "node_agent_binding_not_found",
                f"{agent.name} is not bound to node {node.name!r}",
            )
        return {"node_name": node.name, "agent_name": agent.name, "removed": True}

    endpoint = api.endpoint
    return [
        Route("/v1/nodes", endpoint(create, 201), methods=["POST"]),
        Route("/v1/nodes", endpoint(roster), methods=["GET"]),
        Route("/v1/nodes/{name}", endpoint(get_node), methods=["GET"]),
        Route("/v1/nodes/{name}/agents", endpoint(agents), methods=["GET"]),
        Route("/v1/nodes/{name}/agents", endpoint(bind, 201), methods=["POST"]),
        Route("/v1/nodes/{name}/agents/{agent}", endpoint(unbind), methods=["DELETE"]),
    ]

"""The relay's HTTP face (relaycast-compatible), as a Starlette app over a `Store`.

One module per area, each giving its routes; `kit` holds what they share (envelope,
errors, auth, bodies, views). See docs/relaycast-rest.md for the shapes.
"""

from __future__ import annotations

from starlette.applications import Starlette

from ..actions import ActionService
from ..hub import Hub
from ..node_server import node_route
from ..store import Store
from . import actions, agents, channels, events, messages
from .kit import Api, ApiError

__all__ = ["Api", "ApiError", "relay_app"]


def relay_app(store: Store) -> Starlette:
    """The relay over ``store``: the REST API, the event log's streams and the node socket."""
    api = Api(store)
    hub = Hub(store)
    service = ActionService(store, hub)
    return Starlette(
        routes=[
            *agents.routes(api), *channels.routes(api), *messages.routes(api),
            *actions.routes(api, service), *events.routes(api), node_route(api, hub, service),
        ]
    )  # fmt: skip

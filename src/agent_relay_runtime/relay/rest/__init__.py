"""The relay's REST API (relaycast-compatible), as a Starlette app over a `Store`.

One module per area, each giving its routes; `kit` holds what they share (envelope,
errors, auth, bodies, views). See docs/relaycast-rest.md for the shapes.
"""

from __future__ import annotations

from starlette.applications import Starlette

from ..store import Store
from . import agents, channels, messages
from .kit import Api, ApiError

__all__ = ["Api", "ApiError", "relay_app"]


def relay_app(store: Store) -> Starlette:
    """The REST API over ``store``."""
    api = Api(store)
    return Starlette(routes=[*agents.routes(api), *channels.routes(api), *messages.routes(api)])

"""The relay's HTTP face (relaycast-compatible), as a Starlette app over a `Store`.

One module per area, each giving its routes; `kit` holds what they share (envelope,
errors, auth, bodies, views). See docs/relaycast-rest.md for the shapes.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path

from starlette.applications import Starlette

from ..actions import ActionService
from ..housekeeping import Housekeeping, HousekeepingConfig
from ..hub import Hub
from ..node_server import node_route
from ..store import Store
from ..watches import WatchService
from . import (
    actions,
    agent_node,
    agents,
    channels,
    deliveries,
    dms,
    events,
    files,
    inbox,
    messages,
    presence,
)
from . import nodes as node_routes
from . import watches as watch_routes
from .kit import Api, ApiError

__all__ = ["Api", "ApiError", "relay_app"]


def relay_app(
    store: Store,
    *,
    files_dir: Path | None = None,
    housekeeping: HousekeepingConfig | None = None,
) -> Starlette:
    """The relay over ``store``: the REST API, the event log's streams and the node socket,
    and while it serves (its lifespan) the watch service and the housekeeping (with
    ``housekeeping``'s limits; `Housekeeping` is ``app.state.housekeeping``). Uploaded
    files are kept in ``files_dir``; by default next to the store's database
    (``relay.db``: ``relay-files/``)."""
    if files_dir is None:
        database = getattr(store, "path", None)
        if database is None:
            raise ValueError("relay_app: files_dir is needed for a store that has no path")
        files_dir = Path(database).with_name(f"{Path(database).stem}-files")
    api = Api(store)
    hub = Hub(store)
    service = ActionService(store, hub)
    watches = WatchService(store)
    keeper = Housekeeping(store, hub.live_nodes, partial(files.drop_bytes, files_dir), housekeeping)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # uvicorn runs it with lifespan="on"; the services stop, in reverse, with the app.
        async with watches.lifespan(app), keeper.lifespan(app):
            yield

    app = Starlette(
        # Starlette tries routes in order: the busiest first (posting a message matched
        # after twenty others cost ~6% of its CPU). No two modules' paths overlap.
        routes=[
            *messages.routes(api), *deliveries.routes(api),
            *presence.routes(api), *agents.routes(api), *channels.routes(api),
            *dms.routes(api), *inbox.routes(api),
            *files.routes(api, files_dir),
            *actions.routes(api, service), *events.routes(api), node_route(api, hub, service),
            *watch_routes.routes(api, watches), *node_routes.routes(api, hub),
            *agent_node.routes(api, hub),
        ],
        lifespan=lifespan,
    )  # fmt: skip
    app.state.housekeeping = keeper
    return app

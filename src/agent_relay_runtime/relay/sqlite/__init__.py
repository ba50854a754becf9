"""The relay's store on SQLite (see `base` for how it commits), one part per concern."""

from __future__ import annotations

from .actions import Actions
from .base import migrations
from .conversations import Conversations
from .deliveries import Deliveries, delivery_id, parse_delivery_id
from .directory import Directory
from .events import Events
from .nodes import Nodes

__all__ = ["SqliteStore", "delivery_id", "migrations", "parse_delivery_id"]


class SqliteStore(Nodes, Directory, Conversations, Deliveries, Actions, Events):
    """`Store` on one SQLite file. Open with `SqliteStore.open`."""

"""The relay's store on SQLite (see `base` for how it commits), one part per concern."""

from __future__ import annotations

from .actions import Actions
from .base import migrations
from .channel_admin import ChannelAdmin
from .conversations import Conversations
from .deliveries import Deliveries
from .direct_nodes import DirectNodes
from .directory import Directory
from .dms import Dms
from .events import Events
from .files import Files
from .node_registry import NodeRegistry
from .nodes import Nodes
from .presence import Presence
from .read_state import ReadState
from .watches import Watches

__all__ = ["SqliteStore", "migrations"]


class SqliteStore(
    Nodes,
    NodeRegistry,
    DirectNodes,
    Directory,
    Conversations,
    Deliveries,
    Actions,
    Events,
    ChannelAdmin,
    Dms,
    ReadState,
    Files,
    Presence,
    Watches,
):
    """`Store` on one SQLite file. Open with `SqliteStore.open`."""

"""Read state: the agent's inbox, and how far each member of a channel has read.

What counts as unread is decided in one place, the store (`sqlite.read_state`): a message
is read by an agent once marked read (``POST /v1/messages/{id}/read``), its own messages
are read by it; counts are of top-level messages posted since the agent joined; muted and
archived channels are left out of the unread channels.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.routing import Route

from .channels import channel_of
from .kit import Api, Caller

__all__ = ["routes"]


def routes(api: Api) -> list[Route]:
    store = api.store

    async def inbox(request: Request, caller: Caller) -> Any:
        agent = api.as_agent(caller)
        limit, _, _ = api.page_of(request)
        found = await store.inbox(agent.id, limit)
        return {
            "unread_channels": [
                {"channel_name": u.channel_name, "unread_count": u.count} for u in found.channels
            ],
            "mentions": [
                {
                    "id": m.message_id,
                    "channel_name": m.channel_name,
                    "agent_name": m.sender,
                    "text": m.text,
                    "created_at": m.created_at,
                }
                for m in found.mentions
            ],
            "unread_dms": [
                {
                    "conversation_id": u.channel_id,
                    "from": u.latest_sender,
                    "unread_count": u.count,
                    "last_message": {
                        "id": u.latest_id,
                        "text": u.latest_text,
                        "created_at": u.latest_at,
                    },
                }
                for u in found.dms
            ],
            "recent_reactions": [r.model_dump() for r in found.reactions],
        }

    async def read_status(request: Request, caller: Caller) -> Any:
        channel = await channel_of(api, caller, request.path_params["name"])
        return [m.model_dump() for m in await store.read_status(channel.id)]

    return [
        Route("/v1/inbox", api.endpoint(inbox), methods=["GET"]),
        Route("/v1/channels/{name}/read-status", api.endpoint(read_status), methods=["GET"]),
    ]

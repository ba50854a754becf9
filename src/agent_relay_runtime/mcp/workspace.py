"""Workspace tools: who is there, which channels exist, joining one, and asking the
relay for a notice when another agent becomes idle or takes a delivery (or is gone)."""

from __future__ import annotations

from typing import Any

from .toolkit import AgentContext, Arguments, ToolSpec, obj

__all__ = ["workspace_tools"]

NAME = {"type": "string", "pattern": r"^@?[^#@\s]+$", "description": "an agent's name"}
CHANNEL = {"type": "string", "pattern": r"^#?[^#@\s]+$", "description": "#channel"}


def workspace_tools(ctx: AgentContext) -> list[ToolSpec]:
    tools = Workspace(ctx)
    return [
        ToolSpec(
            "list_agents",
            "The agents and people of the workspace: name, type, status (online/offline) "
            "and persona; `you: true` marks you.",
            obj({}),
            tools.list_agents,
        ),
        ToolSpec(
            "list_channels",
            "The workspace's channels (not archived): name and topic.",
            obj({}),
            tools.list_channels,
        ),
        ToolSpec(
            "join_channel",
            "Join a channel, to get its messages from now on.",
            obj({"channel": CHANNEL}, ("channel",)),
            tools.join_channel,
        ),
        ToolSpec(
            "notify_when",
            "Ask the relay to send you a message when another agent becomes idle "
            "(on: 'idle', it finished its turn) or has taken a delivery (on: 'delivered'; "
            "with message_id, the delivery of that message, e.g. one you sent it). "
            "Returns at once with the watch id; the notice comes later as a message, once "
            "(at once if it holds already). If the agent is gone (its session ended or was "
            "released), the notice says so instead (outcome 'gone'): what you wait for will "
            "not come. An agent merely offline (its node disconnected) may come back, and is "
            "waited for.",
            obj(
                {
                    "agent": NAME,
                    "on": {"type": "string", "enum": ["idle", "delivered"]},
                    "message_id": {
                        "type": "string",
                        "minLength": 1,
                        "description": "with on: 'delivered', the message to watch",
                    },
                },
                ("agent", "on"),
            ),
            tools.notify_when,
        ),
    ]


class Workspace:
    def __init__(self, ctx: AgentContext) -> None:
        self.ctx = ctx
        self.client = ctx.client

    async def list_agents(self, args: Arguments) -> Any:
        me = await self.ctx.name()
        found = []
        for agent in await self.client.agents():
            view = {"name": agent["name"], "type": agent.get("type"), "status": agent.get("status")}
            if agent.get("persona"):
                view["persona"] = agent["persona"]
            if agent["name"] == me:
                view["you"] = True
            found.append(view)
        return found

    async def list_channels(self, args: Arguments) -> Any:
        return [
            {"name": f"#{c['name']}", "topic": c.get("topic")}
            for c in await self.client.channels()
            if not c.get("is_archived")
        ]

    async def join_channel(self, args: Arguments) -> Any:
        return await self.client.join_channel(args["channel"])

    async def notify_when(self, args: Arguments) -> Any:
        return await self.client.watch(args["agent"], args["on"], args.get("message_id"))

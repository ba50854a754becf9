"""``agent-relay-runtime mcp``: the relay as MCP tools for one agent, over stdio.

Built on the official SDK's low-level server, because the per-action tools are only
known at run time and carry the actions' own JSON Schemas. The server is named
``agent-relay``, so Claude Code shows its tools as ``mcp__agent-relay__<tool>``. It acts
with the agent's own token: the relay decides what this agent may see and do.

The actions are listed again on every ``tools/list`` and before every tool call (one
local request), and the server follows the relay's ``action.registered`` /
``action.unregistered`` events: when the action tools differ from what the client was
last given, it sends ``notifications/tools/list_changed`` and the client lists again.

No call brings the server down: bad arguments, a refusal by the relay, or the relay out
of reach come back to the agent as a tool error (``isError``) with a one-line reason.
"""

from __future__ import annotations

from typing import Any

import anyio
import mcp.types as types
from mcp.server.lowlevel import NotificationOptions, Server
from mcp.server.models import InitializationOptions
from mcp.server.stdio import stdio_server

from .. import __version__
from ..logs import get_logger
from ..relay.client import RelayClient, RelayError
from .actions import ActionCatalog, Actions, action_tools
from .config import McpConfig
from .messaging import messaging_tools
from .toolkit import AgentContext, ToolError, ToolSpec, argument_errors, failure, success
from .workspace import workspace_tools

__all__ = ["SERVER_NAME", "AgentRelayServer", "serve"]

SERVER_NAME = "agent-relay"
FOLLOW_RETRY = 5.0


def instructions(agent_name: str | None) -> str:
    who = f" as the agent {agent_name!r}" if agent_name else ""
    return (
        f"You are connected to an Agent Relay workspace{who}. Messages to you arrive in "
        "your conversation; check_inbox shows what is unread. send_message talks to a "
        "#channel or an agent, reply answers in a message's thread. The action_* tools "
        "(and invoke_action) start typed actions that others handle: they return an "
        "invocation id at once."
    )


class AgentRelayServer:
    """The MCP server of one agent: the fixed tools, the action tools, and the SDK's
    low-level `Server` they are registered on (``self.server``)."""

    def __init__(self, client: RelayClient, agent_name: str | None = None) -> None:
        ctx = AgentContext(client)
        self.catalog = ActionCatalog(ctx)
        self.actions = Actions(ctx, self.catalog)
        specs = [*messaging_tools(ctx), *workspace_tools(ctx), *action_tools(self.actions)]
        self.fixed: dict[str, ToolSpec] = {spec.name: spec for spec in specs}
        self.log = get_logger(component="mcp")
        self._listed: str | None = None  # the action tools the client was last given
        self._session: Any = None  # the client's session, once it has listed the tools
        self.server: Server[Any, Any] = Server(
            SERVER_NAME, version=__version__, instructions=instructions(agent_name)
        )
        # The SDK's 1.x decorators carry no annotations; registering through them is
        # its intended use, so the untyped call is accepted here.
        self.server.list_tools()(self.list_tools)  # type: ignore[no-untyped-call]
        self.server.call_tool(validate_input=False)(self.call_tool)

    def initialization_options(self) -> InitializationOptions:
        return self.server.create_initialization_options(NotificationOptions(tools_changed=True))

    async def list_tools(self, request: types.ListToolsRequest) -> types.ListToolsResult:
        """The fixed tools and one per action."""
        await self._refresh_actions()
        # The SDK also calls this, with None, to fill its own cache when a tool it has
        # not listed is called: that is no listing by the client.
        if request is not None:
            self._listed = self.catalog.signature()
            self._session = self.server.request_context.session
        tools = [spec.tool() for spec in self.fixed.values()] + self.catalog.tools()
        return types.ListToolsResult(tools=tools)

    async def call_tool(self, name: str, arguments: dict[str, Any]) -> types.CallToolResult:
        await self._refresh_actions()
        try:
            result = success(await self._call(name, arguments or {}))
        except ToolError as exc:
            result = failure(str(exc))
        except RelayError as exc:
            result = failure(exc.message)
        except Exception as exc:  # a bug here must not end the agent's session
            self.log.exception("tool_failed", tool=name)
            result = failure(f"{name} failed: {type(exc).__name__}: {exc}")
        await self._announce_changes()
        return result

    async def _call(self, name: str, arguments: dict[str, Any]) -> Any:
        spec, action = self.fixed.get(name), self.catalog.by_tool.get(name)
        if spec is not None:
            schema = spec.schema
        elif action is not None and action.tool is not None:
            schema = action.tool.inputSchema
        else:
            raise ToolError(f"unknown tool {name!r} (list_actions shows the action tools)")
        problems = argument_errors(schema, arguments)
        if problems:
            raise ToolError(f"invalid arguments for {name}: {problems}")
        if spec is not None:
            return await spec.run(arguments)
        assert action is not None
        return await self.actions.start(action.action, arguments)

    async def _refresh_actions(self) -> None:
        try:
            await self.catalog.refresh()
        except RelayError as exc:  # keep the last list; the tools still answer
            self.log.warning("actions_not_listed", reason=exc.message)

    async def _announce_changes(self) -> None:
        if self._session is None or self._listed == self.catalog.signature():
            return
        self._listed = self.catalog.signature()
        await self._session.send_tool_list_changed()

    async def follow_actions(self, client: RelayClient) -> None:
        """Tell the client as soon as the workspace's actions change (from the log)."""
        types_ = ["action.registered", "action.unregistered"]
        while True:
            try:
                cursor = (await client.events_page(0, types=["-"]))[1]
                async for _ in client.follow(cursor, types=types_):
                    await self._refresh_actions()
                    await self._announce_changes()
            except Exception as exc:  # the relay away: the tool calls still notice changes
                self.log.info("actions_not_followed", reason=str(exc) or type(exc).__name__)
            await anyio.sleep(FOLLOW_RETRY)  # backoff before following again


async def serve(config: McpConfig) -> None:
    """Serve one MCP client on stdin/stdout until it closes stdin. Logging must not
    use stdout (the CLI sends it to stderr)."""
    client = RelayClient(config.relay_url, config.token)
    try:
        app = AgentRelayServer(client, config.agent_name)
        async with stdio_server() as (read_stream, write_stream), anyio.create_task_group() as tg:
            tg.start_soon(app.follow_actions, client)
            await app.server.run(read_stream, write_stream, app.initialization_options())
            tg.cancel_scope.cancel()  # the client closed stdin: done
    finally:
        await client.aclose()

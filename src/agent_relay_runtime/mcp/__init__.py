"""The MCP server for agents (``agent-relay-runtime mcp``): an agent's view of its relay
workspace as MCP tools over stdio — messages, inbox, channels, and the workspace's typed
actions, one tool each.

    RELAY_BASE_URL=http://127.0.0.1:4480 RELAY_AGENT_TOKEN=at_… agent-relay-runtime mcp
"""

from __future__ import annotations

from .config import McpConfig
from .server import SERVER_NAME, AgentRelayServer, serve

__all__ = ["SERVER_NAME", "AgentRelayServer", "McpConfig", "serve"]

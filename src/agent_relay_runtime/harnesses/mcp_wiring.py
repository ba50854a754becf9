"""A session's MCP servers (`SessionSpec.mcp_servers`) in each harness's own form.

Every form is per process: a flag, a config override, an environment variable, or the
config file the runtime already writes for that session. The user's own config files
are never edited, and the user's own MCP servers stay available next to these.

The relay's own server (``agent-relay``) is allowed without asking: its tools act only
as the session's own agent, with the token the relay gave it.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from typing import Any

from ..contract import McpServer

__all__ = [
    "RELAY_MCP",
    "claude_args",
    "claude_env",
    "codex_args",
    "generic_env",
    "openclaw_servers",
    "opencode_env",
]

RELAY_MCP = "agent-relay"

Servers = Mapping[str, McpServer]


def _stdio(server: McpServer) -> dict[str, Any]:
    """The shape Claude Code (and most MCP clients) read: ``mcpServers.<name>``."""
    return {"type": "stdio", "command": server.command, "args": server.args, "env": server.env}


def claude_args(servers: Servers) -> list[str]:
    """``--mcp-config`` inline (no secret is in it), and the relay's tools pre-allowed."""
    if not servers:
        return []
    config = {"mcpServers": {name: _stdio(s) for name, s in servers.items()}}
    args = ["--mcp-config", json.dumps(config)]
    if RELAY_MCP in servers:
        # The `=` form: --allowedTools takes several values and would swallow what follows.
        args.append(f"--allowedTools=mcp__{RELAY_MCP}")
    return args


def claude_env(servers: Servers) -> dict[str, str]:
    """Claude Code connects ``--mcp-config`` servers in the background in print mode, so a
    first turn may run without their tools; these make it wait for them (up to 30 s)."""
    if not servers:
        return {}
    return {"MCP_CONNECTION_NONBLOCKING": "0", "MCP_CONNECT_TIMEOUT_MS": "30000"}


def codex_args(servers: Servers) -> list[str]:
    """``-c mcp_servers.<name>.…`` overrides (TOML values; JSON strings and arrays of
    strings are valid TOML)."""
    args: list[str] = []
    for name, server in servers.items():
        # A bare key where TOML allows one: Codex splits -c paths on dots and keeps quotes.
        bare = re.fullmatch(r"[A-Za-z0-9_-]+", name)
        prefix = f"mcp_servers.{name if bare else json.dumps(name)}"
        env = ", ".join(f"{json.dumps(k)} = {json.dumps(v)}" for k, v in server.env.items())
        args += ["-c", f"{prefix}.command={json.dumps(server.command)}"]
        args += ["-c", f"{prefix}.args={json.dumps(server.args)}"]
        if server.env:
            args += ["-c", f"{prefix}.env={{{env}}}"]
    return args


def opencode_env(servers: Servers, env: Mapping[str, str]) -> dict[str, str]:
    """``OPENCODE_CONFIG_CONTENT`` (inline JSON config, merged over the one already set in
    ``env`` or the daemon's environment) with an ``mcp`` entry per server."""
    if not servers:
        return {}
    raw = env.get("OPENCODE_CONFIG_CONTENT") or os.environ.get("OPENCODE_CONFIG_CONTENT")
    config: dict[str, Any] = json.loads(raw) if raw else {}
    mcp = config.setdefault("mcp", {})
    for name, server in servers.items():
        mcp[name] = {
            "type": "local", "command": [server.command, *server.args],
            "environment": server.env, "enabled": True,
        }  # fmt: skip
    return {"OPENCODE_CONFIG_CONTENT": json.dumps(config)}


def openclaw_servers(servers: Servers, config: dict[str, Any]) -> None:
    """Add ``mcp.servers.<name>`` to an OpenClaw config the runtime writes for a gateway."""
    table = config.setdefault("mcp", {}).setdefault("servers", {})
    for name, server in servers.items():
        table[name] = {"command": server.command, "args": server.args, "env": server.env}


def generic_env(servers: Servers) -> dict[str, str]:
    """For any other CLI: ``AGENT_RELAY_MCP_CONFIG``, the ``mcpServers`` JSON most MCP
    clients read, for a profile's command line or a wrapper script to pass on."""
    if not servers:
        return {}
    config = {"mcpServers": {name: _stdio(s) for name, s in servers.items()}}
    return {"AGENT_RELAY_MCP_CONFIG": json.dumps(config)}

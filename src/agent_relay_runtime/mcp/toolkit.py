"""What a tool is to this server, and what every tool shares.

A tool is a name, a description written for the model, a JSON Schema of its arguments
(strict: unknown arguments are errors) and a coroutine that does the work with the
agent's relay client. A call's arguments are checked against the schema before the
coroutine runs, so a call with bad arguments sends nothing. Whatever a call cannot do
comes back to the agent as a tool error (``isError``) with a one-line reason: bad
arguments, a refusal by the relay (its own message), or the relay unreachable.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import mcp.types as types
from jsonschema import Draft202012Validator

from ..relay.client import RelayClient

__all__ = [
    "AgentContext",
    "ToolError",
    "ToolSpec",
    "argument_errors",
    "failure",
    "obj",
    "success",
]

Arguments = dict[str, Any]
Run = Callable[[Arguments], Awaitable[Any]]


class ToolError(Exception):
    """A call that could not be done; its message is what the agent reads."""


@dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str
    schema: dict[str, Any]
    run: Run

    def tool(self) -> types.Tool:
        return types.Tool(name=self.name, description=self.description, inputSchema=self.schema)


class AgentContext:
    """The agent's relay client, and who the agent is (asked once, when first needed)."""

    def __init__(self, client: RelayClient) -> None:
        self.client = client
        self._name: str | None = None

    async def name(self) -> str:
        if self._name is None:
            self._name = str((await self.client.me())["name"])
        return self._name


def obj(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    """A strict object schema: the properties given, ``required`` of them required."""
    schema: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
    }
    if required:
        schema["required"] = list(required)
    return schema


def argument_errors(schema: dict[str, Any], arguments: Any) -> str:
    """Every way ``arguments`` break ``schema``, as one line ('' when they fit), each
    problem prefixed by the argument it is about."""
    validator = Draft202012Validator(schema)
    found = sorted(validator.iter_errors(arguments), key=lambda e: list(map(str, e.absolute_path)))
    return "; ".join(
        (".".join(map(str, e.absolute_path)) + ": " if e.absolute_path else "") + e.message
        for e in found
    )


def success(data: Any) -> types.CallToolResult:
    """``data`` as compact JSON text: what the model reads, without spending tokens on
    indentation."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)])


def failure(message: str) -> types.CallToolResult:
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=message)], isError=True
    )

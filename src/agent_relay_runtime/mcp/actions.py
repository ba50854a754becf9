"""The workspace's typed actions as tools: ``list_actions``, ``invoke_action``, and one
tool per registered action whose input schema is the action's own.

MCP tool names must match ``^[a-zA-Z0-9_-]{1,64}$``, action names need not: an action's
tool is ``action_`` + its name with every other character made ``_``
(``review.submit_vote`` → ``action_review_submit_vote``). A name that would be too long,
or that another action took first (actions in name order), gets a short hash of the
action's name instead of its tail, so every action keeps a tool. The catalog keeps the
map back from tool to action.

Every invocation is fire-and-forget: the relay records it, checks the caller against the
action's ``available_to`` and the input against its schema, passes it to the handler and
answers at once with the invocation id. The input is also checked here first, so input
the relay would refuse is never sent.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

import mcp.types as types

from .toolkit import AgentContext, Arguments, ToolError, ToolSpec, argument_errors, obj

__all__ = ["ActionCatalog", "ActionTool", "Actions", "action_tools", "tool_name_for"]

PREFIX = "action_"
MAX_NAME = 64
_NOT_ALLOWED = re.compile(r"[^a-zA-Z0-9_-]")


def tool_name_for(action: str, taken: set[str]) -> str:
    """The tool name of ``action``, unlike every name in ``taken``."""
    name = PREFIX + _NOT_ALLOWED.sub("_", action)
    if len(name) <= MAX_NAME and name not in taken:
        return name
    digest = hashlib.sha256(action.encode()).hexdigest()[:10]
    return f"{name[: MAX_NAME - len(digest) - 1]}_{digest}"


@dataclass(frozen=True)
class ActionTool:
    """A registered action and the tool that invokes it (None: its input schema does
    not describe an object, so only ``invoke_action`` reaches it)."""

    action: str
    description: str
    schema: dict[str, Any]
    available_to: list[dict[str, Any]] | None
    tool: types.Tool | None


class ActionCatalog:
    """The actions as last listed by the relay, and their tools."""

    def __init__(self, ctx: AgentContext) -> None:
        self.client = ctx.client
        self.actions: dict[str, ActionTool] = {}
        self.by_tool: dict[str, ActionTool] = {}

    async def refresh(self) -> None:
        """List the actions again (RelayError when the relay cannot be asked)."""
        listed = sorted(await self.client.actions(), key=lambda a: str(a["name"]))
        actions: dict[str, ActionTool] = {}
        by_tool: dict[str, ActionTool] = {}
        for raw in listed:
            entry = _action_tool(raw, set(by_tool))
            actions[entry.action] = entry
            if entry.tool is not None:
                by_tool[entry.tool.name] = entry
        self.actions, self.by_tool = actions, by_tool

    def tools(self) -> list[types.Tool]:
        return [entry.tool for entry in self.by_tool.values() if entry.tool is not None]

    def signature(self) -> str:
        """Changes whenever the action tools a client would list change."""
        return json.dumps([t.model_dump(mode="json") for t in self.tools()], sort_keys=True)


def _action_tool(raw: dict[str, Any], taken: set[str]) -> ActionTool:
    name, description = str(raw["name"]), str(raw.get("description") or "").strip()
    schema = raw.get("input_schema") or {}
    available_to = raw.get("available_to")
    tool = None
    if not schema or schema.get("type") == "object":
        tool = types.Tool(
            name=tool_name_for(name, taken),
            description=_describe(name, description, available_to),
            inputSchema=schema or {"type": "object"},
        )
    return ActionTool(name, description, schema, available_to, tool)


def _describe(name: str, description: str, available_to: list[dict[str, Any]] | None) -> str:
    """An action tool's description: what the action says it does, who may invoke it,
    and that the call returns before the work is done."""
    parts = [f"Invoke the workspace action {name!r}" + (f": {description}" if description else "")]
    if available_to is not None:
        selectors = [", ".join(f"{k}={v}" for k, v in s.items()) for s in available_to]
        parts.append(f"Only for: {'; '.join(selectors) or 'nobody'}")
    parts.append(
        "Fire-and-forget: returns {invocation_id} at once while the action's handler runs"
        " elsewhere."
    )
    return " ".join(p if p.endswith((".", "!", "?")) else p + "." for p in parts)


def action_tools(tools: Actions) -> list[ToolSpec]:
    return [
        ToolSpec(
            "list_actions",
            "The workspace's typed actions: name, the tool that invokes it, description, "
            "input JSON Schema and who may invoke it (available_to; absent: everyone).",
            obj({}),
            tools.list_actions,
        ),
        ToolSpec(
            "invoke_action",
            "Invoke a workspace action by name with its input (an object matching the "
            "action's input schema, see list_actions). Fire-and-forget: returns "
            "{invocation_id} at once; the action's handler runs elsewhere.",
            obj(
                {
                    "action": {"type": "string", "minLength": 1, "description": "its name"},
                    "input": {"type": "object", "description": "the action's input"},
                },
                ("action", "input"),
            ),
            tools.invoke_action,
        ),
    ]


class Actions:
    """What the action tools do, with the catalog kept fresh by the server."""

    def __init__(self, ctx: AgentContext, catalog: ActionCatalog) -> None:
        self.client = ctx.client
        self.catalog = catalog

    async def list_actions(self, args: Arguments) -> Any:
        found = []
        for entry in self.catalog.actions.values():
            view: dict[str, Any] = {
                "name": entry.action,
                "tool": entry.tool.name if entry.tool else None,
                "description": entry.description,
                "input_schema": entry.schema,
            }
            if entry.available_to is not None:
                view["available_to"] = entry.available_to
            found.append(view)
        return found

    async def invoke_action(self, args: Arguments) -> Any:
        action, given = args["action"], args["input"]
        known = self.catalog.actions.get(action)
        if known is not None and known.schema:
            problems = argument_errors(known.schema, given)
            if problems:
                raise ToolError(f"invalid input for action {action!r}: {problems}")
        return await self.start(action, given)

    async def start(self, action: str, input: Any) -> Any:
        """Invoke ``action`` (input already checked); the invocation id at once."""
        started = await self.client.invoke(action, input)
        if started.get("status") == "failed":  # recorded, but no handler could take it
            raise ToolError(
                f"action {action!r} failed at once: {started.get('error')} "
                f"(invocation {started.get('invocation_id')})"
            )
        return {"invocation_id": started["invocation_id"], "status": started.get("status")}

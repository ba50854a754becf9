"""An action that spawns agents: ``spawn-claude``, which only ``lead`` may invoke.

The app registers the action; its handler spawns a Claude Code agent with
``claude.create(relay=…)`` and tells the caller by DM. A ``lead`` agent invokes it through
the tool ``action_spawn-claude`` of its MCP server; the app prints the action's result
and the DM's receipt.

Run: ``python examples/spawn_claude.py`` (``--real``: the ``claude`` on your PATH).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from _common import CLAUDE, ActionEnd, Expect, mcp, run, task
from pydantic import BaseModel

from agent_relay_runtime.harnesses import claude
from agent_relay_runtime.sdk import ActionCall, AgentRelay, Selector


class SpawnInput(BaseModel):
    model: str | None = None


async def example(relay: AgentRelay, tmp: Path) -> None:
    async def spawn_claude(args: ActionCall) -> dict[str, Any]:
        agent = await claude.create(relay=relay, model=args.input.model, **CLAUDE)
        await relay.messages.send(to=f"@{args.agent.handle}", text=f"Spawned {agent.handle}")
        return {"agent_id": agent.id, "handle": agent.handle}

    relay.register_action(
        name="spawn-claude", description="Spawn a Claude Code agent", input=SpawnInput,
        available_to=[{"name": "lead"}], handler=spawn_claude,
    )  # fmt: skip
    await relay.actions_ready()

    # Listen before acting: the action's end, and the app's DM to the lead.
    done = ActionEnd(relay, "spawn-claude")
    dm = Expect(
        relay,
        Selector(
            ("message.created",), agent=relay.as_name,
            where=lambda data: data.get("conversation_kind") == "dm",
        ),
    )  # fmt: skip
    lead_task = task(
        fake=[mcp("action_spawn-claude")],
        real="Use your agent-relay tool action_spawn-claude (no input) to spawn a helper.",
    )
    await claude.create(relay=relay, name="lead", task=lead_task, **CLAUDE)

    finished = await done.output()
    print(f"spawn-claude invoked by {finished['caller_name']} -> {finished['output']}")
    message = (await dm.wait())["data"]
    receipts = await relay.client.wait_final(message["id"], timeout=60)
    for receipt in receipts:
        print(f"DM {message['text']!r} to @{receipt['agent_name']}: {receipt['status']}")
    if [r["status"] for r in receipts] != ["delivered"]:
        raise RuntimeError(f"the DM did not reach the lead: {receipts}")


if __name__ == "__main__":
    run(example, "spawn-claude")

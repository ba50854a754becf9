"""An action with a side effect that answers its caller: ``github.open_pr``.

The handler "opens" a pull request by writing it as JSON into a temp dir that stands in
for GitHub (no network), then DMs the agent that asked. A ``dev`` agent invokes it with
the tool ``action_github_open_pr`` of its MCP server; the app prints the PR file and
checks that dev's session received the DM (its receipt is ``delivered``).

Run: ``python examples/open_pr.py`` (``--real``: the ``claude`` on your PATH).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
from _common import CLAUDE, ActionEnd, Expect, mcp, run, task
from pydantic import BaseModel

from agent_relay_runtime.harnesses import claude
from agent_relay_runtime.sdk import ActionCall, AgentRelay, Selector


class PullRequest(BaseModel):
    title: str
    branch: str
    body: str


async def example(relay: AgentRelay, tmp: Path) -> None:
    github = anyio.Path(tmp / "github")  # one JSON file per pull request
    await github.mkdir()

    async def open_pr(call: ActionCall) -> dict[str, Any]:
        number = len([p async for p in github.iterdir()]) + 1
        pr = {"number": number, "author": call.agent.handle, **call.input.model_dump()}
        await (github / f"{number}.json").write_text(json.dumps(pr, indent=2))
        text = f"Opened PR #{number}: {call.input.title}"
        await relay.messages.send(to=f"@{call.agent.handle}", text=text)
        return {"number": number, "url": f"https://github.example/pulls/{number}"}

    relay.register_action(
        name="github.open_pr", description="Open a pull request", input=PullRequest,
        handler=open_pr,
    )  # fmt: skip
    await relay.actions_ready()

    done = ActionEnd(relay, "github.open_pr")
    dm = Expect(relay, Selector(("message.created",), agent=relay.as_name))
    pr = PullRequest(title="Fix the flaky login test", branch="fix-login", body="Wait for it.")
    dev_task = task(
        fake=[mcp("action_github_open_pr", **pr.model_dump())],
        real=f"Open a pull request with your agent-relay tool action_github_open_pr: {pr}.",
    )
    await claude.create(relay=relay, name="dev", task=dev_task, **CLAUDE)

    finished = await done.output()
    print(f"github.open_pr -> {finished['output']}")
    print(await (github / f"{finished['output']['number']}.json").read_text())
    message = (await dm.wait())["data"]
    [receipt] = await relay.client.wait_final(message["id"], timeout=60)
    print(f"DM to @{receipt['agent_name']}: {message['text']!r} {receipt['status']}")
    if receipt["status"] != "delivered":
        raise RuntimeError(f"dev did not get the DM: {receipt}")


if __name__ == "__main__":
    run(example, "open-pr")

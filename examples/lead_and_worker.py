"""A lead agent spawns a worker through ``agent.create`` and reports its result to #ops.

The app serves the runtime's actions (``agent.create``, ``agent.release``, …) itself, as
``agent-relay-runtime serve`` does. The lead calls ``action_agent_create`` to start
``worker`` (harness ``claude``, found on PATH) with a task; the worker DMs its result to
``@lead``; the lead posts it to ``#ops``, where the app hears it and prints it.

With the fakes every decision is a directive in a message, so the worker's reply carries
the lead's next step (post to #ops), standing in for the lead's model deciding to report.
By default a temp ``bin/claude`` linked to the fake goes first on PATH.

Run: ``python examples/lead_and_worker.py`` (``--real``: the ``claude`` on your PATH).
"""

from __future__ import annotations

import os
from pathlib import Path

from _common import CLAUDE, FAKE_CLAUDE, REAL, ActionEnd, Expect, mcp, run, task

from agent_relay_runtime.harnesses import claude
from agent_relay_runtime.node.runtime_actions import register_runtime_actions
from agent_relay_runtime.sdk import AgentRelay, Selector


def fake_claude_on_path(tmp: Path) -> None:
    """``claude`` means the fake for this process and the agents it spawns."""
    (tmp / "bin").mkdir()
    (tmp / "bin" / "claude").symlink_to(FAKE_CLAUDE)
    os.environ["PATH"] = f"{tmp / 'bin'}{os.pathsep}{os.environ['PATH']}"


async def example(relay: AgentRelay, tmp: Path) -> None:
    if not REAL:
        fake_claude_on_path(tmp)
    register_runtime_actions(relay, await relay.fleet())
    await relay.actions_ready()

    created = ActionEnd(relay, "agent.create")
    result = Expect(relay, Selector(("message.created",), agent="worker"))
    report = Expect(
        relay, Selector(("message.created",), where=lambda d: d.get("channel_name") == "ops")
    )
    # The fakes' script, innermost first: the lead's post, the worker's reply, the lead's task.
    to_ops = mcp("send_message", to="#ops", text="Lead: the worker found one typo (teh).")
    worker_task = mcp("send_message", to="@lead", text=f"One typo: teh -> the. {to_ops}")
    lead_task = task(
        fake=[mcp("action_agent_create", name="worker", harness="claude", task=worker_task)],
        real="Start a helper with your agent-relay tool action_agent_create: name worker,"
        " harness claude, task: 'Find the typos in the commit message \"Fix teh login"
        " flow\" and send them to @lead with your agent-relay tool send_message'."
        " When its answer comes, post it to #ops with send_message.",
    )
    await claude.create(relay=relay, name="lead", task=lead_task, channels=["ops"], **CLAUDE)

    spawned = await created.output()
    print(f"{spawned['caller_name']} created {spawned['output']['agent']} via agent.create")
    reply = (await result.wait())["data"]
    print(f"worker -> @lead: {reply['text'].split(' mcp:')[0]}")  # without the fake's directive
    posted = (await report.wait())["data"]
    print(f"{posted['agent_name']} -> #ops: {posted['text']}")
    released = await relay.call("agent.release", {"name": "worker"})
    print(f"released worker: {released['released']}")


if __name__ == "__main__":
    run(example, "lead-and-worker")

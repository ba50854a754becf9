"""A consensus round: three reviewers vote through a typed action, the app tallies.

The app registers ``review.submit_vote`` (input: a pydantic ``Vote``) and spawns three
agents in ``#review``; each votes with the tool ``action_review_submit_vote`` of its MCP
server. Once the three votes are in, the handler posts the result to ``#review``, and
the app prints the tally and each reviewer's receipt of it.

Run: ``python examples/submit_vote.py`` (``--real``: the ``claude`` on your PATH).
"""

from __future__ import annotations

from pathlib import Path

import anyio
from _common import CLAUDE, mcp, run, task
from pydantic import BaseModel

from agent_relay_runtime.harnesses import claude
from agent_relay_runtime.sdk import ActionCall, AgentRelay

PROPOSAL = "adopt-ruff"
# What each fake reviewer votes (a real one decides for itself).
REVIEWERS = {"alice": (True, "one fast tool"), "bob": (True, "fewer configs"),
             "carol": (False, "too many new warnings")}  # fmt: skip


class Vote(BaseModel):
    proposal: str
    approve: bool
    reason: str


async def example(relay: AgentRelay, tmp: Path) -> None:
    votes: dict[str, Vote] = {}
    posted: dict[str, str] = {}
    all_in = anyio.Event()

    async def submit_vote(call: ActionCall) -> dict[str, int]:
        votes[str(call.agent.handle)] = call.input
        print(f"vote from {call.agent.handle}: approve={call.input.approve} ({call.input.reason})")
        if len(votes) == len(REVIEWERS) and not posted:
            yes = sum(vote.approve for vote in votes.values())
            verdict = "accepted" if 2 * yes > len(votes) else "rejected"
            posted["text"] = f"{PROPOSAL} {verdict}: {yes} for, {len(votes) - yes} against"
            posted["id"] = (await relay.messages.send(to="#review", text=posted["text"]))["id"]
            all_in.set()
        return {"votes_in": len(votes)}

    relay.register_action(
        name="review.submit_vote", description="Vote on a proposal", input=Vote,
        handler=submit_vote,
    )  # fmt: skip
    await relay.actions_ready()
    for name, (approve, reason) in REVIEWERS.items():
        vote = Vote(proposal=PROPOSAL, approve=approve, reason=reason)
        reviewer_task = task(
            fake=[mcp("action_review_submit_vote", **vote.model_dump())],
            real=f"Vote on the proposal {PROPOSAL!r} (switch this project's linter to ruff)"
            " with your agent-relay tool action_review_submit_vote: approve or not, and why.",
        )
        await claude.create(
            relay=relay, name=name, task=reviewer_task, channels=["review"], **CLAUDE
        )

    await all_in.wait()
    print(f"tally posted to #review: {posted['text']}")
    receipts = await relay.client.wait_final(posted["id"], timeout=60)
    for receipt in receipts:
        print(f"  {receipt['agent_name']}: {receipt['status']}")
    if sorted(r["status"] for r in receipts) != ["delivered"] * len(REVIEWERS):
        raise RuntimeError(f"not every reviewer got the result: {receipts}")


if __name__ == "__main__":
    run(example, "review")

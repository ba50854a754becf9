"""Actions as MCP tools: a tool per registered action with the action's own schema,
fire-and-forget invocations, the list_changed notice, and the relay's policy."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from pydantic import BaseModel

from agent_relay_runtime.mcp.actions import tool_name_for
from agent_relay_runtime.sdk import ActionCall, AgentRelay

from .conftest import agent, connect

pytestmark = pytest.mark.anyio


class Vote(BaseModel):
    proposal: str
    approve: bool


class Calls:
    """A handler that records its calls and holds each until released."""

    def __init__(self) -> None:
        self.seen: list[tuple[str | None, Any]] = []
        self.release = anyio.Event()
        self._arrived = anyio.Event()

    async def __call__(self, call: ActionCall) -> dict[str, Any]:
        self.seen.append((call.agent.name, call.input))
        self._arrived.set()
        await self.release.wait()
        return {"counted": len(self.seen)}

    async def arrived(self, count: int) -> None:
        with anyio.fail_after(10):
            while len(self.seen) < count:
                self._arrived = anyio.Event()
                await self._arrived.wait()


def test_action_names_become_valid_tool_names() -> None:
    assert tool_name_for("review.submit_vote", set()) == "action_review_submit_vote"
    taken = {"action_review_submit_vote"}
    other = tool_name_for("review/submit_vote", taken)  # the same once made valid
    assert other != "action_review_submit_vote" and other.startswith("action_review_submit")
    long = tool_name_for("x" * 200, set())
    assert len(long) == 64 and long == tool_name_for("x" * 200, set())
    assert long != tool_name_for("x" * 199 + "y", set())


async def test_an_action_registered_later_becomes_a_tool_that_fires_and_forgets(
    workspace: AgentRelay,
) -> None:
    token, _ = await agent(workspace, "alice")
    completed: list[dict[str, Any]] = []
    done = anyio.Event()

    def on_completed(event: dict[str, Any]) -> None:
        completed.append(event)
        if len(completed) == 2:
            done.set()

    workspace.add_listener(workspace.action("review.submit_vote").completed(), on_completed)
    async with connect(workspace, token) as mcp:
        assert not any(name.startswith("action_") for name in await mcp.tool_names())
        calls = Calls()
        handle = workspace.register_action(
            name="review.submit_vote", description="Vote on a proposal", input=Vote,
            handler=calls,
        )  # fmt: skip
        await workspace.actions_ready()

        # Any call shows the server the new action; the client was given an older list.
        [listed] = await mcp.call("list_actions")
        assert listed["name"] == "review.submit_vote"
        assert listed["tool"] == "action_review_submit_vote"
        assert listed["input_schema"] == Vote.model_json_schema()
        await mcp.notice("notifications/tools/list_changed")
        tools = {t.name: t for t in (await mcp.session.list_tools()).tools}
        tool = tools["action_review_submit_vote"]
        assert tool.inputSchema == Vote.model_json_schema()
        assert "Vote on a proposal" in (tool.description or "")

        # Both answer before the handler has finished (it is held until released).
        started = await mcp.call("action_review_submit_vote", {"proposal": "p1", "approve": True})
        assert started["invocation_id"].startswith("inv_") and started["status"] == "invoked"
        again = await mcp.call(
            "invoke_action",
            {"action": "review.submit_vote", "input": {"proposal": "p2", "approve": False}},
        )
        await calls.arrived(2)
        assert completed == []
        calls.release.set()
        with anyio.fail_after(10):
            await done.wait()
        assert calls.seen == [
            ("alice", Vote(proposal="p1", approve=True)),
            ("alice", Vote(proposal="p2", approve=False)),
        ]
        assert {e["data"]["id"] for e in completed} == {
            started["invocation_id"], again["invocation_id"],
        }  # fmt: skip

        handle.unregister()
        await workspace.actions_ready()
        assert "action_review_submit_vote" not in await mcp.tool_names()
        gone = await mcp.refused("invoke_action", {"action": "review.submit_vote", "input": {}})
        assert "no action named 'review.submit_vote'" in gone


async def test_invalid_arguments_are_tool_errors_and_nothing_is_sent(
    workspace: AgentRelay,
) -> None:
    token, _ = await agent(workspace, "alice")
    _, bob = await agent(workspace, "bob")
    await bob.call("POST", "/v1/channels", {"name": "ops"})
    calls = Calls()
    workspace.register_action(name="review.submit_vote", input=Vote, handler=calls)
    await workspace.actions_ready()
    head = (await workspace.client.events_page(0, types=["-"]))[1]
    async with connect(workspace, token) as mcp:
        missing = await mcp.refused("send_message", {"to": "#ops"})
        assert missing == "invalid arguments for send_message: 'text' is a required property"
        extra = await mcp.refused("send_message", {"to": "#ops", "text": "x", "cc": "bob"})
        assert "Additional properties are not allowed ('cc' was unexpected)" in extra
        typed = await mcp.refused("send_message", {"to": 5, "text": ""})
        assert "to: 5 is not of type 'string'" in typed and "text: '' should be non-empty" in typed
        spaced = await mcp.refused("send_dm", {"to": "two words", "text": "x"})
        assert "to: 'two words' does not match" in spaced
        watch = await mcp.refused("notify_when", {"agent": "bob", "on": "done"})
        assert "on: 'done' is not one of ['idle', 'delivered']" in watch
        vote = await mcp.refused("action_review_submit_vote", {"proposal": "p1"})
        assert vote == (
            "invalid arguments for action_review_submit_vote: 'approve' is a required property"
        )
        wrapped = await mcp.refused(
            "invoke_action", {"action": "review.submit_vote", "input": {"approve": "yes"}}
        )
        assert "invalid input for action 'review.submit_vote'" in wrapped
        assert "approve: 'yes' is not of type 'boolean'" in wrapped
        assert "'proposal' is a required property" in wrapped
        unknown = await mcp.refused("action_nothing_here", {})
        assert unknown.startswith("unknown tool 'action_nothing_here'")

    events, _ = await workspace.client.events_page(head)
    assert [e["type"] for e in events] == []  # no message, no invocation
    assert await bob.channel_messages("ops") == [] and calls.seen == []


async def test_relay_refusals_are_tool_errors_and_the_server_goes_on(
    workspace: AgentRelay,
) -> None:
    token, _ = await agent(workspace, "intern")
    calls = Calls()
    workspace.register_action(
        name="review.submit_vote", input=Vote, available_to=[{"name": "engineer"}],
        handler=calls,
    )  # fmt: skip
    await workspace.actions_ready()
    vote = {"proposal": "p1", "approve": True}
    async with connect(workspace, token) as mcp:
        tools = {t.name: t for t in (await mcp.session.list_tools()).tools}
        assert "Only for: name=engineer." in (tools["action_review_submit_vote"].description or "")
        denied = await mcp.refused("action_review_submit_vote", vote)
        assert denied == (
            "relay: intern is not in review.submit_vote's available_to (action_denied)"
        )
        also = await mcp.refused("invoke_action", {"action": "review.submit_vote", "input": vote})
        assert also == denied
        assert await mcp.refused("send_message", {"to": "#nope", "text": "x"}) == (
            "relay: no channel named 'nope' (channel_not_found)"
        )
        assert "no agent named 'nobody'" in await mcp.refused(
            "send_dm", {"to": "nobody", "text": "x"}
        )
        assert "no message 'msg_missing'" in await mcp.refused(
            "reply", {"message_id": "msg_missing", "text": "x"}
        )
        assert "msg_missing" in await mcp.refused("mark_read", {"message_ids": ["msg_missing"]})
        assert "no channel named" in await mcp.refused("join_channel", {"channel": "#nope"})
        assert "no channel named" in await mcp.refused("mark_read", {"channel": "#nope"})
        assert [a["name"] for a in await mcp.call("list_agents")] == ["intern"]
    assert calls.seen == []


async def test_the_client_is_told_at_once_when_an_action_registers(
    workspace: AgentRelay,
) -> None:
    """No tool call needed: the server follows the relay's action.registered events."""
    token, _ = await agent(workspace, "carol")
    async with connect(workspace, token) as mcp:
        assert "action_deploy" not in await mcp.tool_names()
        handle = workspace.register_action(name="deploy", handler=lambda call: "shipped")
        await workspace.actions_ready()
        await mcp.notice("notifications/tools/list_changed")
        assert "action_deploy" in await mcp.tool_names()
        handle.unregister()
        await workspace.actions_ready()

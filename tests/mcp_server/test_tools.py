"""The MCP server's tools against a real embedded relay, through the official client:
each tool, arguments checked before anything is sent, relay refusals as tool errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from agent_relay_runtime.sdk import AgentRelay

from .conftest import Connected, agent, connect

pytestmark = pytest.mark.anyio

FIXED = {
    "send_message", "send_dm", "reply", "check_inbox", "mark_read", "list_agents",
    "list_channels", "join_channel", "list_actions", "invoke_action", "notify_when",
}  # fmt: skip


async def test_the_server_is_agent_relay_with_strict_tools(workspace: AgentRelay) -> None:
    token, _ = await agent(workspace, "alice")
    async with connect(workspace, token) as mcp:
        assert mcp.info.serverInfo.name == "agent-relay"
        assert mcp.info.capabilities.tools and mcp.info.capabilities.tools.listChanged
        assert "alice" not in (mcp.info.instructions or "")  # no RELAY_AGENT_NAME given
        tools = {t.name: t for t in (await mcp.session.list_tools()).tools}
    assert set(tools) == FIXED
    for tool in tools.values():
        assert re.fullmatch(r"[a-zA-Z0-9_-]{1,64}", tool.name)
        assert tool.inputSchema["type"] == "object"
        assert tool.inputSchema["additionalProperties"] is False
        assert tool.description and len(tool.description) > 30


async def test_send_message_reaches_a_channel_an_agent_and_a_thread(
    workspace: AgentRelay,
) -> None:
    token, _ = await agent(workspace, "alice")
    _, bob = await agent(workspace, "bob")
    await bob.call("POST", "/v1/channels", {"name": "ops"})
    async with connect(workspace, token) as mcp:
        joined = await mcp.call("join_channel", {"channel": "#ops"})
        assert joined == {"channel": "ops", "agent_name": "alice", "joined": True}
        posted = await mcp.call("send_message", {"to": "#ops", "text": "build is green"})
        to_bob = await mcp.call("send_message", {"to": "@bob", "text": "one"})
        bare = await mcp.call("send_message", {"to": "bob", "text": "two"})
        direct = await mcp.call("send_dm", {"to": "bob", "text": "three"})
        threaded = await mcp.call("reply", {"message_id": posted["message_id"], "text": "ok"})

    [seen] = await bob.channel_messages("ops")
    assert (seen["id"], seen["agent_name"], seen["text"]) == (
        posted["message_id"], "alice", "build is green",
    )  # fmt: skip
    assert posted["relay"]["text"] == "build is green" and posted["to"] == "#ops"
    conversation = direct["conversation_id"]
    assert to_bob["relay"]["conversation_id"] == bare["relay"]["conversation_id"] == conversation
    dms = await bob.dm_messages(conversation)
    assert [m["text"] for m in dms] == ["one", "two", "three"]
    assert {m["agent_name"] for m in dms} == {"alice"}
    assert threaded["thread_id"] == posted["message_id"]
    replies = await bob.call("GET", f"/v1/messages/{posted['message_id']}/replies")
    assert [r["text"] for r in replies["replies"]] == ["ok"]


async def test_check_inbox_shows_what_is_unread_and_mark_read_clears_it(
    workspace: AgentRelay,
) -> None:
    token, alice = await agent(workspace, "alice")
    _, bob = await agent(workspace, "bob")
    await bob.call("POST", "/v1/channels", {"name": "ops"})
    await alice.join_channel("ops")
    first = await bob.send("#ops", "deploy at 5")
    mention = await bob.send("#ops", "@alice please review")
    dm = await bob.send("@alice", "psst")
    async with connect(workspace, token) as mcp:
        inbox = await mcp.call("check_inbox")
        assert inbox["channels"] == [
            {
                "channel": "#ops",
                "unread": 2,
                "messages": [
                    {"id": first["id"], "from": "bob", "text": "deploy at 5",
                     "at": first["created_at"]},
                    {"id": mention["id"], "from": "bob", "text": "@alice please review",
                     "at": mention["created_at"], "mentions_you": True},
                ],
            }
        ]  # fmt: skip
        [conversation] = inbox["dms"]
        assert conversation["conversation_id"] == dm["conversation_id"]
        assert (conversation["from"], conversation["unread"]) == ("bob", 1)
        assert [m["text"] for m in conversation["messages"]] == ["psst"]
        assert inbox["mentions"] == []  # shown with its channel already

        refused = await mcp.refused("mark_read", {"channel": "#ops", "message_ids": [dm["id"]]})
        assert "exactly one of message_ids, channel, conversation_id" in refused
        assert "exactly one" in await mcp.refused("mark_read", {})
        assert (await check_counts(mcp)) == (1, 1)  # nothing was marked

        assert await mcp.call("mark_read", {"channel": "#ops"}) == {
            "channel": "#ops", "marked_read": 2,
        }  # fmt: skip
        assert await mcp.call("mark_read", {"message_ids": [dm["id"]]}) == {
            "marked_read": [dm["id"]],
        }  # fmt: skip
        assert await mcp.call("check_inbox") == {"channels": [], "dms": [], "mentions": []}

        await bob.send("@alice", "again")
        marked = await mcp.call("mark_read", {"conversation_id": dm["conversation_id"]})
        assert marked == {"conversation_id": dm["conversation_id"], "marked_read": 1}
        assert (await check_counts(mcp)) == (0, 0)


async def check_counts(mcp: Connected) -> tuple[int, int]:
    inbox = await mcp.call("check_inbox")
    return len(inbox["channels"]), len(inbox["dms"])


async def test_the_workspace_is_listed_for_the_agent(workspace: AgentRelay, tmp_path: Path) -> None:
    token, _ = await agent(workspace, "alice")
    _, bob = await agent(workspace, "bob")
    await bob.call("POST", "/v1/channels", {"name": "ops", "topic": "deploys"})
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    # The token from a file; the name given is for display only.
    async with connect(
        workspace, None, "--token-file", str(token_file), RELAY_AGENT_NAME="alice"
    ) as mcp:
        assert "'alice'" in (mcp.info.instructions or "")
        agents = await mcp.call("list_agents")
        channels = await mcp.call("list_channels")
    assert {"name": "alice", "type": "agent", "status": "offline", "you": True} in agents
    assert {"name": "bob", "type": "agent", "status": "offline"} in agents
    assert channels == [{"name": "#ops", "topic": "deploys"}]

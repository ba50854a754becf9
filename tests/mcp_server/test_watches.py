"""notify_when: a watch asked of the relay (``POST /v1/watches``) with the agent's token."""

from __future__ import annotations

import pytest

from agent_relay_runtime.relay.client import RelayError
from agent_relay_runtime.sdk import AgentRelay

from .conftest import agent, connect

pytestmark = pytest.mark.anyio


async def test_notify_when_asks_the_relay_to_watch_an_agent(workspace: AgentRelay) -> None:
    try:
        await workspace.client.call("GET", "/v1/watches")
    except RelayError as exc:
        if exc.status == 404 and exc.code == "bad_response":
            pytest.skip("this relay has no /v1/watches yet")
    token, _ = await agent(workspace, "alice")
    await agent(workspace, "bob")
    async with connect(workspace, token) as mcp:
        idle = await mcp.call("notify_when", {"agent": "@bob", "on": "idle"})
        assert (idle["agent"], idle["on"], idle["notify"]) == ("bob", "idle", "alice")
        assert idle["watch_id"]
        sent = await mcp.call("send_message", {"to": "bob", "text": "ping"})
        delivered = await mcp.call(
            "notify_when", {"agent": "bob", "on": "delivered", "message_id": sent["message_id"]}
        )
        assert (delivered["on"], delivered["message_id"]) == ("delivered", sent["message_id"])
        refused = await mcp.refused("notify_when", {"agent": "nobody", "on": "idle"})
        assert refused == "relay: no agent named 'nobody' (agent_not_found)"
    pending = await workspace.client.call("GET", "/v1/watches")
    assert {w["watch_id"] for w in pending} == {idle["watch_id"], delivered["watch_id"]}

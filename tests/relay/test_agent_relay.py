"""The `AgentRelay` facade: an embedded workspace, another process's view of it (join),
messages, typed actions with policy and schema enforced by the relay, listeners."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from pydantic import BaseModel
from relay_sdk import AsyncRelay

from agent_relay_runtime.sdk import ActionCall, AgentRelay, Selector

pytestmark = pytest.mark.anyio


class Vote(BaseModel):
    proposal: str
    approve: bool


@pytest.fixture
async def relay(tmp_path: Path) -> AsyncIterator[AgentRelay]:
    app = await AgentRelay.create_workspace("review", data_dir=tmp_path)
    try:
        yield app
    finally:
        await app.close()


class Seen:
    """Events a listener got, and a way to wait for the next one."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self._changed = anyio.Event()

    def __call__(self, event: dict[str, Any]) -> None:
        self.events.append(event)
        self._changed.set()
        self._changed = anyio.Event()

    async def wait(self, count: int = 1, timeout: float = 10) -> list[dict[str, Any]]:
        with anyio.fail_after(timeout):
            while len(self.events) < count:
                await self._changed.wait()
        return self.events


async def agent_token(app: AgentRelay, name: str) -> str:
    return str((await app.client.register(name))["token"])


async def invoke(app: AgentRelay, token: str, action: str, body: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=app.workspace.relay_url) as http:
        return await http.post(
            f"/v1/actions/{action}/invoke",
            json={"input": body},
            headers={"authorization": f"Bearer {token}"},
        )


async def test_a_workspace_is_created_joined_and_messaged(relay: AgentRelay) -> None:
    assert relay.workspace.key.startswith("relay_ws_")
    other = await AgentRelay.join(
        workspace_key=relay.workspace.key, base_url=relay.workspace.relay_url, as_name="ops-bot"
    )
    try:
        assert other.workspace.name == "review"
        seen = Seen()
        relay.add_listener("message.created", seen)
        bob = AsyncRelay(api_key=relay.workspace.key, base_url=relay.workspace.relay_url)
        token = (await bob.agents.register("bob")).token
        sent = await other.messages.send(to="@bob", text="hi bob")
        inbox = await bob.as_agent(token).inbox()
        assert inbox.unread_dms and inbox.unread_dms[0].from_ == "ops-bot"
        reply = await relay.messages.send(to="bob", text="and from the app")
        threaded = await other.messages.reply(sent["id"], text="in a thread")
        assert threaded["thread_id"] == sent["id"] and reply["id"] != sent["id"]
        events = await seen.wait(3)
        assert [e["data"]["text"] for e in events] == ["hi bob", "and from the app", "in a thread"]
    finally:
        await other.close()


async def test_an_action_runs_in_the_registering_process_under_the_relays_policy(
    relay: AgentRelay,
) -> None:
    votes: list[tuple[str | None, Vote]] = []

    async def on_vote(call: ActionCall) -> dict[str, Any]:
        votes.append((call.agent.handle, call.input))
        return {"counted": len(votes)}

    handle = relay.register_action(
        name="review.submit_vote", description="Vote on a proposal", input=Vote,
        available_to=[{"name": "engineer"}], handler=on_vote,
    )  # fmt: skip
    await relay.actions_ready()
    completed, denied, failed = Seen(), Seen(), Seen()
    relay.add_listener("action.completed", completed)
    relay.add_listener(relay.action("review.submit_vote").denied(), denied)
    relay.add_listener(relay.action("review.submit_vote").failed(), failed)
    engineer = await agent_token(relay, "engineer")
    intern = await agent_token(relay, "intern")

    listed = await relay.client.call("GET", "/v1/actions")
    assert listed[0]["input_schema"]["required"] == ["proposal", "approve"]

    accepted = await invoke(
        relay, engineer, "review.submit_vote", {"proposal": "p1", "approve": True}
    )
    assert accepted.status_code == 202 and accepted.json()["data"]["invocation_id"].startswith(
        "inv_"
    )
    [done] = await completed.wait()
    assert done["data"]["output"] == {"counted": 1} and done["data"]["caller_name"] == "engineer"
    assert votes == [("engineer", Vote(proposal="p1", approve=True))]

    refused = await invoke(relay, intern, "review.submit_vote", {"proposal": "p1", "approve": True})
    assert (refused.status_code, refused.json()["error"]["code"]) == (403, "action_denied")
    [no] = await denied.wait()
    assert no["data"]["caller_name"] == "intern"

    bad = await invoke(relay, engineer, "review.submit_vote", {"proposal": "p1"})
    assert (bad.status_code, bad.json()["error"]["code"]) == (400, "invalid_input")
    assert "'approve' is a required property" in bad.json()["error"]["message"]
    assert len(votes) == 1  # neither the intern nor the bad input reached the handler

    handle.unregister()
    await relay.actions_ready()
    gone = await invoke(relay, engineer, "review.submit_vote", {"proposal": "p2", "approve": False})
    assert (gone.status_code, gone.json()["error"]["code"]) == (404, "action_not_found")
    assert failed.events == []


async def test_a_raising_handler_is_a_failed_action_and_the_audit_keeps_it(
    relay: AgentRelay,
) -> None:
    def broken(call: ActionCall) -> None:
        raise RuntimeError("the vote box is on fire")

    relay.register_action(name="box.vote", handler=broken)
    await relay.actions_ready()
    failed = Seen()
    relay.add_listener(relay.action("box.vote").failed(), failed)
    started = await relay.invoke("box.vote", {"anything": 1})
    [event] = await failed.wait()
    assert "the vote box is on fire" in event["data"]["error"]
    record = await relay.client.invocation("box.vote", started["invocation_id"])
    assert (record["status"], record["input"]) == ("failed", {"anything": 1})


async def test_without_a_handler_invocations_fail_fast_or_queue(
    relay: AgentRelay, tmp_path: Path
) -> None:
    other = await AgentRelay.join(
        workspace_key=relay.workspace.key, base_url=relay.workspace.relay_url
    )
    calls: list[Any] = []
    other.register_action(
        name="later", handler=lambda call: calls.append(call.input) or "ran", when_offline="queue"
    )
    other.register_action(name="now-or-never", handler=lambda call: "ran")
    await other.actions_ready()
    await other.close()  # the handlers' process goes away
    failed_fast = await relay.invoke("now-or-never", {})
    assert failed_fast["status"] == "failed" and "no handler" in failed_fast["error"]
    queued = await relay.invoke("later", {"n": 1})
    assert queued["status"] == "invoked"
    completed = Seen()
    relay.add_listener(relay.action("later").completed(), completed)
    back = await AgentRelay.join(
        workspace_key=relay.workspace.key, base_url=relay.workspace.relay_url
    )
    try:
        back.register_action(
            name="later",
            handler=lambda call: calls.append(call.input) or "ran",
            when_offline="queue",
        )
        [done] = await completed.wait()
        assert done["data"]["id"] == queued["invocation_id"]
        assert calls == [{"n": 1}]
    finally:
        await back.close()


async def test_relaycast_sdk_invokes_and_a_slow_handler_times_out(relay: AgentRelay) -> None:
    release = anyio.Event()

    async def slow(call: ActionCall) -> str:
        await release.wait()  # never set before the relay's deadline
        return "too late"

    relay.register_action(name="slow.job", handler=slow, timeout=0.5)
    relay.register_action(name="echo", handler=lambda call: {"echo": call.input})
    await relay.actions_ready()
    failed, completed = Seen(), Seen()
    relay.add_listener(relay.action("slow.job").failed(), failed)
    relay.add_listener(relay.action("echo").completed(), completed)
    sdk = AsyncRelay(api_key=relay.workspace.key, base_url=relay.workspace.relay_url)
    me = sdk.as_agent((await sdk.agents.register("caller")).token)
    started = await me.actions.invoke("echo", {"x": 1})
    [done] = await completed.wait()
    assert done["data"]["id"] == started["invocation_id"]
    assert done["data"]["output"] == {"echo": {"x": 1}}
    got = await me.actions.get_invocation("echo", started["invocation_id"])
    assert got["status"] == "completed"
    await me.actions.invoke("slow.job", None)
    [timed_out] = await failed.wait()
    assert "did not answer within 0.5 s" in timed_out["data"]["error"]
    release.set()


async def test_registering_and_unregistering_are_events(relay: AgentRelay) -> None:
    """Clients that list actions (the MCP server's tools) learn of changes from the log."""
    seen = Seen()
    relay.add_listener(Selector(("action.registered", "action.unregistered")), seen)
    handle = relay.register_action(name="deploy", description="Ship it", handler=lambda c: 1)
    await relay.actions_ready()
    [registered] = await seen.wait(1)
    assert (registered["type"], registered["action"]) == ("action.registered", "deploy")
    assert registered["data"]["description"] == "Ship it"
    handle.unregister()
    await relay.actions_ready()
    events = await seen.wait(2)
    assert (events[1]["type"], events[1]["data"]["name"]) == ("action.unregistered", "deploy")

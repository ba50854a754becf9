"""A small async client of the relay's REST API and event stream, for this runtime's own
use (the daemon's ``send``, the `AgentRelay` facade). Any relaycast-compatible relay.

Errors come back as `RelayError` with the relay's code and one-line message.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from typing import Any
from urllib.parse import quote

import anyio
import httpx

from ..exceptions import RuntimeErrorBase

__all__ = ["FINAL_STATUSES", "RelayClient", "RelayError"]

FINAL_STATUSES = ("delivered", "failed")


class RelayError(RuntimeErrorBase):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"relay: {message} ({code})")
        # A refusal by the relay keeps its status; no answer at all is a bad gateway.
        self.status = status if 400 <= status < 500 else 502
        self.code, self.relay_message = code, message


class RelayClient:
    """Calls the relay with one bearer token (the workspace key, or an agent's token)."""

    def __init__(self, base_url: str, token: str, *, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.http = httpx.AsyncClient(
            base_url=self.base_url,
            headers={"authorization": f"Bearer {token}"},
            timeout=timeout,
        )

    def as_agent(self, token: str) -> RelayClient:
        return RelayClient(self.base_url, token)

    async def aclose(self) -> None:
        await self.http.aclose()

    async def call(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
        try:
            response = await self.http.request(
                method, path, json=body, params={k: v for k, v in params.items() if v is not None}
            )
        except httpx.HTTPError as exc:
            raise RelayError(0, "unreachable", f"cannot reach {self.base_url}: {exc}") from None
        try:
            envelope = response.json()
        except ValueError:
            raise RelayError(response.status_code, "bad_response", response.text[:200]) from None
        if not envelope.get("ok"):
            error = envelope.get("error") or {}
            raise RelayError(
                response.status_code, str(error.get("code")), str(error.get("message"))
            )
        return envelope.get("data")

    # -- the workspace and its participants ---------------------------------------------------

    async def workspace(self) -> dict[str, Any]:
        return dict(await self.call("GET", "/v1/workspace"))

    async def register(self, name: str, kind: str = "agent") -> dict[str, Any]:
        """A new participant and its token (the workspace key is needed)."""
        return dict(await self.call("POST", "/v1/agents", {"name": name, "type": kind}))

    # -- messages -------------------------------------------------------------------------------

    async def send(
        self, to: str, text: str, *, mode: str = "wait", data: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Post as this client's agent: ``#channel``, ``@agent`` (a DM) or a bare agent name."""
        body: dict[str, Any] = {"text": text, "mode": mode}
        if data:
            body["data"] = data
        if to.startswith("#"):
            return dict(await self.call("POST", f"/v1/channels/{to[1:]}/messages", body))
        return dict(await self.call("POST", "/v1/dm", {**body, "to": to.removeprefix("@")}))

    async def reply(self, message_id: str, text: str, *, mode: str = "wait") -> dict[str, Any]:
        body = {"text": text, "mode": mode}
        return dict(await self.call("POST", f"/v1/messages/{message_id}/replies", body))

    async def receipts(self, message_id: str) -> list[dict[str, Any]]:
        return list(await self.call("GET", f"/v1/messages/{message_id}/receipts"))

    async def wait_final(self, message_id: str, timeout: float) -> list[dict[str, Any]]:
        """Every target's receipt of the message once each is delivered or failed
        (TimeoutError after ``timeout``): follows the event log, no polling."""
        with anyio.fail_after(timeout):
            # The log's head (a filter nothing passes), taken before the receipts are read:
            # a receipt that changes after the read is in the log after this cursor.
            cursor = (await self.events_page(0, types=["-"]))[1]
            found = await self.receipts(message_id)
            while any(r["status"] not in FINAL_STATUSES for r in found):
                async for event in self.follow(cursor, types=["delivery.*"]):
                    cursor = int(event["seq"])
                    if event["data"].get("message_id") == message_id:
                        break
                found = await self.receipts(message_id)
            return found

    # -- actions --------------------------------------------------------------------------------

    async def invoke(self, action: str, input: Any) -> dict[str, Any]:
        return dict(await self.call("POST", f"/v1/actions/{action}/invoke", {"input": input}))

    async def invocation(self, action: str, invocation_id: str) -> dict[str, Any]:
        path = f"/v1/actions/{action}/invocations/{invocation_id}"
        return dict(await self.call("GET", path))

    # -- events ---------------------------------------------------------------------------------

    async def events_page(
        self, cursor: int, *, types: Sequence[str] = (), agent: str | None = None
    ) -> tuple[list[dict[str, Any]], int]:
        data = await self.call(
            "GET", "/v1/events", cursor=cursor, types=",".join(types) or None, agent=agent
        )
        return list(data["events"]), int(data["cursor"])

    async def follow(
        self,
        cursor: int,
        *,
        types: Sequence[str] = (),
        agent: str | None = None,
        action: str | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        """Events after ``cursor``, as they come (Server-Sent Events), until the caller
        stops; resume by calling again with the last event's ``seq``."""
        params = {"cursor": cursor, "types": ",".join(types) or None, "agent": agent,
                  "action": action}  # fmt: skip
        async with self.http.stream(
            "GET",
            "/v1/events",
            params={k: v for k, v in params.items() if v is not None},
            headers={"accept": "text/event-stream"},
            timeout=httpx.Timeout(30.0, read=None),
        ) as response:
            if response.status_code != 200:
                await response.aread()
                error = response.json().get("error") or {}
                raise RelayError(response.status_code, str(error.get("code")), str(error))
            async for line in response.aiter_lines():
                if line.startswith("data: "):
                    yield json.loads(line[6:])

    # -- an agent's own view (used with its token, e.g. by the MCP server) --------------------

    async def me(self) -> dict[str, Any]:
        """The agent this client's token belongs to."""
        return dict(await self.call("GET", "/v1/agent"))

    async def agents(self) -> list[dict[str, Any]]:
        return list(await self.call("GET", "/v1/agents"))

    async def channels(self) -> list[dict[str, Any]]:
        return list(await self.call("GET", "/v1/channels"))

    async def join_channel(self, name: str) -> dict[str, Any]:
        path = f"/v1/channels/{_segment(name.removeprefix('#'))}/join"
        return dict(await self.call("POST", path))

    async def channel_messages(
        self, name: str, *, limit: int = 50, before: str | None = None
    ) -> list[dict[str, Any]]:
        """A channel's top-level messages, oldest first: the newest ``limit`` (before
        the message id ``before``, if given)."""
        path = f"/v1/channels/{_segment(name.removeprefix('#'))}/messages"
        return list(await self.call("GET", path, limit=limit, before=before))

    async def dm_messages(
        self, conversation_id: str, *, limit: int = 50, before: str | None = None
    ) -> list[dict[str, Any]]:
        """A DM conversation's messages, as `channel_messages`."""
        path = f"/v1/dm/{_segment(conversation_id)}/messages"
        return list(await self.call("GET", path, limit=limit, before=before))

    async def inbox(self, limit: int = 50) -> dict[str, Any]:
        """Unread channels (counts), unread mentions and unread DMs of this agent."""
        return dict(await self.call("GET", "/v1/inbox", limit=limit))

    async def mark_read(self, message_id: str) -> dict[str, Any]:
        return dict(await self.call("POST", f"/v1/messages/{_segment(message_id)}/read"))

    async def actions(self) -> list[dict[str, Any]]:
        """The workspace's actions: name, description, input_schema, available_to, …"""
        return list(await self.call("GET", "/v1/actions"))

    async def watch(self, agent: str, on: str, message_id: str | None = None) -> dict[str, Any]:
        """Ask the relay to message this agent when ``agent`` becomes idle (``on="idle"``)
        or takes a delivery (``on="delivered"``, of ``message_id`` if given)."""
        body: dict[str, Any] = {"agent": agent.removeprefix("@"), "on": on}
        if message_id is not None:
            body["message_id"] = message_id
        return dict(await self.call("POST", "/v1/watches", body))


def _segment(value: str) -> str:
    """``value`` as one path segment: a ``#`` or ``?`` in it stays part of the name."""
    return quote(value, safe="")

"""Messaging tools: send to a channel or an agent, reply in a thread, read the inbox,
mark messages read.

The relay keeps read state per message (``POST /v1/messages/{id}/read``) and counts an
agent's unread top-level messages per conversation. `check_inbox` shows, for each
conversation with unread messages, the newest messages from others, as many as it has
unread (at most `PER_CONVERSATION`): an agent that marks what it has handled sees exactly
its unread messages. `mark_read` takes message ids, or a whole channel or DM
conversation, which it marks read from the newest message back until the relay counts
nothing unread there.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from ..relay.client import RelayError
from .toolkit import AgentContext, Arguments, ToolError, ToolSpec, obj

__all__ = ["PER_CONVERSATION", "messaging_tools"]

PER_CONVERSATION = 10  # messages shown per unread conversation
INBOX_LIMIT = 100  # conversations and mentions asked of the relay
PAGE = 50
MAX_PAGES = 4  # how far back check_inbox looks past the agent's own messages

Page = Callable[[str | None], Awaitable[list[dict[str, Any]]]]

TEXT = {"type": "string", "minLength": 1, "description": "The message text (Markdown)."}
MESSAGE_ID = {"type": "string", "minLength": 1, "description": "A message id, e.g. msg_…"}


def messaging_tools(ctx: AgentContext) -> list[ToolSpec]:
    tools = Messaging(ctx)
    return [
        ToolSpec(
            "send_message",
            "Send a message through the relay. `to` is `#channel` (its members get it; "
            "@name mentions in the text reach those agents too), `@agent` or a bare agent "
            "name (a direct message). Returns the message id (for reply, or notify_when "
            "on 'delivered') and the relay's answer.",
            obj(
                {
                    "to": {
                        "type": "string",
                        "pattern": r"^[#@]?[^#@\s]+$",
                        "description": "#channel, @agent, or an agent name",
                    },
                    "text": TEXT,
                },
                ("to", "text"),
            ),
            tools.send_message,
        ),
        ToolSpec(
            "send_dm",
            "Send a direct message to one agent. Returns the message id, the conversation "
            "id and the relay's answer.",
            obj(
                {
                    "to": {
                        "type": "string",
                        "pattern": r"^@?[^#@\s]+$",
                        "description": "the agent's name (with or without @)",
                    },
                    "text": TEXT,
                },
                ("to", "text"),
            ),
            tools.send_dm,
        ),
        ToolSpec(
            "reply",
            "Reply in the thread of a message (its id from check_inbox or from a message "
            "you received); the conversation's members get the reply. Returns the reply's "
            "id and the relay's answer.",
            obj({"message_id": MESSAGE_ID, "text": TEXT}, ("message_id", "text")),
            tools.reply,
        ),
        ToolSpec(
            "check_inbox",
            "What is unread for you: channels and direct-message conversations with unread "
            f"messages (the newest up to {PER_CONVERSATION} each, with id, sender and "
            "text) and messages that mention you. Checking marks nothing read: call "
            "mark_read for what you have handled.",
            obj({}),
            tools.check_inbox,
        ),
        ToolSpec(
            "mark_read",
            "Mark messages read, so that check_inbox stops showing them. Give exactly one "
            "of: `message_ids`; `channel` (all unread in that #channel); "
            "`conversation_id` (all unread in that direct-message conversation, as "
            "check_inbox shows it).",
            obj(
                {
                    "message_ids": {
                        "type": "array",
                        "items": MESSAGE_ID,
                        "minItems": 1,
                        "maxItems": 100,
                        "uniqueItems": True,
                    },
                    "channel": {"type": "string", "minLength": 1, "description": "#channel"},
                    "conversation_id": {"type": "string", "minLength": 1},
                }
            ),
            tools.mark_read,
        ),
    ]


def message_view(message: dict[str, Any], mentions: set[str]) -> dict[str, Any]:
    """A message as check_inbox shows it: what a model needs to act on it."""
    view = {
        "id": message["id"],
        "from": message.get("agent_name"),
        "text": message.get("text"),
        "at": message.get("created_at"),
    }
    if message["id"] in mentions:
        view["mentions_you"] = True
    return view


class Messaging:
    def __init__(self, ctx: AgentContext) -> None:
        self.ctx = ctx
        self.client = ctx.client

    # -- sending --------------------------------------------------------------------------

    async def send_message(self, args: Arguments) -> Any:
        sent = await self.client.send(args["to"], args["text"])
        return {"message_id": sent.get("id"), "to": args["to"], "relay": sent}

    async def send_dm(self, args: Arguments) -> Any:
        sent = await self.client.send("@" + args["to"].removeprefix("@"), args["text"])
        return {
            "message_id": sent.get("id"),
            "conversation_id": sent.get("conversation_id"),
            "relay": sent,
        }

    async def reply(self, args: Arguments) -> Any:
        sent = await self.client.reply(args["message_id"], args["text"])
        return {"message_id": sent.get("id"), "thread_id": sent.get("thread_id"), "relay": sent}

    # -- reading --------------------------------------------------------------------------

    async def check_inbox(self, args: Arguments) -> Any:
        inbox = await self.client.inbox(limit=INBOX_LIMIT)
        mentions = {str(m["id"]) for m in inbox.get("mentions", [])}
        shown: set[str] = set()
        channels, dms = [], []
        for unread in inbox.get("unread_channels", []):
            name = str(unread["channel_name"])
            count = int(unread["unread_count"])
            found = await self._newest(self._channel_page(name), count)
            channels.append(_conversation({"channel": f"#{name}"}, count, found, mentions))
            shown.update(m["id"] for m in found)
        for unread in inbox.get("unread_dms", []):
            conversation = str(unread["conversation_id"])
            count = int(unread["unread_count"])
            found = await self._newest(self._dm_page(conversation), count)
            head = {"conversation_id": conversation, "from": unread.get("from")}
            dms.append(_conversation(head, count, found, mentions))
        others = [
            {**message_view(m, set()), "channel": f"#{m['channel_name']}"}
            for m in inbox.get("mentions", [])
            if m["id"] not in shown
        ]
        return {"channels": channels, "dms": dms, "mentions": others}

    async def _newest(self, page: Page, count: int) -> list[dict[str, Any]]:
        """The newest ``min(count, PER_CONVERSATION)`` messages from others, oldest first."""
        me, want = await self.ctx.name(), min(count, PER_CONVERSATION)
        found: list[dict[str, Any]] = []
        before: str | None = None
        for _ in range(MAX_PAGES):
            messages = await page(before)
            found = [m for m in messages if m.get("agent_name") != me] + found
            if len(found) >= want or len(messages) < PAGE:
                break
            before = messages[0]["id"]
        return found[len(found) - want :] if want else []

    def _channel_page(self, name: str, limit: int = PAGE) -> Page:
        return lambda before: self.client.channel_messages(name, limit=limit, before=before)

    def _dm_page(self, conversation_id: str, limit: int = PAGE) -> Page:
        return lambda before: self.client.dm_messages(conversation_id, limit=limit, before=before)

    # -- read state -----------------------------------------------------------------------

    async def mark_read(self, args: Arguments) -> Any:
        given = [key for key in ("message_ids", "channel", "conversation_id") if key in args]
        if len(given) != 1:
            raise ToolError(
                "invalid arguments for mark_read: give exactly one of message_ids, channel, "
                f"conversation_id (got {', '.join(given) or 'none'})"
            )
        if "message_ids" in args:
            return await self._mark_messages(args["message_ids"])
        if "channel" in args:
            name = str(args["channel"]).removeprefix("#")
            page = self._channel_page(name, 100)
            marked = await self._mark_all(page, "unread_channels", "channel_name", name)
            return {"channel": f"#{name}", "marked_read": marked}
        conversation = str(args["conversation_id"])
        page = self._dm_page(conversation, 100)
        marked = await self._mark_all(page, "unread_dms", "conversation_id", conversation)
        return {"conversation_id": conversation, "marked_read": marked}

    async def _mark_messages(self, ids: list[str]) -> Any:
        done: list[str] = []
        for message_id in ids:
            try:
                await self.client.mark_read(message_id)
            except RelayError as exc:
                before = f" (marked read before it: {', '.join(done)})" if done else ""
                raise ToolError(f"{message_id}: {exc.message}{before}") from None
            done.append(message_id)
        return {"marked_read": done}

    async def _mark_all(self, page: Page, section: str, key: str, value: str) -> int:
        """Mark the conversation's messages from others read, newest first, until the
        relay counts none unread there; how many it counted at first."""
        first = await self._unread_count(section, key, value)
        if first == 0:
            await page(None)  # no unread: still an error if there is no such conversation
            return 0
        me, before, left = await self.ctx.name(), None, first
        while left > 0:
            messages = await page(before)
            for message in messages:
                if message.get("agent_name") != me:
                    await self.client.mark_read(message["id"])
            if not messages:
                break
            before = messages[0]["id"]
            left = await self._unread_count(section, key, value)
        return first

    async def _unread_count(self, section: str, key: str, value: str) -> int:
        inbox = await self.client.inbox(limit=500)
        return sum(int(u["unread_count"]) for u in inbox.get(section, []) if u[key] == value)


def _conversation(
    head: dict[str, Any], count: int, found: list[dict[str, Any]], mentions: set[str]
) -> dict[str, Any]:
    entry = {**head, "unread": count, "messages": [message_view(m, mentions) for m in found]}
    if count > len(found):
        entry["older_unread_not_shown"] = count - len(found)
    return entry

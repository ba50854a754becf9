"""The daemon's side of its workspace: what ``workspace`` prints, and ``send`` to
``@agent`` / ``#channel`` through the relay as a participant of the workspace.

A sender (``--from``, default ``cli``, a human participant) is registered on first use;
its token is kept in ``relay/participants.json`` (mode 0600) in the data dir, by relay
URL, since the relay shows a token only once.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio

from ..exceptions import InvalidRequest
from ..fsutil import write_private
from ..node.hosting import RelayHost
from ..relay.client import RelayClient, RelayError
from ..relay.embedded import WorkspaceInfo

__all__ = ["RelayAccess"]


class RelayAccess:
    def __init__(self, info: WorkspaceInfo, host: RelayHost, relay_dir: Path) -> None:
        self.info, self.host = info, host
        self.client = RelayClient(info.relay_url, info.key)
        self._tokens_file = relay_dir / "participants.json"
        self._lock = anyio.Lock()

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.info.name,
            "key": self.info.key,
            "relay_url": self.info.relay_url,
            "node": self.host.link.name,
            "connected": self.host.link.connected.is_set(),
        }

    async def send(
        self, to: str, text: str, *, sender: str, mode: str, wait: bool, timeout: float
    ) -> dict[str, Any]:
        if not to.startswith(("@", "#")):
            raise InvalidRequest(f"to: @agent or #channel, not {to!r}")
        as_sender = self.client.as_agent(await self._token_of(sender))
        try:
            message = await as_sender.send(to, text, mode=mode)
            receipts = await as_sender.receipts(message["id"])
            if wait:
                receipts = await as_sender.wait_final(message["id"], timeout)
        finally:
            await as_sender.aclose()
        return {"message_id": message["id"], "to": to, "receipts": receipts}

    async def _token_of(self, name: str) -> str:
        async with self._lock:
            saved = self._saved()
            key = f"{self.info.relay_url} {name}"
            if key not in saved:
                try:
                    created = await self.client.register(name, kind="human")
                except RelayError as exc:
                    if exc.code == "agent_already_exists":
                        raise InvalidRequest(
                            f"--from {name}: a participant of that name exists and this"
                            f" daemon has no token for it (kept in {self._tokens_file})"
                        ) from None
                    raise
                saved[key] = created["token"]
                self._tokens_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                write_private(self._tokens_file, json.dumps(saved))
            return str(saved[key])

    def _saved(self) -> dict[str, str]:
        if not self._tokens_file.exists():
            return {}
        return dict(json.loads(self._tokens_file.read_text()))

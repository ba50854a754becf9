"""OpenCode's TUI in a PTY, with the HTTP server it hosts as the side channel.

The TUI is started with a fixed loopback ``--port`` and a random server password; the
driver follows that server's ``/global/event`` stream (see `OpenCodeChannel`) for the
session the TUI works in — the one it creates for the first prompt, or the one resumed.
Busy/idle, the evidence that a message was taken (a new user message in the session),
tool and file events and approvals are therefore exact; the screen (profile
``opencode.toml``) says when the TUI is ready. Steering aborts through the API.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import anyio

from ..contract import (
    DeliveryMode,
    Evidence,
    Fidelity,
    RelayMessage,
    SessionState,
    SignalSource,
)
from ..profiles import Profile
from .opencode_channel import OpenCodeChannel
from .terminal import TerminalDriver

__all__ = ["OpenCodeTuiDriver"]

S = SessionState
_EXACT_EVENTS = (
    "status.changed",
    "transcript.chunk",
    "tool.called",
    "tool.completed",
    "tool.failed",
    "tool.approval.requested",
    "file.changed",
    "command.started",
    "command.completed",
    "usage.updated",
    "turn.started",
    "turn.completed",
)


class OpenCodeTuiDriver(TerminalDriver):
    def __init__(
        self,
        *,
        profile: Profile,
        argv: list[str],
        cwd: Path,
        env: dict[str, str],
        base_url: str,
        password: str,
        resume: str | None = None,
    ) -> None:
        super().__init__(harness="opencode", profile=profile, argv=argv, cwd=cwd, env=env)
        self.capabilities = self.capabilities.model_copy(
            update={
                "idle_signal": SignalSource.PROTOCOL,
                "events": dict.fromkeys(_EXACT_EVENTS, Fidelity.EXACT),
            }
        )
        self.cwd = cwd
        self.base_url = base_url
        self.password = password
        self.resume = resume
        self._channel: OpenCodeChannel | None = None

    async def _side_channel(self) -> None:
        channel = OpenCodeChannel(
            base_url=self.base_url,
            password=self.password,
            username="opencode",
            port=self._require_port(),
            log=self._log,
            stream="/global/event",
            directory=self.cwd,
        )
        self._channel = channel
        try:
            await channel.wait_healthy()
            if self.resume:
                channel.adopt(self.resume)
            async with anyio.create_task_group() as tg:
                tg.start_soon(channel.follow, tg)
                await channel.connected.wait()
                self._output.notify()  # a delivery may wait on the channel
        finally:
            with anyio.CancelScope(shield=True):
                await channel.aclose()

    async def inject(self, message: RelayMessage, mode: DeliveryMode) -> Evidence:
        port = self._require_port()
        if mode == DeliveryMode.STEER and port.state == S.BUSY and self._channel is not None:
            await self._channel.abort()
            with contextlib.suppress(TimeoutError):
                # Still busy after that: the text goes in and the TUI queues it.
                await port.wait_state(lambda s: s != S.BUSY, 10.0)
            mode = DeliveryMode.WAIT
        return await super().inject(message, mode)

    # -- delivery evidence: a new user message in the session -----------------------------

    def _verify_mode(self, was_busy: bool) -> str:
        return "protocol"

    def _evidence_mark(self) -> tuple[int, ...]:
        count = self._channel.user_messages if self._channel else 0
        return (count, *super()._evidence_mark())

    def _evidence(self, verify: str, mark: tuple[int, ...]) -> bool:
        return self._channel is not None and self._channel.user_messages > mark[0]

    def _describe(self, verify: str, when: str) -> Evidence:
        return Evidence(kind="protocol_ack", detail=f"user message in the session {when}")

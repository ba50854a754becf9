"""OpenClaw's TUI (``openclaw tui``) in a PTY, in front of the session's own gateway.

The TUI is a client of the gateway, as the runtime is. The gateway the runtime starts
(the same as for a headless session) holds the agent session, and the runtime's own
connection to it gives the exact events, the idle signal and the delivery evidence.
Messages go in over that connection rather than being typed: the TUI shows them as they
run, and a person can still type into the TUI; the runs that starts are reported like
any other. The screen, raw keys and logs are the TUI's.

The TUI reads the gateway's port and token from the session's config, so that the token
never appears on a command line where other local users could read it. It is ready when
it shows itself connected. If it exits (a person quit it), the session ends.
"""

from __future__ import annotations

import re
import signal
from typing import Any

import anyio
from anyio.abc import TaskStatus

from ..aio import Notifier
from ..contract import SessionMode, SessionState
from ..observe.screen import ScreenModel, ScreenSnapshot
from ..transports.pty import PtyTransport
from .openclaw_gateway import OpenClawGatewayDriver

__all__ = ["OpenClawTuiDriver"]

S = SessionState
# The TUI's status line once its own connection is up: "gateway connected | idle".
_CONNECTED = re.compile(r"connected \| \w+")


class OpenClawTuiDriver(OpenClawGatewayDriver):
    mode = SessionMode.PTY
    capabilities = OpenClawGatewayDriver.capabilities.model_copy(update={"interactive": True})

    def __init__(self, *, tui_argv: list[str], rows: int = 40, cols: int = 120, **kw: Any) -> None:
        super().__init__(**kw)
        self.tui_argv = tui_argv
        self._screen = ScreenModel(cols, rows)
        self._drawn = Notifier()
        self._tui = PtyTransport(
            tui_argv, cwd=self.cwd, env=kw["env"], rows=rows, cols=cols, on_output=self._on_tui
        )

    # -- the terminal ---------------------------------------------------------------------------

    def screen(self) -> ScreenSnapshot:
        return self._screen.snapshot()

    async def send_keys(self, keys: bytes) -> None:
        await self._tui.write(keys)

    def logs(self) -> bytes:
        return self._screen.scrollback.bytes()

    def _on_tui(self, data: bytes) -> None:
        self._screen.feed(data)
        self._drawn.notify()

    # -- life ------------------------------------------------------------------------------------

    async def _before_ready(self) -> None:
        await self._require_tg().start(self._run_tui)
        handle = self._tui.handle
        while not _CONNECTED.search(self._screen.text()) and not (handle and handle.exited):
            await self._drawn.wait()

    async def _run_tui(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        await self._tui.run(task_status=task_status)
        self._drawn.notify()
        port = self._require_port()
        if port.state == S.STARTING:
            screen = self._screen.text().strip()[-500:]
            await port.fail(f"the openclaw TUI exited before it connected: {screen}")
        elif port.state != S.RELEASING:
            # A person quit the TUI: the session was that TUI, so it ends with it.
            self._log.info("openclaw_tui_exited")
            await super().graceful_exit()

    async def graceful_exit(self) -> None:
        handle = self._tui.handle
        if handle is not None and not handle.exited:
            handle.signal(signal.SIGTERM)
        await super().graceful_exit()

"""The terminal driver: any CLI in a PTY, read through its screen as a profile describes.

Output feeds a `ScreenModel`. While output flows the screen is classified at most every
`_EVAL_INTERVAL` (busy markers, dialogs, blocking prompts); once output has been quiet
for the profile's window it is classified again, and only then can it be idle. An
unrecognised screen is never idle. Without idle markers (the ``generic`` profile) quiet
alone means idle and any output means busy.

Injection follows the known-good recipe: the sanitized text as one bracketed paste, the
profile's delay, Enter as a separate write, then evidence — the screen turning busy, or
for an agent that was already busy, the screen changing. If there is none, only Enter is
sent again, never the text.
"""

from __future__ import annotations

import contextlib
import math
import re
from pathlib import Path
from time import monotonic

import anyio
from anyio.abc import TaskStatus

from ..aio import Notifier
from ..contract import (
    Capabilities,
    DeliveryMode,
    Evidence,
    Fidelity,
    RelayMessage,
    SessionMode,
    SessionState,
    SignalSource,
)
from ..exceptions import DeliveryFailed, TransportClosed
from ..logs import get_logger
from ..observe.screen import ScreenModel, ScreenSnapshot
from ..profiles import Dialog, Profile
from ..sanitize import bracketed_paste, typed
from ..transports.process import ProcessHandle
from ..transports.pty import PtyTransport
from .base import Driver, SessionPort

__all__ = ["TerminalDriver"]

_EVAL_INTERVAL = 0.05
_ESCAPES = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)|.)")
SCREEN = SignalSource.SCREEN
S = SessionState


class TerminalDriver(Driver):
    """Drives a CLI in a PTY according to a `Profile`."""

    mode = SessionMode.PTY

    def __init__(
        self,
        *,
        harness: str,
        profile: Profile,
        argv: list[str],
        cwd: Path,
        env: dict[str, str],
    ) -> None:
        self.harness = harness
        self.profile = profile
        self.argv = argv
        modes = [DeliveryMode.WAIT]
        if profile.inject.interrupt_keys:
            modes.append(DeliveryMode.STEER)
        if profile.inject.immediate:
            modes.append(DeliveryMode.IMMEDIATE)
        self.capabilities = Capabilities(
            delivery_modes=tuple(modes),
            events={"status.changed": Fidelity.INFERRED},
            idle_signal=SCREEN,
            interactive=True,
        )
        term = profile.terminal
        self._screen = ScreenModel(term.cols, term.rows, term.scrollback_bytes)
        self._transport = PtyTransport(
            argv, cwd=cwd, env=env, rows=term.rows, cols=term.cols, on_output=self._on_output
        )
        self._output = Notifier()
        self._port: SessionPort | None = None
        self._log = get_logger(harness=harness)
        self._verifying = 0
        self._busy_count = 0
        self._busy_flashes = 0
        self._answered: dict[int, int] = {}
        self._fail_reason: str | None = None

    @property
    def process(self) -> ProcessHandle | None:
        return self._transport.handle

    def screen(self) -> ScreenSnapshot:
        return self._screen.snapshot()

    async def send_keys(self, keys: bytes) -> None:
        await self._transport.write(keys)

    def logs(self) -> bytes:
        return self._screen.scrollback.bytes()

    def failure_detail(self) -> str | None:
        text = self._screen.text().strip()
        return text[-2000:] or None

    @property
    def output_bytes(self) -> int:
        return self._screen.total_bytes

    # -- life ------------------------------------------------------------------------------

    async def run(
        self, port: SessionPort, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        self._port = port
        self._log = self._log.bind(session=port.name)
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._watch)
            tg.start_soon(self._side_channel)
            await self._transport.run(task_status=task_status)
            tg.cancel_scope.cancel()

    async def _side_channel(self) -> None:
        """A subclass's own task while the session runs (reading a transcript, say)."""

    async def graceful_exit(self) -> None:
        for index, key in enumerate(self.profile.exit.keys):
            if index:
                await anyio.sleep(self.profile.exit.key_interval)  # the CLI's key timing
            try:
                await self._transport.write(key.encode())
            except TransportClosed:
                return

    def _on_output(self, data: bytes) -> None:
        self._screen.feed(data)
        if self._verifying and self._shows_busy(data):
            self._busy_flashes += 1
        if self._port is not None:
            self._port.activity()
        self._output.notify()

    def _shows_busy(self, data: bytes) -> bool:
        """Whether raw output names a busy marker: a turn can start and end within one
        read, and then the screen never shows it busy."""
        text = _ESCAPES.sub("", data.decode("utf-8", "replace"))
        return any(m.search(text) for m in self.profile.busy.markers)

    # -- reading the screen ------------------------------------------------------------------

    def _quiet_window(self) -> float:
        port = self._require_port()
        if port.state == S.STARTING and self.profile.ready.markers:
            return max(self.profile.ready.settle, 0.01)
        return self.profile.idle.quiet

    async def _watch(self) -> None:
        last_eval = -math.inf
        while True:
            await self._output.wait()
            while True:
                now = monotonic()
                if self._verifying or (
                    # While busy, only a quiet screen can say more (idle, a dialog);
                    # skipping looks at a flood of output keeps the screen model cheap.
                    self._require_port().state != S.BUSY and now - last_eval >= _EVAL_INTERVAL
                ):
                    await self._act(self._evaluate(quiet=False))
                    last_eval = now
                with anyio.move_on_after(self._quiet_window()) as scope:
                    await self._output.wait()
                if scope.cancelled_caught:
                    await self._act(self._evaluate(quiet=True))
                    last_eval = monotonic()
                    if not await self._settled_unrecognised():
                        break

    async def _settled_unrecognised(self) -> bool:
        """At start-up, a screen that settles without the ready marker (a dialog no
        profile knows) blocks the session, screen and all, until it changes. True when
        output came in the meantime (look at the screen again)."""
        port = self._require_port()
        if port.state != S.STARTING or not self.profile.ready.markers:
            return False
        with anyio.move_on_after(self.profile.ready.unknown_after) as scope:
            await self._output.wait()
        if not scope.cancelled_caught:
            return True
        port.set_state(
            S.BLOCKED,
            f"screen not recognised {self.profile.ready.unknown_after:g}s into start-up "
            "(a dialog the profile does not know?)",
            SCREEN,
        )
        return False

    async def _act(self, keys: bytes | None) -> None:
        """Send a dialog's answer, if the evaluation found one to give (or end a start
        that cannot succeed)."""
        if self._fail_reason:
            reason, self._fail_reason = self._fail_reason, None
            await self._require_port().fail(reason)
            return
        if keys:
            with contextlib.suppress(TransportClosed):
                await self._transport.write(keys)

    def _region(self) -> str:
        lines = self.profile.screen.bottom_lines
        return self._screen.bottom(lines) if lines else self._screen.text()

    def _evaluate(self, *, quiet: bool) -> bytes | None:
        """Classify the screen and move the state; return keys to send, if any."""
        port = self._require_port()
        if port.state in (S.RELEASING, S.EXITED, S.FAILED):
            return None
        full = self._screen.text()
        for index, dialog in enumerate(self.profile.dialogs):
            if dialog.pattern.search(full):
                # Answer only a settled screen, so one dialog gets one answer.
                return self._answer(index, dialog) if quiet else None
        for blocked in self.profile.blocked:
            if blocked.pattern.search(full):
                if blocked.fail and not self._ready_seen():
                    self._fail_reason = blocked.reason
                else:
                    port.set_state(S.BLOCKED, blocked.reason, SCREEN)
                return None
        region = self._region() if self.profile.screen.bottom_lines else full
        if port.state == S.STARTING or (port.state == S.BLOCKED and not self._ready_seen()):
            self._evaluate_start(region, quiet)
        else:
            self._evaluate_turn(region, quiet)
        return None

    def _ready_seen(self) -> bool:
        return self._require_port().idle_epoch > 0

    def _evaluate_start(self, region: str, quiet: bool) -> None:
        markers = self.profile.ready.markers
        if not quiet:
            return
        if markers and not any(m.search(region) for m in markers):
            return
        why = "ready marker shown" if markers else "first output, then quiet"
        self._require_port().set_state(S.READY, why, SCREEN)

    def _evaluate_turn(self, region: str, quiet: bool) -> None:
        port = self._require_port()
        idle_markers = self.profile.idle.markers
        if any(m.search(region) for m in self.profile.busy.markers):
            self._set_busy("busy marker shown")
        elif idle_markers and not any(m.search(region) for m in idle_markers):
            self._set_busy("screen not recognised as idle")
        elif quiet:
            why = "idle marker shown, output quiet" if idle_markers else "output quiet"
            port.set_state(S.IDLE, f"{why} {self.profile.idle.quiet:g}s", SCREEN)
        elif not idle_markers:
            self._set_busy("output")

    def _set_busy(self, reason: str) -> None:
        if self._require_port().set_state(S.BUSY, reason, SCREEN):
            self._busy_count += 1

    def _answer(self, index: int, dialog: Dialog) -> bytes | None:
        count = self._answered.get(index, 0)
        if count >= dialog.max_times:
            label = dialog.name or dialog.pattern.pattern
            why = f"dialog {label!r} still shown after {count} answer(s)"
            self._require_port().set_state(S.BLOCKED, why, SCREEN)
            return None
        self._answered[index] = count + 1
        self._log.info("dialog_answered", dialog=dialog.name or dialog.pattern.pattern)
        return dialog.keys.encode()

    # -- delivery ------------------------------------------------------------------------------

    async def inject(self, message: RelayMessage, mode: DeliveryMode) -> Evidence:
        port = self._require_port()
        inject = self.profile.inject
        if mode == DeliveryMode.STEER and port.state == S.BUSY and inject.interrupt_keys:
            await self._transport.write(inject.interrupt_keys.encode())
            with contextlib.suppress(TimeoutError):
                # Still busy after the bound: the text goes in anyway and the CLI queues it.
                await port.wait_state(lambda s: s != S.BUSY, inject.interrupt_timeout)
        was_busy = port.state == S.BUSY
        text = message.render()
        payload = bracketed_paste(text) if inject.method == "paste" else typed(text)
        try:
            await self._transport.write(payload)
            # The CLI needs a pause between a paste and Enter, or it takes Enter as part of
            # the paste (Codex's paste-burst detection, Claude's swallowed Enter).
            await anyio.sleep(inject.enter_delay)
            return await self._submit(verify=self._verify_mode(was_busy))
        except TransportClosed as exc:
            raise DeliveryFailed(f"terminal closed: {exc.message}", retryable=False) from exc

    def _verify_mode(self, was_busy: bool) -> str:
        if was_busy:
            return "change"  # a busy screen cannot turn busy; look for any change
        if self.profile.inject.verify:
            return self.profile.inject.verify
        has_markers = self.profile.busy.markers or self.profile.idle.markers
        return "busy" if has_markers else "change"

    async def _submit(self, *, verify: str) -> Evidence:
        inject = self.profile.inject
        self._verifying += 1
        try:
            for attempt in range(1 + inject.enter_retries):
                mark = self._evidence_mark()
                await self._transport.write(inject.enter.encode())
                with anyio.move_on_after(inject.verify_timeout):
                    while not self._evidence(verify, mark):
                        await self._output.wait()
                if self._evidence(verify, mark):
                    return self._describe(verify, f"after Enter #{attempt + 1}")
        finally:
            self._verifying -= 1
        raise DeliveryFailed(
            f"no sign the agent took the message after {1 + inject.enter_retries} Enter "
            f"press(es) ({verify} check, {inject.verify_timeout:g}s each); the text was typed "
            "once and may be waiting in the input box",
            retryable=False,
        )

    def _evidence_mark(self) -> tuple[int, ...]:
        """Counters that evidence of a submitted message must move past."""
        return (self._busy_count + self._busy_flashes, self._screen.version)

    def _evidence(self, verify: str, mark: tuple[int, ...]) -> bool:
        if verify == "busy":
            return self._busy_count + self._busy_flashes > mark[0]
        return self._screen.version > mark[1]

    def _describe(self, verify: str, when: str) -> Evidence:
        if verify == "busy":
            return Evidence(kind="screen_busy", detail=f"screen turned busy {when}")
        return Evidence(kind="screen_change", detail=f"screen changed {when}")

    def resize(self, rows: int, cols: int) -> None:
        self._transport.resize(rows, cols)
        self._screen.resize(cols, rows)

    def _require_port(self) -> SessionPort:
        assert self._port is not None, "driver not running"
        return self._port

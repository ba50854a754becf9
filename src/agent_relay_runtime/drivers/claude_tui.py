"""Claude Code's TUI in a PTY, with hooks as the side channel that makes it exact.

The screen (profile ``claude.toml``) still says when the TUI is ready and shows dialogs;
hooks, passed with ``--settings`` (the user's own settings files are never touched),
report to the runtime's callback URL:

- ``UserPromptSubmit`` → busy, and the evidence that an injected message was taken;
- ``Stop`` → idle; ``Notification`` (``permission_prompt``) → blocked;
- ``PreToolUse`` / ``PostToolUse`` / ``PostToolUseFailure`` → tool.*, command.*, and
  file.changed for Write/Edit;
- ``PermissionRequest`` → the session's approval policy answers instead of the dialog;
- each hook's ``transcript_path``: the session's JSONL transcript, read for the
  assistant's text.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio

from ..aio import Notifier
from ..contract import Evidence, Fidelity, SessionState, SignalSource
from ..events import (
    CommandCompleted,
    CommandStarted,
    FileChanged,
    ToolCalled,
    ToolCompleted,
    ToolFailed,
    TranscriptChunk,
    TurnCompleted,
    TurnStarted,
)
from ..observe.transcript import JsonlTail
from ..profiles import Profile
from .terminal import TerminalDriver

__all__ = ["ClaudeTuiDriver", "hook_settings"]

H = SignalSource.HOOK
# Claude writes its transcript file behind the hooks (buffered, on a timer): at the Stop
# hook the turn's texts may not be there yet. The turn ends when they are, or after this.
_TRANSCRIPT_LAG = 3.0
_TRANSCRIPT_POLL = 0.02
S = SessionState
_FILE_TOOLS = {"Write": "written", "Edit": "modified", "MultiEdit": "modified"}
_HOOKED = (
    "SessionStart",
    "UserPromptSubmit",
    "PreToolUse",
    "PostToolUse",
    "PostToolUseFailure",
    "Notification",
    "Stop",
    "SessionEnd",
)
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
    "turn.started",
    "turn.completed",
)


def hook_settings(url: str, approval_timeout: float) -> dict[str, Any]:
    """The ``--settings`` document that sends every hook the driver reads to ``url``."""

    def to_url(timeout: float) -> list[dict[str, Any]]:
        return [{"hooks": [{"type": "http", "url": url, "timeout": timeout}]}]

    hooks = {event: to_url(10) for event in _HOOKED}
    # A permission decision may wait for a person: the hook must outwait the approval.
    hooks["PermissionRequest"] = to_url(approval_timeout + 30)
    return {"hooks": hooks}


class ClaudeTuiDriver(TerminalDriver):
    def __init__(
        self, *, profile: Profile, argv: list[str], cwd: Path, env: dict[str, str]
    ) -> None:
        super().__init__(harness="claude", profile=profile, argv=argv, cwd=cwd, env=env)
        self.capabilities = self.capabilities.model_copy(
            update={
                "idle_signal": SignalSource.HOOK,
                "events": dict.fromkeys(_EXACT_EVENTS, Fidelity.EXACT),
            }
        )
        self._submits = 0
        self._turn = 0
        self._transcript = JsonlTail()
        self._reported_early: list[str] = []
        self._last_reported: str | None = None
        self._turn_texts: list[str] = []  # assistant texts read in the running turn
        self._stopping: tuple[str, ...] | None = None  # a Stop hook's last message, pending
        self._stop_heard = Notifier()

    # -- delivery evidence: the UserPromptSubmit hook -----------------------------------------

    def _verify_mode(self, was_busy: bool) -> str:
        # While a turn runs, Claude queues the text and submits it (hook) only when the turn
        # ends: the queued text showing on screen is the evidence then.
        return "change" if was_busy else "hook"

    def _evidence_mark(self) -> tuple[int, ...]:
        return (self._submits, *super()._evidence_mark())

    def _evidence(self, verify: str, mark: tuple[int, ...]) -> bool:
        if verify == "hook":
            return self._submits > mark[0]
        return super()._evidence(verify, mark[1:])

    def _describe(self, verify: str, when: str) -> Evidence:
        if verify == "hook":
            return Evidence(kind="hook", detail=f"UserPromptSubmit hook {when}")
        return super()._describe(verify, when)

    # -- hooks ------------------------------------------------------------------------------------

    async def on_hook(self, payload: dict[str, Any]) -> dict[str, Any] | None:
        """Handle one hook call (the body Claude POSTs); the answer goes back to Claude."""
        port = self._require_port()
        port.activity()
        event = str(payload.get("hook_event_name"))
        if payload.get("session_id"):
            port.set_conversation(str(payload["session_id"]))
        if payload.get("transcript_path"):
            self._transcript.follow(Path(str(payload["transcript_path"])))
        answer = None
        if event == "UserPromptSubmit":
            self._prompt_submitted(str(payload.get("prompt", "")))
        elif event == "PermissionRequest":
            answer = await self._permission(payload)
        elif event in ("PreToolUse", "PostToolUse", "PostToolUseFailure"):
            self._tool_hook(event, payload)
        elif event == "Notification":
            if payload.get("notification_type") == "permission_prompt":
                port.set_state(S.BLOCKED, str(payload.get("message") or "permission prompt"), H)
        elif event == "Stop":
            last = payload.get("last_assistant_message")
            self._stopping = (last,) if isinstance(last, str) and last else ()
            self._stop_heard.notify()
        self._read_transcript()
        self._output.notify()  # wake a delivery waiting for this evidence
        return answer

    async def _side_channel(self) -> None:
        """End each turn once the transcript holds the Stop hook's last message, so that
        every text of the turn is reported before ``turn.completed`` and idle."""
        while True:
            if self._stopping is None:
                await self._stop_heard.wait()
                continue
            with anyio.move_on_after(_TRANSCRIPT_LAG):
                while self._stopping and not set(self._stopping) <= set(self._turn_texts):
                    self._read_transcript()
                    # Nothing tells when Claude flushes the file: look again shortly.
                    await anyio.sleep(_TRANSCRIPT_POLL)
            self._end_turn()

    def _end_turn(self) -> None:
        """The pending Stop: report what the transcript has (and the hook's last message
        if the file is behind), then idle."""
        if self._stopping is None:
            return
        stopping, self._stopping = self._stopping, None
        self._read_transcript()
        for text in stopping:
            self._last_message(text)
        port = self._require_port()
        if port.set_state(S.IDLE, "Stop hook", H):
            port.emit(TurnCompleted, turn=self._turn, outcome="completed")

    def _prompt_submitted(self, prompt: str) -> None:
        port = self._require_port()
        self._end_turn()  # a prompt typed in the TUI before the transcript caught up
        self._turn_texts.clear()
        self._submits += 1
        port.emit(TranscriptChunk, role="user", text=prompt)
        if port.set_state(S.BUSY, "UserPromptSubmit hook", H):
            self._turn += 1
            port.emit(TurnStarted, turn=self._turn)

    def _tool_hook(self, event: str, payload: dict[str, Any]) -> None:
        port = self._require_port()
        call_id = str(payload.get("tool_use_id"))
        tool = str(payload.get("tool_name"))
        tool_input = payload.get("tool_input") or {}
        if event == "PreToolUse":
            port.emit(ToolCalled, call_id=call_id, tool=tool, input=tool_input)
            if tool == "Bash":
                port.emit(CommandStarted, call_id=call_id, command=str(tool_input.get("command")))
            return
        failed = event == "PostToolUseFailure"
        response = payload.get("error") if failed else payload.get("tool_response")
        if failed:
            port.emit(ToolFailed, call_id=call_id, tool=tool, error=response)
        else:
            port.emit(ToolCompleted, call_id=call_id, tool=tool, output=response)
        if tool == "Bash":
            output = response.get("stdout") if isinstance(response, dict) else response
            port.emit(
                CommandCompleted,
                call_id=call_id,
                command=str(tool_input.get("command")),
                output=None if output is None else str(output),
                failed=failed,
            )
        elif tool in _FILE_TOOLS and not failed and tool_input.get("file_path"):
            port.emit(
                FileChanged,
                path=str(tool_input["file_path"]),
                change=_FILE_TOOLS[tool],
                call_id=call_id,
            )

    async def _permission(self, payload: dict[str, Any]) -> dict[str, Any]:
        decision = await self._require_port().request_approval(
            str(payload.get("tool_name")),
            payload.get("tool_input") or {},
            call_id=payload.get("tool_use_id"),
        )
        verdict: dict[str, Any] = {"behavior": decision}
        if decision == "deny":
            verdict["message"] = "denied by the agent-relay-runtime policy"
        return {"hookSpecificOutput": {"hookEventName": "PermissionRequest", "decision": verdict}}

    def _last_message(self, text: str) -> None:
        """The Stop hook names the turn's last reply, which the transcript file may not
        hold yet: report it now, and skip it when the file catches up."""
        if text not in self._turn_texts and text != self._last_reported:
            self._require_port().emit(TranscriptChunk, role="assistant", text=text)
            self._reported_early.append(text)
            self._last_reported = text

    def _read_transcript(self) -> None:
        port = self._require_port()
        for record in self._transcript.read_new():
            if record.get("type") != "assistant":
                continue
            for block in (record.get("message") or {}).get("content") or []:
                if block.get("type") == "text" and block.get("text"):
                    text = str(block["text"])
                    if text in self._reported_early:
                        self._reported_early.remove(text)
                        continue
                    port.emit(TranscriptChunk, role="assistant", text=text)
                    self._last_reported = text
                    self._turn_texts.append(text)
                elif block.get("type") == "thinking" and block.get("thinking"):
                    port.emit(TranscriptChunk, role="thinking", text=str(block["thinking"]))

"""Codex's TUI in a PTY, with its rollout file as the side channel that makes it exact.

Codex appends every turn to ``$CODEX_HOME/sessions/YYYY/MM/DD/rollout-…-<thread>.jsonl``.
The screen (profile ``codex.toml``) says when the TUI is ready and shows dialogs; the
rollout says the rest: ``task_started``/``task_complete`` (busy/idle, transcript signal),
the user message that is the evidence of a delivery, agent messages, command executions,
file changes and token counts.

The file is read when the screen changes (at most every `_READ_EVERY` s), after output
goes quiet, and, while a turn runs, every `_BUSY_POLL` s — never while the TUI is idle.
"""

from __future__ import annotations

import shlex
from datetime import UTC, datetime
from pathlib import Path
from time import monotonic
from typing import Any

import anyio

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
    UsageUpdated,
)
from ..observe.transcript import JsonlTail
from ..profiles import Profile
from .terminal import TerminalDriver

__all__ = ["CodexTuiDriver"]

T = SignalSource.TRANSCRIPT
S = SessionState
_READ_EVERY = 0.1
_BUSY_POLL = 0.5
_CHANGE = {"add": "created", "delete": "deleted", "update": "modified"}
_EXACT_EVENTS = (
    "status.changed",
    "transcript.chunk",
    "tool.called",
    "tool.completed",
    "tool.failed",
    "file.changed",
    "command.started",
    "command.completed",
    "usage.updated",
    "turn.started",
    "turn.completed",
)


class CodexTuiDriver(TerminalDriver):
    def __init__(
        self,
        *,
        profile: Profile,
        argv: list[str],
        cwd: Path,
        env: dict[str, str],
        codex_home: Path,
        thread_id: str | None = None,
    ) -> None:
        super().__init__(harness="codex", profile=profile, argv=argv, cwd=cwd, env=env)
        self.capabilities = self.capabilities.model_copy(
            update={
                "idle_signal": SignalSource.TRANSCRIPT,
                "events": dict.fromkeys(_EXACT_EVENTS, Fidelity.EXACT),
            }
        )
        self.cwd = cwd
        self.sessions_dir = codex_home / "sessions"
        self.thread_id = thread_id
        self._since = datetime.now(UTC).timestamp()
        self._rollout = JsonlTail()
        self._last_read = 0.0
        self._user_messages = 0
        self._turn = 0

    # -- reading the rollout ----------------------------------------------------------------

    def _on_output(self, data: bytes) -> None:
        super()._on_output(data)
        if monotonic() - self._last_read >= _READ_EVERY:
            self._read_rollout()

    def _evaluate(self, *, quiet: bool) -> bytes | None:
        keys = super()._evaluate(quiet=quiet)
        if quiet:
            self._read_rollout()
        return keys

    async def _side_channel(self) -> None:
        port = self._require_port()
        while True:
            await port.wait_state(lambda s: s == S.BUSY, None)
            # A turn's end can be written after the screen settled: look again while busy.
            while port.state == S.BUSY:
                self._read_rollout()
                await anyio.sleep(_BUSY_POLL)

    def _find_rollout(self) -> Path | None:
        """This session's rollout: by thread id when known, else the newest one for our
        working directory that began after we started."""
        pattern = f"rollout-*{self.thread_id}.jsonl" if self.thread_id else "rollout-*.jsonl"
        candidates = sorted(
            self.sessions_dir.glob(f"*/*/*/{pattern}"), key=lambda p: p.stat().st_mtime
        )
        for path in reversed(candidates):
            if self.thread_id or (path.stat().st_mtime >= self._since and self._ours(path)):
                return path
        return None

    def _ours(self, path: Path) -> bool:
        first = JsonlTail(path).read_new()[:1]
        meta = first[0].get("payload", {}) if first else {}
        return bool(meta.get("cwd")) and Path(str(meta["cwd"])) == self.cwd

    def _read_rollout(self) -> None:
        self._last_read = monotonic()
        if self._rollout.path is None:
            found = self._find_rollout()
            if found is None:
                return
            self._rollout.follow(found)
        for record in self._rollout.read_new():
            payload = record.get("payload") or {}
            if record.get("type") == "session_meta" and payload.get("id"):
                self.thread_id = str(payload["id"])
                self._require_port().set_conversation(self.thread_id)
            elif record.get("type") == "event_msg":
                self._on_event(payload)
        self._output.notify()  # a delivery may be waiting for what was just read

    def _on_event(self, payload: dict[str, Any]) -> None:
        port = self._require_port()
        kind = payload.get("type")
        if kind == "task_started":
            if port.set_state(S.BUSY, "task_started in the rollout", T):
                self._turn += 1
                port.emit(TurnStarted, turn=self._turn)
        elif kind in ("task_complete", "turn_aborted"):
            outcome = "completed" if kind == "task_complete" else "interrupted"
            if port.set_state(S.IDLE, f"{kind} in the rollout", T):
                duration = payload.get("duration_ms")
                port.emit(
                    TurnCompleted,
                    turn=self._turn,
                    outcome=outcome,
                    duration_ms=float(duration) if isinstance(duration, int | float) else None,
                )
        elif kind == "item_completed":
            self._on_item(payload.get("item") or {})
        elif kind == "token_count":
            total = (payload.get("info") or {}).get("total_token_usage") or {}
            port.emit(
                UsageUpdated,
                input_tokens=int(total.get("input_tokens") or 0),
                output_tokens=int(total.get("output_tokens") or 0),
                cache_read_tokens=int(total.get("cached_input_tokens") or 0),
                cache_write_tokens=int(total.get("cache_write_input_tokens") or 0),
            )

    def _on_item(self, item: dict[str, Any]) -> None:
        port = self._require_port()
        kind, item_id = item.get("type"), str(item.get("id"))
        texts = "".join(
            str(c.get("text", "")) for c in item.get("content") or [] if isinstance(c, dict)
        )
        if kind == "UserMessage":
            self._user_messages += 1
            port.emit(TranscriptChunk, role="user", text=texts)
        elif kind == "AgentMessage":
            port.emit(TranscriptChunk, role="assistant", text=texts)
        elif kind == "Reasoning" and texts:
            port.emit(TranscriptChunk, role="thinking", text=texts)
        elif kind == "CommandExecution":
            self._command(item, item_id)
        elif kind == "FileChange":
            changes = item.get("changes") or {}
            port.emit(
                ToolCalled, call_id=item_id, tool="apply_patch", input={"paths": list(changes)}
            )
            if item.get("status") != "completed":
                port.emit(ToolFailed, call_id=item_id, tool="apply_patch", error=item.get("stderr"))
                return
            for path, change in changes.items():
                kind_of = _CHANGE.get(str((change or {}).get("type")), "modified")
                port.emit(FileChanged, path=str(path), change=kind_of, call_id=item_id)
            port.emit(ToolCompleted, call_id=item_id, tool="apply_patch", output=item.get("stdout"))

    def _command(self, item: dict[str, Any], item_id: str) -> None:
        port = self._require_port()
        command = item.get("command")
        text = shlex.join(command) if isinstance(command, list) else str(command)
        failed = item.get("status") != "completed" or item.get("exit_code") not in (0, None)
        output = item.get("aggregated_output")
        port.emit(ToolCalled, call_id=item_id, tool="shell", input={"command": text})
        port.emit(CommandStarted, call_id=item_id, command=text)
        port.emit(
            CommandCompleted,
            call_id=item_id,
            command=text,
            exit_code=item.get("exit_code"),
            output=output,
            failed=failed,
        )
        done = ToolFailed if failed else ToolCompleted
        port.emit(done, call_id=item_id, tool="shell", **{"error" if failed else "output": output})

    # -- delivery evidence: the user message in the rollout ------------------------------------

    def _verify_mode(self, was_busy: bool) -> str:
        return "transcript"

    def _evidence_mark(self) -> tuple[int, ...]:
        return (self._user_messages, *super()._evidence_mark())

    def _evidence(self, verify: str, mark: tuple[int, ...]) -> bool:
        if monotonic() - self._last_read >= _READ_EVERY:
            self._read_rollout()
        return self._user_messages > mark[0]

    def _describe(self, verify: str, when: str) -> Evidence:
        return Evidence(kind="transcript", detail=f"user message in the rollout file {when}")

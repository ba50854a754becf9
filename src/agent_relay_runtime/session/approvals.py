"""Tool approvals that arrive through a protocol, answered by a policy or a person.

A driver whose CLI asks before running a tool (Claude's ``can_use_tool``, Codex's
``requestApproval``, OpenCode's ``permission.asked``) calls `Approvals.request`. It emits
``tool.approval.requested``; the session's policy answers at once (``allow``/``deny``),
or with ``ask`` the session is ``blocked`` until someone answers through the control API
(``approve``) or the timeout denies it. Every answer is a ``tool.approval.resolved``
event that says who decided.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

import anyio

from ..contract import new_id
from ..events import ApprovalRequested, ApprovalResolved
from ..exceptions import InvalidRequest

__all__ = ["ApprovalPolicy", "Approvals", "Decision"]

Decision = Literal["allow", "deny"]


class ApprovalPolicy(StrEnum):
    ASK = "ask"
    ALLOW = "allow"
    DENY = "deny"


@dataclass
class _Pending:
    approval_id: str
    tool: str
    input: dict[str, Any]
    reason: str | None
    done: anyio.Event = field(default_factory=anyio.Event)
    decision: Decision = "deny"
    by: str = "timeout"

    def view(self) -> dict[str, Any]:
        return {
            "approval_id": self.approval_id,
            "tool": self.tool,
            "input": self.input,
            "reason": self.reason,
        }


class Approvals:
    """The pending approvals of one session."""

    def __init__(
        self,
        *,
        policy: ApprovalPolicy,
        timeout: float,
        emit: Callable[..., Any],
        waiting: Callable[[str | None], None],
    ) -> None:
        self.policy = policy
        self.timeout = timeout
        self._emit = emit
        self._waiting = waiting
        self._pending: dict[str, _Pending] = {}

    def pending(self) -> list[dict[str, Any]]:
        return [p.view() for p in self._pending.values()]

    async def request(
        self,
        tool: str,
        tool_input: dict[str, Any],
        *,
        reason: str | None = None,
        call_id: str | None = None,
    ) -> Decision:
        """Ask, and wait for the answer (policy, person, or timeout)."""
        item = _Pending(new_id("apr"), tool, tool_input, reason)
        self._emit(
            ApprovalRequested,
            approval_id=item.approval_id,
            tool=tool,
            input=tool_input,
            reason=reason,
            call_id=call_id,
            policy=self.policy.value,
        )
        if self.policy != ApprovalPolicy.ASK:
            item.decision, item.by = self.policy.value, "policy"  # type: ignore[assignment]
        else:
            self._pending[item.approval_id] = item
            self._waiting(f"approval requested for {tool} ({item.approval_id})")
            try:
                with anyio.move_on_after(self.timeout):
                    await item.done.wait()
            finally:
                del self._pending[item.approval_id]
                self._waiting(self._describe_next())
        self._emit(
            ApprovalResolved,
            approval_id=item.approval_id,
            tool=tool,
            decision=item.decision,
            by=item.by,
        )
        return item.decision

    def answer(self, approval_id: str, decision: Decision, by: str = "user") -> None:
        item = self._pending.get(approval_id)
        if item is None:
            raise InvalidRequest(f"no pending approval {approval_id!r}")
        item.decision, item.by = decision, by
        item.done.set()

    def _describe_next(self) -> str | None:
        for item in self._pending.values():
            return f"approval requested for {item.tool} ({item.approval_id})"
        return None

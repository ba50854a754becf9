"""Harnesses: how each kind of agent becomes a session.

Code harnesses (``claude``) know a structured protocol; every other name is a profile in
``harnesses/*.toml`` run by the terminal driver. `HarnessRegistry` finds either by name.
"""

from __future__ import annotations

from ..contract import SessionSpec
from ..exceptions import UnknownHarness
from ..profiles import ProfileRegistry
from ..session.core import Session
from .claude import ClaudeHarness
from .codex import CodexHarness
from .context import LaunchContext
from .openclaw import OpenClawHarness
from .opencode import OpenCodeHarness
from .terminal import TerminalHarness

__all__ = [
    "ClaudeHarness",
    "CodexHarness",
    "HarnessRegistry",
    "LaunchContext",
    "OpenClawHarness",
    "OpenCodeHarness",
    "SessionHarness",
    "TerminalHarness",
]

SessionHarness = ClaudeHarness | CodexHarness | OpenCodeHarness | OpenClawHarness | TerminalHarness


class HarnessRegistry:
    """Looks harnesses up by name: code harnesses first, then profiles."""

    def __init__(self, profiles: ProfileRegistry) -> None:
        self.profiles = profiles
        self._code: dict[str, SessionHarness] = {
            "claude": ClaudeHarness(),
            "codex": CodexHarness(),
            "opencode": OpenCodeHarness(),
            "openclaw": OpenClawHarness(),
        }

    def names(self) -> list[str]:
        return sorted(set(self._code) | set(self.profiles.names()))

    def get(self, name: str) -> SessionHarness:
        if name in self._code:
            return self._code[name]
        if self.profiles.files(name):
            return TerminalHarness(name)
        raise UnknownHarness(f"unknown harness {name!r} (known: {', '.join(self.names())})")

    async def create(self, spec: SessionSpec, ctx: LaunchContext) -> Session:
        return await self.get(spec.harness).create(spec, ctx)

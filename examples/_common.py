"""What the examples share: the fake-or-real switch, a workspace in a temp dir, the fake
agents' MCP directive, and waiting for an event.

By default agents run the fake Claude Code in ``fixtures/fake_agents`` (no account, no
network): a fake does what the directives in its messages say, e.g.
``mcp:agent-relay/send_message/<base64url JSON>`` calls that tool of the relay's MCP
server. With ``--real`` (or ``AGENT_RELAY_EXAMPLES_REAL=1``) they run the ``claude`` on
your PATH, and get the plain-English version of each task instead.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import tempfile
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

import anyio

from agent_relay_runtime.logs import configure_logging
from agent_relay_runtime.sdk import AgentRelay, Selector

ROOT = Path(__file__).resolve().parents[1]
FAKE_CLAUDE = ROOT / "fixtures" / "fake_agents" / "fake_claude_stream.py"
REAL = "--real" in sys.argv[1:] or os.environ.get("AGENT_RELAY_EXAMPLES_REAL") == "1"
# claude.create(**CLAUDE): the fake's path as the command, or the real `claude` on PATH.
CLAUDE: dict[str, Any] = {} if REAL else {"command": str(FAKE_CLAUDE)}
TIMEOUT = 600.0 if REAL else 60.0


def task(*, fake: Iterable[str], real: str) -> str:
    """An agent's task: directives for the fake, or ``real`` for a real model."""
    return real if REAL else " ".join(fake)


def mcp(tool: str, **args: Any) -> str:
    """The fake's directive to call ``tool`` of the relay's MCP server with ``args``."""
    if not args:
        return f"mcp:agent-relay/{tool}"
    encoded = base64.urlsafe_b64encode(json.dumps(args).encode()).decode().rstrip("=")
    return f"mcp:agent-relay/{tool}/{encoded}"


class Expect:
    """The first event ``selector`` matches from now on: listen first, then act."""

    def __init__(self, relay: AgentRelay, selector: str | Selector) -> None:
        self.event: dict[str, Any] | None = None
        self._seen = anyio.Event()
        self._remove = relay.add_listener(selector, self._on_event)

    def _on_event(self, event: dict[str, Any]) -> None:
        if self.event is None:
            self.event = event
            self._seen.set()
            self._remove()

    async def wait(self) -> dict[str, Any]:
        await self._seen.wait()
        assert self.event is not None
        return self.event


class ActionEnd(Expect):
    """How the next invocation of ``action`` ends: `output` is its record, or raises."""

    def __init__(self, relay: AgentRelay, action: str) -> None:
        super().__init__(relay, Selector(("action.completed", "action.failed"), action=action))

    async def output(self) -> dict[str, Any]:
        record = (await self.wait())["data"]
        if record["status"] != "completed":
            raise RuntimeError(f"{record['action']} failed: {record['error']}")
        return dict(record)


def run(example: Callable[[AgentRelay, Path], Awaitable[None]], workspace: str) -> None:
    """Run ``example(relay, tmp)`` on an embedded workspace in a temp dir; exit 1 on
    failure. Closing the relay releases every agent the example spawned."""

    async def main(tmp: Path) -> None:
        relay = await AgentRelay.create_workspace(workspace, data_dir=tmp / "relay")
        async with relay:
            with anyio.fail_after(TIMEOUT):
                await example(relay, tmp)

    configure_logging("warning")  # the runtime's own log: only what went wrong
    print(f"[{'real claude' if REAL else 'fake claude'}] workspace {workspace!r}")
    with tempfile.TemporaryDirectory(prefix="relay-example-") as tmp:
        try:
            anyio.run(main, Path(tmp))
        except Exception as exc:
            print(f"FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
            sys.exit(1)
    print("OK")

"""Examples with ``--real``: the real Claude Code, offline against the scripted model
server, in a HOME of its own (the example does not isolate the CLI; the user's HOME is
not touched)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from ..test_examples import run_example
from .conftest import CLI_BIN, claude_env, cli_path

pytestmark = pytest.mark.realcli


def action_call(tool: str, **given: Any) -> dict[str, Any]:
    """A scripted turn in which the model calls one of the relay's action tools."""
    return {"text": "On it.", "tool": {"name": f"mcp__agent-relay__{tool}", "input": given}}


PR_TITLE = "Fix the flaky login test"
CASES = {
    "spawn_claude.py": (
        [action_call("action_spawn-claude")],
        ["spawn-claude invoked by lead -> {'agent_id': 'agt_", "to @lead: delivered"],
    ),
    "open_pr.py": (
        [action_call("action_github_open_pr", title=PR_TITLE, branch="fix", body="Wait.")],
        [f"Opened PR #1: {PR_TITLE}"],
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_an_example_runs_on_the_real_claude(name: str, model_server: Any, tmp_path: Path) -> None:
    cli_path("claude")  # skips when it is not installed
    turns, expected = CASES[name]
    model_server.add_turns(*turns)
    home = tmp_path / "home"
    home.mkdir()
    env = {
        **claude_env(model_server.url), "HOME": str(home),
        "PATH": f"{CLI_BIN}{os.pathsep}{os.environ['PATH']}",
    }  # fmt: skip
    done = run_example(name, "--real", env=env)
    assert done.returncode == 0, (done.stdout, done.stderr)
    for line in expected:
        assert line in done.stdout, done.stdout
    assert done.stdout.rstrip().endswith("OK")

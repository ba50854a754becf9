"""The examples in examples/, each run as a user runs it (one command, the fake agents by
default): exit 0, the lines that show it worked, and no process left behind (the
autouse leak check sees the examples' sessions: they inherit this run's marker)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT

EXAMPLES = ROOT / "examples"


def run_example(
    name: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    given = {k: v for k, v in os.environ.items() if k != "AGENT_RELAY_EXAMPLES_REAL"}
    return subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        env={**given, **(env or {})}, cwd=ROOT, capture_output=True, text=True, timeout=100,
    )  # fmt: skip


EXPECTED = {
    "spawn_claude.py": [
        "spawn-claude invoked by lead -> {'agent_id': 'agt_",
        "'handle': 'claude-1'}",
        "DM 'Spawned claude-1' to @lead: delivered",
    ],
    "submit_vote.py": [
        "vote from alice: approve=True (one fast tool)",
        "vote from carol: approve=False (too many new warnings)",
        "tally posted to #review: adopt-ruff accepted: 2 for, 1 against",
        "  alice: delivered\n",
        "  bob: delivered\n",
        "  carol: delivered\n",
    ],
    "open_pr.py": [
        "github.open_pr -> {'number': 1, 'url': 'https://github.example/pulls/1'}",
        '"branch": "fix-login"',
        "DM to @dev: 'Opened PR #1: Fix the flaky login test' delivered",
    ],
    "lead_and_worker.py": [
        "lead created worker via agent.create",
        "worker -> @lead: One typo: teh -> the.\n",
        "lead -> #ops: Lead: the worker found one typo (teh).",
        "released worker: True",
    ],
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("example", sorted(EXPECTED))
def test_example_runs_on_the_fakes(example: str) -> None:
    done = run_example(example)
    output = done.stdout
    assert done.returncode == 0, output + done.stderr
    assert output.startswith("[fake claude] workspace "), output
    for line in EXPECTED[example]:
        assert line in output, f"{line!r} not in:\n{output}"
    assert output.endswith("\nOK\n"), output


def test_examples_are_documented() -> None:
    readme = (EXAMPLES / "README.md").read_text()
    for example in EXPECTED:
        assert f"python examples/{example}" in readme
        assert f"python examples/{example}" in (EXAMPLES / example).read_text()


@pytest.mark.timeout(120)
def test_a_failing_example_exits_non_zero_and_leaves_nothing(tmp_path: Path) -> None:
    """--real without a `claude` on PATH: the spawn fails, the example says why, exit 1."""
    done = run_example("spawn_claude.py", "--real", env={"PATH": str(tmp_path)})
    assert done.returncode == 1, done.stdout + done.stderr
    assert "FAILED:" in done.stderr and "harness 'claude' not installed" in done.stderr
    assert "OK" not in done.stdout

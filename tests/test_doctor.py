"""doctor: which CLIs are installed, their versions, and whether the suite passed on them."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from agent_relay_runtime import doctor, versions


def fake_cli(directory: Path, name: str, output: str, code: int = 0) -> None:
    path = directory / name
    path.write_text(f"#!/bin/sh\necho '{output}'\nexit {code}\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def test_doctor_reports_versions_and_whether_they_were_tested(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    claude_version = versions.tested_versions()["claude"][0]
    fake_cli(bin_dir, "claude", f"{claude_version} (Claude Code)")
    fake_cli(bin_dir, "codex", "codex-cli 0.1.0")
    fake_cli(bin_dir, "aider", "broken", code=3)
    monkeypatch.setenv("PATH", str(bin_dir))
    report = {c["harness"]: c for c in doctor.diagnose(tmp_path / "data")["clis"]}
    assert report["claude"]["installed"] and report["claude"]["tested"] is True
    assert report["codex"]["version"] == "codex-cli 0.1.0" and report["codex"]["tested"] is False
    assert report["aider"]["error"] == "--version exited 3: broken"
    assert report["aider"]["tested"] is None  # no version, and no suite for it
    assert not report["opencode"]["installed"] and report["opencode"]["path"] is None

"""``doctor``: which agent CLIs this machine has, their versions, and broken profiles."""

from __future__ import annotations

import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from .profiles import ProfileRegistry, default_profile_dirs

__all__ = ["KNOWN_CLIS", "check_cli", "diagnose"]

# Harness name -> executable. The first four have drivers; the rest run from profiles.
KNOWN_CLIS = {
    "claude": "claude",
    "codex": "codex",
    "opencode": "opencode",
    "openclaw": "openclaw",
    "aider": "aider",
    "gemini": "gemini",
    "goose": "goose",
}


def check_cli(harness: str, executable: str, timeout: float = 10.0) -> dict[str, Any]:
    """Whether ``executable`` is on PATH and what ``--version`` says."""
    found = shutil.which(executable)
    result: dict[str, Any] = {
        "harness": harness,
        "executable": executable,
        "installed": found is not None,
        "path": found,
        "version": None,
        "error": None,
    }
    if found is None:
        return result
    try:
        run = subprocess.run(
            [found, "--version"],
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        result["error"] = f"--version failed: {exc}"
        return result
    lines = (run.stdout or run.stderr).strip().splitlines()
    if run.returncode == 0 and lines:
        result["version"] = lines[0].strip()
    else:
        result["error"] = f"--version exited {run.returncode}: {(lines or [''])[0][:200]}"
    return result


def diagnose(data_dir: Path) -> dict[str, Any]:
    """Installed CLIs (checked in parallel) and profiles that do not load."""
    with ThreadPoolExecutor(max_workers=len(KNOWN_CLIS)) as pool:
        clis = list(pool.map(lambda item: check_cli(*item), KNOWN_CLIS.items()))
    profiles = ProfileRegistry(default_profile_dirs(data_dir))
    return {
        "clis": clis,
        "profiles": profiles.names(),
        "profile_dirs": [str(d) for d in profiles.dirs],
        "profile_problems": profiles.problems(),
    }

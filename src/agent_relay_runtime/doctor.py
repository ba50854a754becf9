"""``doctor``: which agent CLIs this machine has, their versions, and broken profiles."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from .profiles import ProfileRegistry, builtin_profile_dir, default_profile_dirs

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


_VERSION = re.compile(r"\d+\.\d+(?:\.\d+)?")


def tested_versions() -> dict[str, list[str]]:
    """The versions of each CLI that the real-CLI suite has passed on."""
    path = builtin_profile_dir() / "_tested.toml"
    try:
        with path.open("rb") as handle:
            return {name: list(t["versions"]) for name, t in tomllib.load(handle).items()}
    except (OSError, tomllib.TOMLDecodeError, KeyError):
        return {}


def diagnose(data_dir: Path) -> dict[str, Any]:
    """Installed CLIs (checked in parallel), whether their versions were tested, and
    profiles that do not load."""
    with ThreadPoolExecutor(max_workers=len(KNOWN_CLIS)) as pool:
        clis = list(pool.map(lambda item: check_cli(*item), KNOWN_CLIS.items()))
    tested = tested_versions()
    for cli in clis:
        found = _VERSION.search(cli["version"] or "")
        known = tested.get(cli["harness"])
        cli["tested_versions"] = known or []
        cli["tested"] = None if not found or known is None else found.group() in known
    profiles = ProfileRegistry(default_profile_dirs(data_dir))
    return {
        "clis": clis,
        "profiles": profiles.names(),
        "profile_dirs": [str(d) for d in profiles.dirs],
        "profile_problems": profiles.problems(),
    }

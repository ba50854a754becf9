"""``doctor``: which agent CLIs this machine has, their versions, and broken profiles."""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from .profiles import ProfileRegistry, default_profile_dirs
from .versions import parse_version, tested_versions, version_output

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


def check_cli(harness: str, executable: str) -> dict[str, Any]:
    """Whether ``executable`` is on PATH and what ``--version`` says."""
    found = shutil.which(executable)
    version, error = version_output(found) if found else (None, None)
    return {
        "harness": harness,
        "executable": executable,
        "installed": found is not None,
        "path": found,
        "version": version,
        "error": error,
    }


def diagnose(data_dir: Path) -> dict[str, Any]:
    """Installed CLIs (checked in parallel), whether their versions were tested, and
    profiles that do not load."""
    with ThreadPoolExecutor(max_workers=len(KNOWN_CLIS)) as pool:
        clis = list(pool.map(lambda item: check_cli(*item), KNOWN_CLIS.items()))
    tested = tested_versions()
    for cli in clis:
        version, known = parse_version(cli["version"]), tested.get(cli["harness"])
        cli["tested_versions"] = known or []
        cli["tested"] = None if not version or known is None else version in known
    profiles = ProfileRegistry(default_profile_dirs(data_dir))
    return {
        "clis": clis,
        "profiles": profiles.names(),
        "profile_dirs": [str(d) for d in profiles.dirs],
        "profile_problems": profiles.problems(),
    }

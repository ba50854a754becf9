"""The versions of agent CLIs: what ``--version`` says, and whether the real-CLI suite
passed on it (``harnesses/_tested.toml``)."""

from __future__ import annotations

import re
import subprocess
import tomllib
from functools import lru_cache
from pathlib import Path

from .profiles import builtin_profile_dir

__all__ = ["cli_version", "parse_version", "tested_versions", "untested_note", "version_output"]

_VERSION = re.compile(r"\d+\.\d+(?:\.\d+)?")


def version_output(path: str, timeout: float = 10.0) -> tuple[str | None, str | None]:
    """The first line ``path --version`` prints, or the error that prevented it."""
    try:
        run = subprocess.run(
            [path, "--version"],
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"--version failed: {exc}"
    lines = (run.stdout or run.stderr).strip().splitlines()
    if run.returncode == 0 and lines:
        return lines[0].strip(), None
    return None, f"--version exited {run.returncode}: {(lines or [''])[0][:200]}"


def cli_version(path: str) -> str | None:
    """``--version`` of the executable at ``path``, asked once per build of it."""
    try:
        mtime = Path(path).stat().st_mtime
    except OSError:
        return None
    return _cached_version(path, mtime)


@lru_cache(maxsize=64)
def _cached_version(path: str, mtime: float) -> str | None:
    return version_output(path)[0]


def parse_version(text: str | None) -> str | None:
    found = _VERSION.search(text or "")
    return found.group() if found else None


def tested_versions() -> dict[str, list[str]]:
    """The versions of each CLI that the real-CLI suite has passed on."""
    path = builtin_profile_dir() / "_tested.toml"
    try:
        with path.open("rb") as handle:
            return {name: list(t["versions"]) for name, t in tomllib.load(handle).items()}
    except (OSError, tomllib.TOMLDecodeError, KeyError):
        return {}


def untested_note(harness: str, version_text: str | None) -> str | None:
    """A sentence for an error report when ``version_text`` is not a tested version."""
    version, tested = parse_version(version_text), tested_versions().get(harness)
    if not version or not tested or version in tested:
        return None
    return f"{harness} {version} is not a version the runtime was tested on ({', '.join(tested)})"

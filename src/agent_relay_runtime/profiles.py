"""Harness profiles: declarative TOML files that tell the terminal driver how a CLI behaves.

A profile says what to run, and how to read the CLI's screen: when it is ready, busy or
idle, which dialogs to answer, how to inject text and how to ask it to exit. The format
is documented in ``harnesses/README.md``.

Profiles are looked up by name in several directories, lowest priority first: the
built-in ones, ``$XDG_CONFIG_HOME/agent-relay-runtime/harnesses``, ``<data dir>/harnesses``
and the directories in ``$AGENT_RELAY_PROFILES``. Files with the same name are merged —
tables key by key, lists replaced — so a user can patch one marker of a built-in profile
when a CLI's TUI changes, without a release. Every file is validated on its own first, so
an error names the file and the key.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .contract import Fidelity
from .exceptions import ProfileError, UnknownHarness

__all__ = ["Profile", "ProfileRegistry", "default_profile_dirs"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CommandSection(_Section):
    executable: str | None = None
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    model_args: list[str] = Field(default_factory=list)


class TerminalSection(_Section):
    rows: int = Field(default=40, ge=5, le=500)
    cols: int = Field(default=120, ge=20, le=1000)
    scrollback_bytes: int = Field(default=4 << 20, ge=4096, le=1 << 30)


class ReadySection(_Section):
    markers: list[re.Pattern[str]] = Field(default_factory=list)
    timeout: float = Field(default=60.0, gt=0)
    settle: float = Field(default=0.1, ge=0)
    unknown_after: float = Field(default=5.0, gt=0)


class IdleSection(_Section):
    markers: list[re.Pattern[str]] = Field(default_factory=list)
    quiet: float = Field(default=0.3, gt=0)


class BusySection(_Section):
    markers: list[re.Pattern[str]] = Field(default_factory=list)
    stall_timeout: float = Field(default=600.0, gt=0)


class ScreenSection(_Section):
    bottom_lines: int = Field(default=0, ge=0)


class Dialog(_Section):
    pattern: re.Pattern[str]
    keys: str
    name: str = ""
    max_times: int = Field(default=1, ge=1)


class Blocked(_Section):
    pattern: re.Pattern[str]
    reason: str
    fail: bool = False  # at start-up, fail at once (a login screen: nothing to wait for)


class InjectSection(_Section):
    method: Literal["paste", "typed"] = "paste"
    enter: str = "\r"
    enter_delay: float = Field(default=0.05, ge=0, le=10)
    verify: Literal["busy", "change"] | None = None
    verify_timeout: float = Field(default=5.0, gt=0)
    enter_retries: int = Field(default=1, ge=0, le=5)
    interrupt_keys: str | None = None
    interrupt_timeout: float = Field(default=5.0, gt=0)
    immediate: bool = True


class ExitSection(_Section):
    keys: list[str] = Field(default_factory=list)
    key_interval: float = Field(default=0.2, ge=0)


class Profile(_Section):
    """One harness profile, validated."""

    name: str = ""
    description: str = ""
    fidelity: Fidelity = Fidelity.INFERRED
    command: CommandSection = Field(default_factory=CommandSection)
    terminal: TerminalSection = Field(default_factory=TerminalSection)
    ready: ReadySection = Field(default_factory=ReadySection)
    idle: IdleSection = Field(default_factory=IdleSection)
    busy: BusySection = Field(default_factory=BusySection)
    screen: ScreenSection = Field(default_factory=ScreenSection)
    dialogs: list[Dialog] = Field(default_factory=list)
    blocked: list[Blocked] = Field(default_factory=list)
    inject: InjectSection = Field(default_factory=InjectSection)
    exit: ExitSection = Field(default_factory=ExitSection)
    sources: list[Path] = Field(default_factory=list, exclude=True)

    def resolve_executable(self) -> str | None:
        """The executable, with ``./`` and ``../`` taken relative to the defining file."""
        exe = self.command.executable
        if exe and exe.startswith(("./", "../")) and self.sources:
            for source in reversed(self.sources):
                candidate = (source.parent / exe).resolve()
                if candidate.exists():
                    return str(candidate)
            return str((self.sources[-1].parent / exe).resolve())
        return exe


def builtin_profile_dir() -> Path:
    """Profiles shipped with the package (a wheel) or in the source tree (a checkout)."""
    packaged = Path(__file__).with_name("builtin_profiles")
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "harnesses"


def default_profile_dirs(data_dir: Path | None = None) -> list[Path]:
    config_home = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    dirs = [builtin_profile_dir(), config_home / "agent-relay-runtime" / "harnesses"]
    if data_dir is not None:
        dirs.append(data_dir / "harnesses")
    extra = os.environ.get("AGENT_RELAY_PROFILES", "")
    dirs += [Path(p) for p in extra.split(os.pathsep) if p]
    return dirs


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _problem(path: Path, exc: ValidationError) -> ProfileError:
    errors = exc.errors()
    first = errors[0]
    key = ".".join(str(part) for part in first["loc"]) or "(top level)"
    message = first["msg"]
    if first["type"] == "extra_forbidden":
        message = "unknown key (a typo?)"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return ProfileError(str(path), key, message + more)


class ProfileRegistry:
    """Finds, merges and validates profiles by name. Errors stay with the profile at fault."""

    def __init__(self, dirs: list[Path]) -> None:
        self.dirs = dirs

    def files(self, name: str) -> list[Path]:
        if name.startswith("_"):
            return []
        return [d / f"{name}.toml" for d in self.dirs if (d / f"{name}.toml").is_file()]

    def names(self) -> list[str]:
        # Files whose names start with "_" are data about harnesses, not profiles.
        found = {
            p.stem
            for d in self.dirs
            if d.is_dir()
            for p in d.glob("*.toml")
            if not p.name.startswith("_")
        }
        return sorted(found)

    def load(self, name: str) -> Profile:
        files = self.files(name)
        if not files:
            known = ", ".join(self.names()) or "none"
            raise UnknownHarness(f"unknown harness {name!r} (profiles: {known})")
        merged: dict[str, Any] = {}
        for path in files:
            raw = self._read(path)
            try:
                Profile.model_validate(raw)
            except ValidationError as exc:
                raise _problem(path, exc) from None
            merged = _merge(merged, raw)
        merged.setdefault("name", name)
        merged["sources"] = files
        try:
            return Profile.model_validate(merged)
        except ValidationError as exc:
            raise _problem(files[-1], exc) from None

    def problems(self) -> dict[str, str]:
        """Every profile that does not load, with its error (for ``doctor``)."""
        found = {}
        for name in self.names():
            try:
                self.load(name)
            except ProfileError as exc:
                found[name] = exc.message
        return found

    @staticmethod
    def _read(path: Path) -> dict[str, Any]:
        try:
            with path.open("rb") as handle:
                return tomllib.load(handle)
        except tomllib.TOMLDecodeError as exc:
            raise ProfileError(str(path), "(syntax)", str(exc)) from None
        except OSError as exc:
            raise ProfileError(str(path), "(file)", exc.strerror or str(exc)) from None

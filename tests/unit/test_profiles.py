"""Profile loading: built-ins validate, user files override, mistakes name file and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent_relay_runtime.exceptions import ProfileError, UnknownHarness
from agent_relay_runtime.profiles import ProfileRegistry, builtin_profile_dir


def registry(tmp_path: Path, **files: str) -> ProfileRegistry:
    user = tmp_path / "user"
    user.mkdir(exist_ok=True)
    for name, text in files.items():
        (user / f"{name}.toml").write_text(text)
    return ProfileRegistry([builtin_profile_dir(), user])


def test_every_builtin_profile_loads(tmp_path: Path) -> None:
    reg = registry(tmp_path)
    assert {"fake-tui", "generic", "claude"} <= set(reg.names())
    assert reg.problems() == {}
    fake = reg.load("fake-tui")
    assert fake.busy.markers[0].search("| Working… (esc to interrupt)")
    assert fake.resolve_executable() == str(
        (builtin_profile_dir().parent / "fixtures/fake_agents/fake_tui.py").resolve()
    )


def test_a_user_file_patches_a_builtin_key_by_key(tmp_path: Path) -> None:
    reg = registry(tmp_path, **{"fake-tui": "[busy]\nmarkers = ['thinking']\n"})
    profile = reg.load("fake-tui")
    assert [m.pattern for m in profile.busy.markers] == ["thinking"]
    assert profile.idle.markers  # the rest of the built-in is kept
    assert len(profile.sources) == 2


def test_a_user_profile_adds_a_harness(tmp_path: Path) -> None:
    reg = registry(tmp_path, mycli='[command]\nexecutable = "mycli"\n[idle]\nquiet = 2\n')
    assert "mycli" in reg.names()
    assert reg.load("mycli").idle.quiet == 2


def test_a_typo_names_the_file_and_the_key(tmp_path: Path) -> None:
    reg = registry(tmp_path, broken="[idle]\nquite = 2\n")
    with pytest.raises(ProfileError) as info:
        reg.load("broken")
    message = str(info.value)
    assert message.startswith(str(tmp_path / "user" / "broken.toml"))
    assert "idle.quite: unknown key (a typo?)" in message
    assert "\n" not in message


def test_a_bad_regex_names_its_key(tmp_path: Path) -> None:
    reg = registry(tmp_path, broken="[busy]\nmarkers = ['ok', '(unclosed']\n")
    with pytest.raises(ProfileError, match=r"broken\.toml: busy\.markers\.1: "):
        reg.load("broken")


def test_a_wrong_type_names_its_key(tmp_path: Path) -> None:
    reg = registry(tmp_path, broken='[inject]\nenter_delay = "soon"\n')
    with pytest.raises(ProfileError, match=r"inject\.enter_delay: "):
        reg.load("broken")


def test_a_toml_syntax_error_names_the_file(tmp_path: Path) -> None:
    reg = registry(tmp_path, broken="[idle\nquiet = 1\n")
    with pytest.raises(ProfileError, match=r"broken\.toml: \(syntax\): "):
        reg.load("broken")


def test_a_broken_profile_does_not_break_the_others(tmp_path: Path) -> None:
    reg = registry(tmp_path, broken="nonsense = 1\n")
    assert "broken" in reg.problems()
    assert reg.load("generic").idle.quiet == 1.0


def test_an_unknown_harness_lists_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(UnknownHarness, match=r"unknown harness 'nope' .*generic"):
        registry(tmp_path).load("nope")


@pytest.mark.parametrize(
    ("name", "idle_screen", "busy_screen"),
    [
        ("aider", "Aider v0.86\nModel: x\n> ", "Aider v0.86\n> fix it\nStreaming the reply…"),
        ("gemini", "│ > Type your message or @path/to/file │", "⠋ Thinking (esc to cancel, 3s)"),
        ("goose", "starting session\n( O)> ", "( O)> do it\n◇ working"),
    ],
)
def test_the_unverified_cli_profiles_read_their_documented_screens(
    tmp_path: Path, name: str, idle_screen: str, busy_screen: str
) -> None:
    profile = registry(tmp_path).load(name)

    def region(text: str) -> str:
        lines = [line for line in text.splitlines() if line.strip()]
        count = profile.screen.bottom_lines
        return "\n".join(lines[-count:] if count else lines)

    assert any(m.search(region(idle_screen)) for m in profile.idle.markers)
    assert not any(m.search(region(busy_screen)) for m in profile.idle.markers)
    assert profile.fidelity == "inferred"

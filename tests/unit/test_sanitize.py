"""The terminal sanitizer: no control byte survives, nothing printable is lost."""

from __future__ import annotations

import unicodedata

from hypothesis import given
from hypothesis import strategies as st

from agent_relay_runtime.sanitize import (
    PASTE_END,
    PASTE_START,
    bracketed_paste,
    sanitize_for_terminal,
    typed,
)

CONTROL = {chr(c) for c in range(0x20) if chr(c) not in "\t\n"} | {chr(0x7F)}
CONTROL |= {chr(c) for c in range(0x80, 0xA0)}


def _is_control(ch: str) -> bool:
    return ch in CONTROL or 0xD800 <= ord(ch) <= 0xDFFF


@given(st.text())
def test_no_control_character_survives(text: str) -> None:
    clean = sanitize_for_terminal(text)
    assert not any(_is_control(ch) for ch in clean)
    clean.encode("utf-8")  # always encodable (no lone surrogates)


@given(st.text())
def test_sanitizing_twice_changes_nothing(text: str) -> None:
    once = sanitize_for_terminal(text)
    assert sanitize_for_terminal(once) == once


@given(st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs"))))
def test_text_without_controls_passes_unchanged(text: str) -> None:
    assert sanitize_for_terminal(text) == text


@given(st.text())
def test_printable_characters_keep_their_order(text: str) -> None:
    kept = [ch for ch in text if not _is_control(ch) and ch != "\r"]
    clean = sanitize_for_terminal(text)
    position = 0
    for ch in kept:
        position = clean.index(ch, position) + 1


@given(st.text())
def test_a_paste_cannot_be_ended_early(text: str) -> None:
    payload = bracketed_paste(text)
    assert payload.startswith(PASTE_START) and payload.endswith(PASTE_END)
    inner = payload[len(PASTE_START) : -len(PASTE_END)]
    assert b"\x1b" not in inner
    assert b"\x03" not in inner


def test_escape_sequences_become_visible_inert_text() -> None:
    text = "before\x1b[201~after\x03 and \x1b]0;title\x07 \x9b31m\r\nnext"
    clean = sanitize_for_terminal(text)
    assert clean == "before␛[201~after␃ and ␛]0;title␇ \\x9b31m\nnext"
    assert unicodedata.name("␛") == "SYMBOL FOR ESCAPE"


def test_typed_text_has_no_newlines() -> None:
    assert typed("a\nb\r\nc\x1b") == "a b c␛".encode()

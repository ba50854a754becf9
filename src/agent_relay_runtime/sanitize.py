"""Make message text inert before it is written into a terminal.

A relay message is untrusted text. Written raw into a PTY, ``ESC[201~`` would end a
bracketed paste early and turn the rest into keystrokes, ``\\x03`` would interrupt the
agent, and other control bytes would drive the terminal. The sanitizer keeps every
printable character, newlines and tabs, and replaces each control character with a
visible stand-in so that the agent still sees that one was there:

- C0 controls (except tab and newline) become their Unicode *control pictures*
  (``ESC`` → ``␛``, ``\\x03`` → ``␃``); ``DEL`` becomes ``␡``.
- C1 controls (U+0080–U+009F, which some terminals treat as ``CSI`` and friends) become
  the literal text ``\\x9b`` etc.
- Carriage returns become newlines (inside a bracketed paste a newline is text).
- Lone surrogates, which cannot be encoded, become U+FFFD.
"""

from __future__ import annotations

import re

__all__ = ["bracketed_paste", "sanitize_for_terminal"]

PASTE_START = b"\x1b[200~"
PASTE_END = b"\x1b[201~"

_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")


def _replace(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code < 0x20:
        return chr(0x2400 + code)
    if code == 0x7F:
        return "\u2421"
    if code <= 0x9F:
        return f"\\x{code:02x}"
    return "\ufffd"


def sanitize_for_terminal(text: str) -> str:
    """Return ``text`` with every control character made visible and harmless."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _CONTROL.sub(_replace, text)


def bracketed_paste(text: str) -> bytes:
    """Sanitize ``text`` and wrap it as one bracketed paste."""
    return PASTE_START + sanitize_for_terminal(text).encode("utf-8") + PASTE_END


def typed(text: str) -> bytes:
    """Sanitize ``text`` for typing without paste markers: newlines would submit, so they
    become spaces."""
    return sanitize_for_terminal(text).replace("\n", " ").encode("utf-8")

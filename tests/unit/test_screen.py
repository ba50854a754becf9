"""The screen model shows exactly what a terminal would, however fast output comes."""

from __future__ import annotations

import random

import pyte
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent_relay_runtime.observe import screen as screen_module
from agent_relay_runtime.observe.screen import ScreenModel, render_lines

PIECES = [
    b"\r\n",
    b"\x1b[0m",
    b"\x1b[1;31m",
    b"\x1b[32m",
    b"\x1b[m",
    b"\t",
    "é✓中".encode(),
    b"plain words ",
    b"x" * 130,
    b"\x1b[2J",  # unsafe: disables the cut for that stretch
    b"\x1b[3A",
    b"\x08",
    b"\x1b]0;a title\r\nwith a newline\x07",  # a string sequence spanning a CRLF
    b"\x1b[2\r\nB",  # C0 controls inside a CSI run at once; the CSI goes on
    b"\x1b(0qqq\x1b(B",  # line-drawing charset
]

# Mostly plain lines, so that long stretches can be cut, with rare state changes between.
MOSTLY_PLAIN = [b"\r\n"] * 120 + [b"plain words "] * 100 + [b"\x1b[1;31m", b"\x1b[0m"] * 5 + PIECES


def reference(data: bytes, cols: int, rows: int) -> tuple[list[str], int, int, object]:
    screen = pyte.Screen(cols, rows)
    pyte.ByteStream(screen).feed(data)
    lines = render_lines(screen)
    return lines, screen.cursor.x, screen.cursor.y, screen.cursor.attrs


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.sampled_from(PIECES), min_size=0, max_size=4000),
    st.integers(1, 50_000),
    st.integers(0, 2**32),
)
def test_the_cut_never_changes_what_the_screen_shows(
    pieces: list[bytes], chunk: int, seed: int
) -> None:
    data = b"".join(pieces)
    model = ScreenModel(cols=80, rows=24)
    rng = random.Random(seed)
    for start in range(0, len(data), chunk):
        model.feed(data[start : start + chunk])
        if rng.random() < 0.2:
            model.lines()  # looking at the screen mid-stream must not matter
    snap = model.snapshot()
    lines, x, y, attrs = reference(data, 80, 24)
    assert snap.lines == lines
    assert (snap.cursor_x, snap.cursor_y) == (x, y)
    assert model._screen.cursor.attrs == attrs


def test_a_flood_of_plain_text_is_mostly_skipped_and_fully_kept() -> None:
    data = b"".join(b"%08d some output line\r\n" % i for i in range(200_000))
    model = ScreenModel(cols=120, rows=40, scrollback_bytes=len(data))
    for start in range(0, len(data), 65536):
        model.feed(data[start : start + 65536])
    assert model.lines()[-2] == "00199999 some output line"
    assert model.skipped_bytes > 0.95 * len(data)
    assert model.scrollback.bytes() == data and model.total_bytes == len(data)


def test_scrollback_is_bounded() -> None:
    model = ScreenModel(cols=80, rows=24, scrollback_bytes=4096)
    model.feed(b"a" * 100_000)
    assert len(model.scrollback.bytes()) == 4096
    assert model.scrollback.dropped == 100_000 - 4096


@pytest.mark.parametrize("split", [1, 2, 3])
def test_utf8_split_across_reads_is_decoded(split: int) -> None:
    text = "naïve — ✓".encode()
    model = ScreenModel(cols=40, rows=5)
    model.feed(text[:split])
    model.feed(text[split:])
    assert model.lines()[0] == "naïve — ✓"


def test_bottom_lines_skip_blank_rows() -> None:
    model = ScreenModel(cols=40, rows=10)
    model.feed(b"one\r\ntwo\r\n\r\nthree")
    assert model.bottom(2) == "two\nthree"


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.sampled_from(MOSTLY_PLAIN), min_size=0, max_size=3000),
    st.integers(1, 9000),
    st.integers(0, 2**32),
)
def test_compacting_pending_output_never_changes_the_screen(
    pieces: list[bytes], chunk: int, seed: int
) -> None:
    # A tiny screen and compaction bound make every run compact many times, with
    # escape sequences landing anywhere relative to the cuts.
    data = b"".join(pieces)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(screen_module, "_COMPACT_AT", 1024)
        model = ScreenModel(cols=30, rows=6)
        rng = random.Random(seed)
        for start in range(0, len(data), chunk):
            model.feed(data[start : start + chunk])
            if rng.random() < 0.1:
                model.lines()
        snap = model.snapshot()
    lines, x, y, attrs = reference(data, 30, 6)
    assert snap.lines == lines
    assert (snap.cursor_x, snap.cursor_y) == (x, y)
    assert model._screen.cursor.attrs == attrs

"""`agent-relay-runtime mcp` without what it needs: one line on stderr, exit 2."""

from __future__ import annotations

import os
from pathlib import Path

import anyio
import pytest

from .conftest import SERVER

pytestmark = pytest.mark.anyio


async def run(*args: str, **env: str) -> tuple[int, list[str]]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_")}
    done = await anyio.run_process([*SERVER, *args], env={**clean, **env}, check=False)
    assert done.stdout == b""  # stdout belongs to the protocol
    return done.returncode, done.stderr.decode().splitlines()


@pytest.mark.parametrize(
    ("args", "env", "error"),
    [
        ((), {"RELAY_AGENT_TOKEN": "at_x"},
         "error: no relay URL: pass --relay-url or set RELAY_BASE_URL"),
        (("--relay-url", "http://127.0.0.1:9"), {},
         "error: no agent token: set RELAY_AGENT_TOKEN or pass --token-file PATH"),
        ((), {"RELAY_BASE_URL": "127.0.0.1:9", "RELAY_AGENT_TOKEN": "at_x"},
         "error: relay URL '127.0.0.1:9': expected http://… or https://…"),
        (("--token-file", "/nonexistent/token"), {"RELAY_BASE_URL": "http://127.0.0.1:9"},
         "error: --token-file /nonexistent/token: No such file or directory"),
    ],
)  # fmt: skip
async def test_a_missing_url_or_token_is_one_line_and_exit_2(
    args: tuple[str, ...], env: dict[str, str], error: str
) -> None:
    assert await run(*args, **env) == (2, [error])


async def test_an_empty_token_file_is_no_token(tmp_path: Path) -> None:
    empty = tmp_path / "token"
    empty.write_text("\n")
    code, lines = await run("--relay-url", "http://127.0.0.1:9", "--token-file", str(empty))
    assert code == 2 and lines == [
        f"error: no agent token: set RELAY_AGENT_TOKEN or pass --token-file PATH ({empty} is empty)"
    ]

"""Transports against real child processes: PTY and stdio."""

from __future__ import annotations

import hashlib
import os
import sys
import textwrap
from pathlib import Path
from typing import Any

import anyio
import pytest

from agent_relay_runtime.transports.framing import FramingError
from agent_relay_runtime.transports.pty import PtyTransport
from agent_relay_runtime.transports.stdio import StdioTransport

pytestmark = pytest.mark.anyio


def py(code: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


class Collector:
    def __init__(self) -> None:
        self.data = bytearray()
        self.changed = anyio.Event()

    def __call__(self, chunk: bytes) -> None:
        self.data += chunk
        self.changed.set()
        self.changed = anyio.Event()

    async def until(self, needle: bytes, timeout: float = 10) -> None:
        with anyio.fail_after(timeout):
            while needle not in self.data:
                await self.changed.wait()


async def run_pty(argv: list[str], collect: Collector, **kw: Any) -> PtyTransport:
    return PtyTransport(
        argv, cwd=Path.cwd(), env=dict(os.environ), rows=kw.get("rows", 24),
        cols=kw.get("cols", 80), on_output=collect,
    )  # fmt: skip


async def test_pty_child_leads_its_own_session_and_sees_the_window_size() -> None:
    out = Collector()
    code = """
        import os, sys
        size = os.get_terminal_size()
        print(f"pid={os.getpid()} pgid={os.getpgrp()} sid={os.getsid(0)} tty={os.isatty(0)}")
        print(f"size={size.columns}x{size.lines}")
        sys.exit(7)
    """
    transport = await run_pty(py(code), out, rows=33, cols=101)
    await transport.run()
    text = out.data.decode()
    assert transport.handle is not None
    pid = transport.handle.pid
    assert f"pid={pid} pgid={pid} sid={pid} tty=True" in text
    assert "size=101x33" in text
    assert transport.handle.returncode == 7


async def test_pty_passes_a_mebibyte_without_loss() -> None:
    out = Collector()
    code = """
        import hashlib, os, sys
        data = b"".join(b"%07d payload line\\n" % i for i in range(60000))
        os.write(1, data)
        print("sha=" + hashlib.sha256(data).hexdigest())
    """
    transport = await run_pty(py(code), out)
    await transport.run()
    text = bytes(out.data).replace(b"\r\n", b"\n")
    body, _, tail = text.rpartition(b"sha=")
    assert len(body) == 60000 * 21 >= 1 << 20
    assert hashlib.sha256(body).hexdigest() == tail.strip().decode()


async def test_pty_writes_are_serialized() -> None:
    # The child reads in raw mode and reports whether two concurrent 64 KiB writes
    # arrived each in one piece.
    code = """
        import os, sys, tty
        tty.setraw(0)
        os.write(1, b"RAW\\n")
        want, got = 2 * 65536, bytearray()
        while len(got) < want:
            got += os.read(0, want - len(got))
        runs = [got[:65536], got[65536:]]
        ok = sorted(bytes(set(r)) for r in runs) == [b"a", b"b"]
        os.write(1, b"OK\\n" if ok else b"INTERLEAVED\\n")
    """
    out = Collector()
    transport = await run_pty(py(code), out)
    async with anyio.create_task_group() as tg:
        await tg.start(transport.run)
        await out.until(b"RAW")  # canonical mode would drop a long unterminated line
        tg.start_soon(transport.write, b"a" * 65536)
        tg.start_soon(transport.write, b"b" * 65536)
    assert b"OK" in out.data, out.data[-200:]


async def test_pty_reports_a_missing_executable() -> None:
    from agent_relay_runtime.exceptions import ExecutableNotFound

    transport = await run_pty(["/nonexistent/agent"], Collector())
    with pytest.raises(ExecutableNotFound, match="/nonexistent/agent"):
        await transport.run()


async def test_stdio_frames_reports_bad_lines_and_bounds_stderr() -> None:
    code = """
        import json, os, sys
        os.setpgrp  # touch
        print(json.dumps({"pgid": os.getpgrp(), "pid": os.getpid()}))
        print("this is not json {")
        print(json.dumps({"big": "x" * (17 * 1024 * 1024)}))
        sys.stderr.write("e" * 1_000_000 + "END")
        print(json.dumps({"last": True}))
    """
    messages: list[dict[str, Any]] = []
    errors: list[FramingError] = []
    transport = StdioTransport(
        py(code), cwd=Path.cwd(), env=dict(os.environ),
        on_message=messages.append, on_error=errors.append,
    )  # fmt: skip
    await transport.run()
    assert messages[0]["pgid"] == messages[0]["pid"]  # its own process group
    assert len(messages[1]["big"]) == 17 * 1024 * 1024
    assert messages[2] == {"last": True}
    assert len(errors) == 1 and errors[0].preview == "this is not json {"
    assert transport.stderr.total == 1_000_003
    assert transport.stderr.text().endswith("END") and len(transport.stderr.bytes()) == 65536


async def test_stdio_send_reaches_the_child() -> None:
    code = """
        import json, sys
        for line in sys.stdin:
            msg = json.loads(line)
            print(json.dumps({"echo": msg["n"]}), flush=True)
            if msg["n"] == 2:
                break
    """
    messages: list[dict[str, Any]] = []
    transport = StdioTransport(
        py(code), cwd=Path.cwd(), env=dict(os.environ),
        on_message=messages.append, on_error=lambda e: None,
    )  # fmt: skip
    async with anyio.create_task_group() as tg:
        await tg.start(transport.run)
        for n in range(3):
            await transport.send({"n": n})
    assert messages == [{"echo": 0}, {"echo": 1}, {"echo": 2}]
    assert transport.handle is not None and transport.handle.returncode == 0

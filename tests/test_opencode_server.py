"""The OpenCode serve driver against the fake OpenCode server."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent_relay_runtime.contract import DeliveryMode, RelayMessage, SessionSpec
from agent_relay_runtime.supervisor import Supervisor
from agent_relay_runtime.testing import EventRecorder

from .conftest import FAKE_OPENCODE, opencode_spec, read_trace, script_env

pytestmark = pytest.mark.anyio


async def send(supervisor: Supervisor, name: str, text: str, **kw: object) -> RelayMessage:
    message = RelayMessage(text=text, **kw)  # type: ignore[arg-type]
    await supervisor.get(name).receive_message(message)
    return message


async def test_ready_with_a_session_and_the_event_stream(
    supervisor: Supervisor, recorder: EventRecorder
) -> None:
    session = await supervisor.create(opencode_spec())
    assert session.identity.conversation_id and session.identity.conversation_id.startswith("ses_")
    argv = session.driver.argv
    assert argv[1:3] == ["serve", "--port"] and argv[4:] == ["--hostname", "127.0.0.1"]
    assert "OPENCODE_SERVER_PASSWORD" not in " ".join(argv)  # the password stays in the env


async def test_a_turn_reports_tools_files_transcript_and_usage(
    supervisor: Supervisor, recorder: EventRecorder, tmp_path: Path
) -> None:
    await supervisor.create(opencode_spec().model_copy(update={"cwd": tmp_path}))
    message = await send(supervisor, "opencode", "go write:out.txt bash:ls fail-tool")
    await recorder.wait_for("turn.completed")
    delivered = recorder.matching("delivery.delivered")[0].receipt
    assert delivered.message_id == message.id and delivered.evidence.kind == "protocol_ack"
    tools = [
        (e.type, e.tool) for e in recorder.matching(where=lambda e: e.type.startswith("tool."))
    ]
    assert tools == [
        ("tool.called", "write"),
        ("tool.completed", "write"),
        ("tool.called", "bash"),
        ("tool.completed", "bash"),
        ("tool.called", "read"),
        ("tool.failed", "read"),
    ]
    assert [e.path for e in recorder.matching("file.changed")] == [str(tmp_path / "out.txt")]
    assert (tmp_path / "out.txt").read_text() == "fake\n"
    [command] = recorder.matching("command.completed")
    assert (command.command, command.exit_code, command.output) == ("ls", 0, "ran ls\n")
    texts = [(e.role, e.text) for e in recorder.matching("transcript.chunk")]
    assert texts[0] == ("user", "go write:out.txt bash:ls fail-tool")
    assert texts[-1] == ("assistant", "echo: go write:out.txt bash:ls fail-tool")
    assert recorder.matching("usage.updated")[-1].output_tokens > 0
    assert recorder.states("opencode")[-2:] == ["busy", "idle"]


async def test_steer_aborts_the_running_turn(
    supervisor: Supervisor, recorder: EventRecorder, tmp_path: Path
) -> None:
    trace = tmp_path / "trace.jsonl"
    await supervisor.create(opencode_spec(trace_file=str(trace)))
    await send(supervisor, "opencode", "long work:30")
    await recorder.wait_for("status.changed", where=lambda e: e.state == "busy")
    steer = await send(supervisor, "opencode", "new plan", mode=DeliveryMode.STEER)
    await recorder.wait_for("delivery.delivered", where=lambda e: e.receipt.message_id == steer.id)
    first = await recorder.wait_for("turn.completed")
    assert first.outcome == "interrupted"
    second = await recorder.wait_for("turn.completed", after=recorder.events.index(first) + 1)
    assert second.outcome == "completed"
    ends = [t["status"] for t in read_trace(trace) if t["event"] == "turn_end"]
    assert ends[:2] == ["aborted", "done"]


@pytest.mark.parametrize(("policy", "outcome"), [("allow", "completed"), ("deny", "failed")])
async def test_permissions_go_to_the_approval_policy(
    supervisor: Supervisor, recorder: EventRecorder, policy: str, outcome: str
) -> None:
    await supervisor.create(opencode_spec().model_copy(update={"approvals": policy}))
    await send(supervisor, "opencode", "approve:make")
    resolved = await recorder.wait_for("tool.approval.resolved")
    assert (resolved.tool, resolved.decision, resolved.by) == ("bash", policy, "policy")
    requested = recorder.matching("tool.approval.requested")[0]
    assert requested.input["patterns"] == ["make"]
    await recorder.wait_for(f"tool.{outcome}")
    await recorder.wait_for("turn.completed")


async def test_a_dropped_event_stream_is_reconnected_and_reconciled(
    supervisor: Supervisor, recorder: EventRecorder
) -> None:
    await supervisor.create(opencode_spec())
    await send(supervisor, "opencode", "before drop-events bash:after")
    await recorder.wait_for("turn.completed", timeout=20)
    # What happened while no stream was open is reported once, from the reconciliation.
    assert [e.tool for e in recorder.matching("tool.completed")] == ["bash"]
    assistant = [e.text for e in recorder.matching("transcript.chunk") if e.role == "assistant"]
    assert assistant == ["echo: before drop-events bash:after"]
    assert recorder.states("opencode")[-1] == "idle"
    second = await send(supervisor, "opencode", "still there?")
    await recorder.wait_for("delivery.delivered", where=lambda e: e.receipt.message_id == second.id)


async def test_a_crashed_server_fails_the_session(
    supervisor: Supervisor, recorder: EventRecorder
) -> None:
    await supervisor.create(opencode_spec())
    await send(supervisor, "opencode", "crash")
    failed = await recorder.wait_for("session.failed")
    assert failed.exit_code == 3


@pytest.fixture
def running_server(tmp_path: Path) -> Iterator[tuple[str, str, subprocess.Popen[str]]]:
    password = secrets.token_urlsafe(12)
    env = {**os.environ, "OPENCODE_SERVER_PASSWORD": password, **script_env()}
    proc = subprocess.Popen(
        [sys.executable, str(FAKE_OPENCODE), "serve", "--port", "0", "--hostname", "127.0.0.1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert proc.stdout is not None
    line = ""
    while "listening on" not in line:
        line = proc.stdout.readline()
        assert line, "the fake server ended before listening"
    try:
        yield line.split("listening on ")[1].strip(), password, proc
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


async def test_attach_to_a_running_server_and_detach_on_release(
    supervisor: Supervisor,
    recorder: EventRecorder,
    running_server: tuple[str, str, subprocess.Popen[str]],
) -> None:
    endpoint, password, proc = running_server
    spec = SessionSpec(harness="opencode", name="att", endpoint=endpoint, password=password)
    session = await supervisor.create(spec)
    assert session.driver.process is None and session.identity.pid is None
    await send(supervisor, "att", "hello bash:pwd")
    await recorder.wait_for("turn.completed")
    info = await supervisor.release("att")
    assert info.reason == "released: release requested" and not info.signals_sent
    assert proc.poll() is None  # the server is not ours: it still runs


async def test_a_wrong_password_fails_the_start_clearly(
    supervisor: Supervisor, running_server: tuple[str, str, subprocess.Popen[str]]
) -> None:
    endpoint, _, _ = running_server
    spec = SessionSpec(
        harness="opencode", name="bad", endpoint=endpoint, password="wrong", ready_timeout=2
    )
    with pytest.raises(Exception, match=r"not ready after 2s.*refused the server password"):
        await supervisor.create(spec)

"""The OpenClaw gateway driver against the fake gateway."""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent_relay_runtime.contract import DeliveryMode, RelayMessage, SessionSpec
from agent_relay_runtime.exceptions import ConfigError
from agent_relay_runtime.harnesses.openclaw import gateway_config
from agent_relay_runtime.supervisor import Supervisor
from agent_relay_runtime.testing import EventRecorder

from .conftest import FAKE_OPENCLAW, openclaw_spec, read_trace, script_env

pytestmark = pytest.mark.anyio


async def send(supervisor: Supervisor, name: str, text: str, **kw: object) -> RelayMessage:
    message = RelayMessage(text=text, **kw)  # type: ignore[arg-type]
    await supervisor.get(name).receive_message(message)
    return message


async def test_ready_with_a_gateway_of_its_own(
    supervisor: Supervisor, recorder: EventRecorder, tmp_path: Path
) -> None:
    session = await supervisor.create(openclaw_spec().model_copy(update={"cwd": tmp_path}))
    key = session.identity.conversation_id
    assert key and key.startswith("agent:main:relay-")
    argv = session.driver.argv
    assert argv[1:4] == ["gateway", "run", "--port"] and argv[5:7] == ["--bind", "loopback"]
    # The gateway's token is in a 0600 config file and the environment, never in argv.
    config_path = Path(session.driver._transport.env["OPENCLAW_CONFIG_PATH"])  # type: ignore[attr-defined]
    assert stat.S_IMODE(config_path.stat().st_mode) == 0o600
    config = json.loads(config_path.read_text())
    assert config["gateway"]["auth"]["token"] not in " ".join(argv)
    assert config["agents"]["defaults"]["workspace"] == str(tmp_path.resolve())
    assert recorder.states("openclaw")[-1] == "ready"


async def test_a_run_reports_tools_files_commands_transcript_and_usage(
    supervisor: Supervisor, recorder: EventRecorder, tmp_path: Path
) -> None:
    await supervisor.create(openclaw_spec().model_copy(update={"cwd": tmp_path}))
    message = await send(supervisor, "openclaw", "go write:out.txt bash:ls fail-tool")
    turn = await recorder.wait_for("turn.completed")
    assert turn.outcome == "completed" and turn.duration_ms is not None
    delivered = recorder.matching("delivery.delivered")[0].receipt
    assert delivered.message_id == message.id and delivered.evidence.kind == "protocol_ack"
    assert message.id in (delivered.evidence.detail or "")  # the run id is the message id
    tools = [
        (e.type, e.tool) for e in recorder.matching(where=lambda e: e.type.startswith("tool."))
    ]
    assert tools == [
        ("tool.called", "write"),
        ("tool.completed", "write"),
        ("tool.called", "exec"),
        ("tool.completed", "exec"),
        ("tool.called", "read"),
        ("tool.failed", "read"),
    ]
    [changed] = recorder.matching("file.changed")
    assert (changed.path, changed.change) == (str(tmp_path.resolve() / "out.txt"), "created")
    assert (tmp_path / "out.txt").read_text() == "fake\n"
    [command] = recorder.matching("command.completed")
    assert (command.command, command.exit_code, command.failed) == ("ls", 0, False)
    texts = [(e.role, e.text) for e in recorder.matching("transcript.chunk")]
    assert texts[0] == ("user", "go write:out.txt bash:ls fail-tool")
    assert texts[-1] == ("assistant", "echo: go write:out.txt bash:ls fail-tool")
    # The run's usage comes with the `agent` request's final answer, which the gateway
    # may send after the lifecycle `end` that completed the turn.
    usage = await recorder.wait_for("usage.updated")
    assert usage.output_tokens > 0
    assert recorder.states("openclaw")[-2:] == ["busy", "idle"]


async def test_a_failed_model_call_fails_the_turn_not_the_session(
    supervisor: Supervisor, recorder: EventRecorder
) -> None:
    await supervisor.create(openclaw_spec())
    await send(supervisor, "openclaw", "error")
    turn = await recorder.wait_for("turn.completed")
    assert turn.outcome == "failed" and "LLM request failed" in (turn.detail or "")
    second = await send(supervisor, "openclaw", "still there?")
    await recorder.wait_for("delivery.delivered", where=lambda e: e.receipt.message_id == second.id)
    later = await recorder.wait_for("turn.completed", after=recorder.events.index(turn) + 1)
    assert later.outcome == "completed"


async def test_steer_aborts_the_running_run(
    supervisor: Supervisor, recorder: EventRecorder, tmp_path: Path
) -> None:
    trace = tmp_path / "trace.jsonl"
    await supervisor.create(openclaw_spec(trace_file=str(trace)))
    await send(supervisor, "openclaw", "long work:30")
    await recorder.wait_for("status.changed", where=lambda e: e.state == "busy")
    steer = await send(supervisor, "openclaw", "new plan", mode=DeliveryMode.STEER)
    await recorder.wait_for("delivery.delivered", where=lambda e: e.receipt.message_id == steer.id)
    first = await recorder.wait_for("turn.completed")
    assert first.outcome == "interrupted"
    second = await recorder.wait_for("turn.completed", after=recorder.events.index(first) + 1)
    assert second.outcome == "completed"
    ends = [t["status"] for t in read_trace(trace) if t["event"] == "turn_end"]
    assert ends[:2] == ["aborted", "done"]


async def test_immediate_while_busy_is_queued_by_the_gateway(
    supervisor: Supervisor, recorder: EventRecorder
) -> None:
    await supervisor.create(openclaw_spec())
    await send(supervisor, "openclaw", "first work:0.5")
    await recorder.wait_for("status.changed", where=lambda e: e.state == "busy")
    second = await send(supervisor, "openclaw", "second", mode=DeliveryMode.IMMEDIATE)
    await recorder.wait_for("delivery.delivered", where=lambda e: e.receipt.message_id == second.id)
    first = await recorder.wait_for("turn.completed")
    later = await recorder.wait_for("turn.completed", after=recorder.events.index(first) + 1)
    assert (first.outcome, later.outcome) == ("completed", "completed")
    assistant = [e.text for e in recorder.matching("transcript.chunk") if e.role == "assistant"]
    assert assistant == ["echo: first work:0.5", "echo: second"]


@pytest.mark.parametrize(("policy", "outcome"), [("allow", "completed"), ("deny", "failed")])
async def test_exec_approvals_go_to_the_approval_policy(
    supervisor: Supervisor, recorder: EventRecorder, policy: str, outcome: str
) -> None:
    await supervisor.create(openclaw_spec().model_copy(update={"approvals": policy}))
    await send(supervisor, "openclaw", "approve:make")
    resolved = await recorder.wait_for("tool.approval.resolved")
    assert (resolved.tool, resolved.decision, resolved.by) == ("exec", policy, "policy")
    requested = recorder.matching("tool.approval.requested")[0]
    assert requested.input["command"] == "make" and requested.call_id
    await recorder.wait_for(f"tool.{outcome}")
    assert (await recorder.wait_for("turn.completed")).outcome == "completed"


async def test_a_person_answers_an_approval(
    supervisor: Supervisor, recorder: EventRecorder
) -> None:
    session = await supervisor.create(openclaw_spec())
    await send(supervisor, "openclaw", "approve:deploy")
    await recorder.wait_for("status.changed", where=lambda e: e.state == "blocked")
    [pending] = session.approvals.pending()
    session.approvals.answer(pending["approval_id"], "allow")
    await recorder.wait_for("tool.completed")
    await recorder.wait_for("turn.completed")
    assert recorder.states("openclaw")[-1] == "idle"


async def test_a_dropped_connection_is_reopened_and_the_run_reconciled(
    supervisor: Supervisor, recorder: EventRecorder
) -> None:
    await supervisor.create(openclaw_spec())
    await send(supervisor, "openclaw", "before drop-clients work:0.3")
    turn = await recorder.wait_for("turn.completed")
    # Whether the run ended while the socket was gone (then the reconciliation ends it)
    # or after (then its events end it), it ends once, and the session goes on.
    assert turn.outcome == "completed"
    await recorder.wait_for("status.changed", where=lambda e: e.state == "idle")
    second = await send(supervisor, "openclaw", "still there?")
    await recorder.wait_for("delivery.delivered", where=lambda e: e.receipt.message_id == second.id)
    later = await recorder.wait_for("turn.completed", after=recorder.events.index(turn) + 1)
    assert later.outcome == "completed"
    assert len(recorder.matching("turn.completed")) == 2


async def test_a_crashed_gateway_fails_the_session(
    supervisor: Supervisor, recorder: EventRecorder
) -> None:
    await supervisor.create(openclaw_spec())
    await send(supervisor, "openclaw", "crash")
    failed = await recorder.wait_for("session.failed")
    assert failed.exit_code == 3


async def test_release_of_a_hung_run_leaves_nothing(
    supervisor: Supervisor, recorder: EventRecorder
) -> None:
    session = await supervisor.create(openclaw_spec(drain_seconds=600))
    await send(supervisor, "openclaw", "hang")
    await recorder.wait_for("status.changed", where=lambda e: e.state == "busy")
    pid = session.identity.pid
    info = await supervisor.release("openclaw")
    assert not info.survivors and "SIGKILL" in info.signals_sent
    assert pid is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


async def test_a_resume_of_an_unknown_session_fails_clearly(supervisor: Supervisor) -> None:
    spec = openclaw_spec().model_copy(update={"resume": "nothing-here"})
    with pytest.raises(Exception, match=r"openclaw has no session 'agent:main:nothing-here'"):
        await supervisor.create(spec)


def test_the_user_config_is_kept_under_the_session_settings(tmp_path: Path) -> None:
    base = {
        "models": {"providers": {"p": {"baseUrl": "http://127.0.0.1:1/v1"}}},
        "agents": {"defaults": {"model": {"primary": "p/a", "fallbacks": ["p/b"]}}},
        "gateway": {"port": 18789, "auth": {"mode": "password", "password": "theirs"}},
    }
    log = tmp_path / "gateway.log"
    config = gateway_config(base, cwd=tmp_path, token="tok", model="p/c", log_file=log)
    assert config["models"] == base["models"]
    assert config["logging"] == {"file": str(log)}
    theirs = {"logging": {"file": "/var/log/openclaw.log", "level": "debug"}}
    assert (
        gateway_config(theirs, cwd=tmp_path, token="t", model=None, log_file=log)["logging"]
        == theirs["logging"]
    )
    assert config["agents"]["defaults"]["model"] == {"primary": "p/c", "fallbacks": ["p/b"]}
    assert config["gateway"]["auth"] == {"mode": "token", "token": "tok"}
    assert config["agents"]["defaults"]["skipBootstrap"] is True
    assert config["agents"]["defaults"]["heartbeat"] == {"every": "0m"}
    assert base["gateway"]["auth"]["mode"] == "password"  # the user's copy is untouched


async def test_a_config_that_does_not_parse_is_one_clear_error(
    supervisor: Supervisor, tmp_path: Path
) -> None:
    bad = tmp_path / "openclaw.json"
    bad.write_text("{ models: { // JSON5 comments are fine, this brace is not\n")
    spec = openclaw_spec().model_copy(update={"env": {"OPENCLAW_CONFIG_PATH": str(bad)}})
    with pytest.raises(ConfigError, match=rf"openclaw: its config {bad} does not parse"):
        await supervisor.create(spec)


@pytest.fixture
def running_gateway(tmp_path: Path) -> Iterator[tuple[str, str, subprocess.Popen[str]]]:
    token = secrets.token_urlsafe(12)
    env = {**os.environ, "OPENCLAW_GATEWAY_TOKEN": token, **script_env()}
    proc = subprocess.Popen(
        [sys.executable, str(FAKE_OPENCLAW), "gateway", "run", "--port", "0"],
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
        assert line, "the fake gateway ended before listening"
    try:
        url = re.sub(r"\x1b\[[0-9;]*m", "", line.split("listening on ")[1]).strip()
        yield url, token, proc
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


async def test_attach_to_a_running_gateway_and_detach_on_release(
    supervisor: Supervisor,
    recorder: EventRecorder,
    running_gateway: tuple[str, str, subprocess.Popen[str]],
) -> None:
    endpoint, token, proc = running_gateway
    spec = SessionSpec(harness="openclaw", name="att", endpoint=endpoint, password=token)
    session = await supervisor.create(spec)
    assert session.driver.process is None and session.identity.pid is None
    await send(supervisor, "att", "hello bash:pwd")
    await recorder.wait_for("turn.completed")
    key = session.identity.conversation_id
    info = await supervisor.release("att")
    assert info.reason == "released: release requested" and not info.signals_sent
    assert proc.poll() is None  # the gateway is not ours: it still runs

    # The conversation goes on in a new session that resumes the key.
    again = spec.model_copy(update={"name": "again", "resume": key})
    resumed = await supervisor.create(again)
    assert resumed.identity.conversation_id == key
    await send(supervisor, "again", "and again")
    await recorder.wait_for("turn.completed", where=lambda e: e.session == "again")


async def test_a_wrong_token_fails_the_start_at_once(
    supervisor: Supervisor, running_gateway: tuple[str, str, subprocess.Popen[str]]
) -> None:
    endpoint, _, _ = running_gateway
    spec = SessionSpec(harness="openclaw", name="bad", endpoint=endpoint, password="wrong")
    with pytest.raises(Exception, match=r"refused the connection: unauthorized: gateway token"):
        await supervisor.create(spec)

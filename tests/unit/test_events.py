"""Events and receipts serialize to JSON with stable names and parse back."""

from __future__ import annotations

import typing

import pytest
from pydantic import TypeAdapter

from agent_relay_runtime import events as ev
from agent_relay_runtime.contract import (
    Accepted,
    Deferred,
    Delivered,
    Evidence,
    ExitInfo,
    Failed,
    MessageReceipt,
    RelayMessage,
    SessionMode,
    SessionState,
    SignalSource,
)

BASE = {"session": "s1", "harness": "fake"}
IDS = {"message_id": "msg_1", "delivery_id": "dlv_1", "session": "s1"}

SAMPLES = [
    ev.SessionStarted(**BASE, pid=1, mode=SessionMode.PTY, command=["x"]),
    ev.SessionReady(**BASE, after_ms=1.5),
    ev.SessionBlocked(**BASE, reason="dialog", screen="Trust?"),
    ev.SessionExited(**BASE, exit=ExitInfo(exit_code=0, graceful=True)),
    ev.SessionFailed(**BASE, reason="crash", exit_code=3),
    ev.StatusChanged(
        **BASE,
        previous=SessionState.IDLE,
        state=SessionState.BUSY,
        reason="r",
        signal=SignalSource.SCREEN,
    ),
    ev.TurnStarted(**BASE, turn=1),
    ev.TurnCompleted(**BASE, turn=1, outcome="completed"),
    ev.TranscriptChunk(**BASE, role="assistant", text="hi"),
    ev.ToolCalled(**BASE, call_id="t1", tool="Bash", input={"command": "ls"}),
    ev.ToolCompleted(**BASE, call_id="t1", tool="Bash", output="ok"),
    ev.ToolFailed(**BASE, call_id="t1", tool="Bash", error="no"),
    ev.ApprovalRequested(**BASE, approval_id="apr_1", tool="Bash", input={}, policy="ask"),
    ev.ApprovalResolved(**BASE, approval_id="apr_1", tool="Bash", decision="deny", by="timeout"),
    ev.FileChanged(**BASE, path="/a", change="written"),
    ev.CommandStarted(**BASE, call_id="t1", command="ls"),
    ev.CommandCompleted(**BASE, call_id="t1", command="ls", exit_code=0),
    ev.UsageUpdated(**BASE, input_tokens=1, output_tokens=2, cost_usd=0.1),
    ev.DeliveryAccepted(**BASE, receipt=Accepted(**IDS)),
    ev.DeliveryDeferred(**BASE, receipt=Deferred(**IDS, reason="busy")),
    ev.DeliveryDelivered(**BASE, receipt=Delivered(**IDS, evidence=Evidence(kind="hook"))),
    ev.DeliveryFailed(**BASE, receipt=Failed(**IDS, reason="x", retryable=True)),
    ev.ProtocolError(**BASE, reason="not JSON", size=3, preview="abc"),
]


def test_every_event_class_has_a_sample() -> None:
    union = typing.get_args(typing.get_args(ev.SessionEvent)[0])
    assert set(union) == {type(s) for s in SAMPLES}


@pytest.mark.parametrize("event", SAMPLES, ids=lambda e: e.type)
def test_event_round_trips_through_json(event: ev.SessionEvent) -> None:
    text = event.model_dump_json()
    assert ev.parse_event(text) == event
    data = event.model_dump(mode="json")
    assert data["type"] == event.type and data["session"] == "s1" and "at" in data


def test_event_names_are_stable() -> None:
    names = sorted(s.type for s in SAMPLES)
    assert names == sorted(
        [
            "session.started", "session.ready", "session.blocked", "session.exited",
            "session.failed", "status.changed", "turn.started", "turn.completed",
            "transcript.chunk", "tool.called", "tool.completed", "tool.failed",
            "tool.approval.requested", "tool.approval.resolved",
            "file.changed", "command.started", "command.completed", "usage.updated",
            "delivery.accepted", "delivery.deferred", "delivery.delivered",
            "delivery.failed", "protocol.error",
        ]
    )  # fmt: skip


def test_receipts_are_a_discriminated_union_with_stable_fields() -> None:
    adapter: TypeAdapter[MessageReceipt] = TypeAdapter(MessageReceipt)
    failed = adapter.validate_python({**IDS, "status": "failed", "reason": "x", "retryable": False})
    assert isinstance(failed, Failed) and failed.final
    deferred = Deferred(**IDS, reason="busy")
    assert set(deferred.model_dump()) == {
        "message_id", "delivery_id", "session", "at", "status", "reason", "available_at",
    }  # fmt: skip
    assert not deferred.final and not Accepted(**IDS).final


def test_messages_render_a_header_only_when_they_have_a_sender() -> None:
    assert RelayMessage(text="hi").render() == "hi"
    rendered = RelayMessage(id="msg_9", text="hi", sender="alice", channel="ops").render()
    assert rendered == "Relay message from alice in #ops [msg_9]: hi"

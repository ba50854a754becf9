"""The node protocol's frames: every example frame of the relaycast protocol
(tests/data/relaycast-wire/, from AgentWorkforce/relay) round-trips, and bad frames are
refused with the protocol's error code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent_relay_runtime.relay import wire

VECTORS = sorted((Path(__file__).parents[1] / "data" / "relaycast-wire").glob("*.json"))


def test_there_are_vectors_for_every_frame_type_seen() -> None:
    assert len(VECTORS) == 15


@pytest.mark.parametrize("path", VECTORS, ids=lambda p: p.stem)
def test_each_example_frame_round_trips(path: Path) -> None:
    original = json.loads(path.read_text())
    frame = wire.decode(path.read_text())
    assert frame.type == original["type"]
    assert json.loads(wire.encode(frame)) == original
    assert wire.decode(wire.encode(frame)) == frame


def test_decoded_frames_are_typed() -> None:
    deliver = wire.decode((VECTORS[0].parent / "deliver.json").read_text())
    assert isinstance(deliver, wire.Deliver)
    assert (deliver.seq, deliver.mode, deliver.payload.type) == (43, "wait", "message.created")
    ack = wire.decode('{"v":1,"type":"delivery.ack","agent":"a","up_to_seq":7}')
    assert isinstance(ack, wire.DeliveryAck) and ack.up_to_seq == 7


def test_frames_built_in_code_encode_with_their_type_and_version() -> None:
    reply = json.loads(wire.encode(wire.Reply(id="r1", data={"x": 1})))
    assert reply == {"v": 1, "type": "reply", "ok": True, "id": "r1", "data": {"x": 1}}
    error = json.loads(wire.encode(wire.Error(id="r2", code="bad", message="no")))
    assert error == {
        "v": 1,
        "type": "error",
        "ok": False,
        "id": "r2",
        "code": "bad",
        "message": "no",
    }


def test_a_frame_without_a_version_is_version_1() -> None:
    # relaycast-sdk 1.0.0 answers a ping with {"type": "pong"}.
    assert isinstance(wire.decode('{"type":"pong"}'), wire.Pong)


def test_unknown_fields_of_a_newer_peer_are_kept() -> None:
    text = '{"v":1,"type":"ping","sent_at":"2026-01-01T00:00:00Z"}'
    assert json.loads(wire.encode(wire.decode(text))) == json.loads(text)


@pytest.mark.parametrize(
    ("raw", "code", "says"),
    [
        ("{not json", "invalid_json", "not JSON"),
        ("[1]", "invalid_frame", "not a JSON object"),
        ('{"v":2,"type":"ping"}', "unsupported_version", "version 2"),
        ('{"v":1,"type":"teleport"}', "unknown_type", "'teleport'"),
        ('{"v":1,"type":"delivery.ack","agent":"a"}', "invalid_frame", "up_to_seq: Field required"),
        ('{"v":1,"type":"delivery.ack","agent":"a","up_to_seq":-1}', "invalid_frame", "up_to_seq"),
        ('{"v":1,"type":"action.result","invocation_id":"i"}', "invalid_frame",
         "either output or error"),
        ('{"v":1,"type":"deliver","delivery_id":"d","agent_id":"a","agent":"a","msg_id":"m",'
         '"seq":1,"mode":"shout","payload":{"type":"message.created","data":{}}}',
         "invalid_frame", "mode"),
    ],
)  # fmt: skip
def test_bad_frames_are_refused_with_a_code(raw: str, code: str, says: str) -> None:
    with pytest.raises(wire.WireError, match=says) as caught:
        wire.decode(raw)
    assert caught.value.code == code

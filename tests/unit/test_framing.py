"""JSON-lines framing: long lines accepted, longer ones and garbage reported, none fatal."""

from __future__ import annotations

import json

from agent_relay_runtime.transports.framing import FramingError, JsonLinesDecoder, encode_line


def feed_in_chunks(decoder: JsonLinesDecoder, data: bytes, size: int) -> list[object]:
    out: list[object] = []
    for i in range(0, len(data), size):
        out += decoder.feed(data[i : i + size])
    return out + decoder.finish()


def test_objects_split_across_chunks_are_reassembled() -> None:
    data = b"".join(encode_line({"n": i, "text": "x" * i}) for i in range(200))
    out = feed_in_chunks(JsonLinesDecoder(), data, 7)
    assert [o["n"] for o in out] == list(range(200))  # type: ignore[index]


def test_a_16_mib_line_is_accepted() -> None:
    big = {"type": "assistant", "text": "y" * (16 * 1024 * 1024)}
    data = encode_line(big) + encode_line({"after": True})
    out = feed_in_chunks(JsonLinesDecoder(), data, 256 * 1024)
    assert out[0] == big and out[1] == {"after": True}


def test_an_over_long_line_is_reported_once_and_skipped() -> None:
    decoder = JsonLinesDecoder(max_line=1000)
    data = b'{"a": "' + b"z" * 5000 + b'"}\n' + encode_line({"ok": 1})
    out = feed_in_chunks(decoder, data, 300)
    errors = [o for o in out if isinstance(o, FramingError)]
    assert len(errors) == 1
    assert errors[0].size == 5009 and "longer than 1000" in errors[0].reason
    assert out[-1] == {"ok": 1}


def test_an_over_long_line_in_one_chunk_is_reported() -> None:
    decoder = JsonLinesDecoder(max_line=10)
    out = decoder.feed(b'{"aaaaaaaaaaaaa": 1}\n{"b":2}\n')
    assert isinstance(out[0], FramingError) and out[1] == {"b": 2}


def test_garbage_and_non_objects_are_reported_not_fatal() -> None:
    decoder = JsonLinesDecoder()
    out = decoder.feed(b'this is not json {\n[1, 2]\n\n{"fine": true}\r\n')
    assert isinstance(out[0], FramingError) and out[0].reason.startswith("not JSON")
    assert out[0].preview == "this is not json {"
    assert isinstance(out[1], FramingError) and "not an object" in out[1].reason
    assert out[2] == {"fine": True}


def test_a_last_line_without_newline_is_decoded_at_end() -> None:
    decoder = JsonLinesDecoder()
    assert decoder.feed(json.dumps({"tail": 1}).encode()) == []
    assert decoder.finish() == [{"tail": 1}]

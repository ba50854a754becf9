"""uvicorn's httptools protocol, sending a response's head and body in one write.

uvicorn writes the status line and headers when the app sends ``http.response.start``
and the body when it sends ``http.response.body``: two ``send`` calls, two TCP segments,
and a client woken twice for every answer. The relay answers every request with one
start and one body in a row, so holding the head until the body comes (or until the
loop has run what is ready, whichever is first) makes them one write: measured on the
REST bench, one syscall fewer a request on the relay and on the client.

Once the connection is handed to a websocket protocol (an upgrade), every frame written
while the loop runs what is ready goes out in one write when it has: a node's link sends
a message's deliveries (one `deliver` frame each) in a row, and a write a frame cost a
syscall and a wake-up of the node each (on the node bench, ~16% of the relay's event loop
went to `send`).
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

from uvicorn._types import ASGISendEvent
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.http11 import Request
from websockets.protocol import State

try:
    from websockets.speedups import apply_mask
except ImportError:  # websockets built without its C extension
    from websockets.utils import apply_mask

__all__ = [
    "TEXT_WRITER",
    "CoalescingHttpToolsProtocol",
    "TextFrameWebSocketProtocol",
    "text_writer",
]


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """`HttpToolsProtocol` over a transport that joins a write to the one after it."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's is one too, without subclassing asyncio's).
        super().connection_made(_JoiningTransport(cast(asyncio.Transport, transport)))


class _JoiningTransport(asyncio.Transport):
    """Holds a write until the callbacks ready now have run, and the writes made meanwhile
    go out with it as one; over HTTP, an answer's head goes out at once with its body
    (the write after it). Every other call sends what is held first."""

    def __init__(self, transport: asyncio.Transport) -> None:
        super().__init__()
        self._transport = transport
        self._held: list[bytes] = []
        self._frames = False  # after an upgrade: frames, held until the loop has run
        self._loop = asyncio.get_running_loop()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._held:
            self._held.append(bytes(data))
            self._loop.call_soon(self._flush)
        elif self._frames:
            self._held.append(bytes(data))
        else:
            held, self._held = self._held, []
            self._transport.write(b"".join(held) + data)

    def _flush(self) -> None:
        if self._held:
            held, self._held = self._held, []
            self._transport.write(held[0] if len(held) == 1 else b"".join(held))

    def writelines(self, list_of_data: Any) -> None:
        self._flush()
        self._transport.writelines(list_of_data)

    def write_eof(self) -> None:
        self._flush()
        self._transport.write_eof()

    def can_write_eof(self) -> bool:
        return self._transport.can_write_eof()

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def abort(self) -> None:
        self._held = []
        self._transport.abort()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._flush()
        self._frames = True
        self._transport.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._transport.get_protocol()

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def is_reading(self) -> bool:
        return self._transport.is_reading()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(map(len, self._held))

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._transport.get_write_buffer_limits()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._transport.set_write_buffer_limits(high, low)


class TextFrameWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's sans-I/O websocket protocol, reading and writing whole text messages
    itself while the connection is open; anything else goes the usual way, through
    websockets' protocol.

    A node's socket carries small JSON text frames, ten a message each way at fan-out ten
    (a ``deliver`` out, a ``delivery.ack`` in). websockets' generator-based parser took
    ~5.6 µs a frame and its `Frame` and output buffer ~3.2 µs to write one; a text frame
    by hand is a 2-14 byte head, the payload, and a mask (websockets' C `apply_mask`).

    Reading: only whole frames are taken out of what arrives (the start of one that is
    not whole waits here for the rest), so websockets' parser, when handed a frame, is
    always at a frame's start: a final, masked, text frame under the size limit with
    valid UTF-8 is read here; a control frame (ping, pong, close) is handed to websockets
    whole, and uvicorn answers it as usual; from a fragment, a binary or an unknown
    frame, an oversize or invalid one (websockets refuses it and closes with the right
    code), or bytes that came before the handshake completed, websockets reads every
    frame of the connection."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._by_hand = True  # False: websockets reads every frame from now on
        self._reads_before_open = 0
        self._partial = b""  # the start of a frame that is not whole yet

    def data_received(self, data: bytes) -> None:
        if not self.handshake_complete:
            # The first read is the upgrade request; a second means frames came early,
            # and websockets may hold part of one: it keeps reading this connection.
            self._reads_before_open += 1
            self._by_hand = self._reads_before_open == 1
            super().data_received(data)
            return
        if self._partial:
            data, self._partial = self._partial + data, b""
        if not self._by_hand or self.close_sent or self.conn.state is not State.OPEN:
            self._by_hand = False
            super().data_received(data)
            return
        at, end = 0, len(data)
        limit = self.conn.max_size
        while at < end:
            found = _head_at(data, at, end)
            if found is None:  # the head is not whole yet
                self._partial = data[at:]
                return
            head, size = found
            first = data[at]
            control = first & 0xF0 == 0x80 and first & 0x0F >= 0x8  # final, no RSV bits
            if (
                not data[at + 1] & 0x80
                or (limit is not None and size > limit)
                or not (first == 0x81 or control)
            ):
                break  # not masked, too big, or not a final text or control frame
            stop = at + head + size
            if stop > end:  # the payload is not whole yet
                self._partial = data[at:]
                return
            if control:
                super().data_received(data[at:stop])  # whole: websockets answers it
                at = stop
                if self.conn.state is not State.OPEN:
                    break  # closing: websockets reads what follows
                continue
            try:
                text = apply_mask(data[at + head : stop], data[at + head - 4 : at + head]).decode()
            except UnicodeDecodeError:
                break
            self._text_received(text)
            at = stop
        if at < end:  # websockets reads from here on (and refuses what must be refused)
            self._by_hand = False
            super().data_received(data[at:])

    def _text_received(self, text: str) -> None:
        """As uvicorn hands a text message to the app."""
        if self.close_sent:
            return  # the app is past `websocket.close`: read, and dropped
        self.queue.put_nowait({"type": "websocket.receive", "text": text})
        if not self.read_paused:
            self.read_paused = True
            self.transport.pause_reading()

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)  # none if the handshake was refused
        if scope is not None:
            scope.setdefault("extensions", {})[TEXT_WRITER] = {"write": self.write_texts}

    def write_texts(self, texts: Sequence[str]) -> bool:
        """Write text messages now, in one write, if the connection is open and its
        transport takes writes; False, writing nothing, if not (send them as ASGI
        messages: that waits for the transport, or fails as the state says)."""
        if not (
            self.writable.is_set()
            and self.handshake_complete
            and not self.close_sent
            and not self.disconnected
            and self.initial_response is None
            and self.conn.state is State.OPEN
        ):
            return False
        out: list[bytes] = []
        for text in texts:
            data = text.encode()
            out += (_text_frame_head(len(data)), data)
        self.transport.write(b"".join(out))
        return True

    async def send(self, message: ASGISendEvent) -> None:
        text = message.get("text") if message["type"] == "websocket.send" else None
        if text is None or message.get("bytes") is not None or not self.write_texts([str(text)]):
            await super().send(message)


# The ASGI scope extension through which an app served by `TextFrameWebSocketProtocol`
# writes its text messages straight to the connection (`text_writer`).
TEXT_WRITER = "agent_relay.text_writer"


def text_writer(scope: Mapping[str, Any]) -> Callable[[Sequence[str]], bool] | None:
    """The connection's `TextFrameWebSocketProtocol.write_texts`, if the server offers it:
    a node link writes what it has queued in one call, not an ASGI message a frame
    through Starlette's `WebSocket` and two middlewares (~5 µs a frame, ten a message)."""
    offered = (scope.get("extensions") or {}).get(TEXT_WRITER)
    return offered.get("write") if isinstance(offered, dict) else None


def _head_at(data: bytes, at: int, end: int) -> tuple[int, int] | None:
    """The length of the head (with its mask, if the frame is masked) and the payload's
    size of the frame at ``at``; None if its head is not whole in ``data[at:end]``."""
    if end - at < 2:
        return None
    second = data[at + 1]
    size, head = second & 0x7F, 2
    if size == 126:
        if end - at < 4:
            return None
        size, head = int.from_bytes(data[at + 2 : at + 4]), 4
    elif size == 127:
        if end - at < 10:
            return None
        size, head = int.from_bytes(data[at + 2 : at + 10]), 10
    if second & 0x80:
        head += 4
        if end - at < head:
            return None
    return head, size


_HEAD_16 = struct.Struct("!BBH")
_HEAD_64 = struct.Struct("!BBQ")


def _text_frame_head(size: int) -> bytes:
    """The head of a final, unmasked text frame of ``size`` bytes (RFC 6455 §5.2)."""
    if size < 126:
        return bytes((0x81, size))
    if size < 1 << 16:
        return _HEAD_16.pack(0x81, 126, size)
    return _HEAD_64.pack(0x81, 127, size)

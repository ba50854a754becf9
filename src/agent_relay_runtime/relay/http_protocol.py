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
from typing import Any, cast

from uvicorn._types import ASGISendEvent
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.protocol import State

__all__ = ["CoalescingHttpToolsProtocol", "TextFrameWebSocketProtocol"]


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
    """uvicorn's sans-I/O websocket protocol, writing a text message's frame itself while
    the connection is open: a server's frame is a 2-10 byte head and the payload as it
    is (unmasked, no extension: the relay turns per-message deflate off), and building it
    through websockets' `Frame` and its output buffer cost ~5 µs a frame (ten `deliver`
    frames a message fanned out to ten agents). Anything else, and any state but open,
    goes the usual way."""

    async def send(self, message: ASGISendEvent) -> None:
        text = message.get("text") if message["type"] == "websocket.send" else None
        if (
            text is not None
            and message.get("bytes") is None
            and self.writable.is_set()  # else wait for the transport, the usual way
            and self.handshake_complete
            and not self.close_sent
            and not self.disconnected
            and self.initial_response is None
            and self.conn.state is State.OPEN
        ):
            data = str(text).encode()
            self.transport.write(_text_frame_head(len(data)))
            self.transport.write(data)
            return
        await super().send(message)


_HEAD_16 = struct.Struct("!BBH")
_HEAD_64 = struct.Struct("!BBQ")


def _text_frame_head(size: int) -> bytes:
    """The head of a final, unmasked text frame of ``size`` bytes (RFC 6455 §5.2)."""
    if size < 126:
        return bytes((0x81, size))
    if size < 1 << 16:
        return _HEAD_16.pack(0x81, 126, size)
    return _HEAD_64.pack(0x81, 127, size)

"""picows' frames made into messages, handed to the bridge from picows' own callback.

``picows.websockets`` queues every message and wakes a coroutine per ``recv()``; at 100k
frames/s that coroutine, the text decoded to ``str`` and encoded back, and the queue cost more
than the bridge's own work (docs/performance.md). :class:`FrameListener` takes the data frames
itself instead: a complete frame (the usual case) goes from ``on_ws_frame`` straight to the
bridge's consumer, as bytes; fragmented and compressed messages are assembled here first. Until
a consumer is attached (subscribing, a rotation's first frame) and while the consumer has
paused reading, messages wait in a queue, in order. Control frames (pong, close) stay with
``picows.websockets``, which answers them and computes the close exception.

What the connection must refuse, it refuses as ``websockets`` does: a protocol error raises
``WSProtocolError`` (picows closes with its code), invalid UTF-8 in a text message closes with
1007, and nothing after a frame that failed the connection is delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import Any

from picows import WSCloseCode, WSFrame, WSMsgType, WSProtocolError, WSTransport
from picows.websockets import ClientConnection as PicowsClientConnection

from .source import FrameConsumer

_TEXT = WSMsgType.TEXT
_BINARY = WSMsgType.BINARY
_CONTINUATION = WSMsgType.CONTINUATION


class FrameListener(PicowsClientConnection):
    """One connection's listener; see the module docstring.

    :meth:`configure` must be called right after construction (the base class's constructor
    takes only its own options).
    """

    ws_transport: WSTransport
    disconnected: asyncio.Future[None]
    """The task waiting for the end of the connection (kept referenced, see ``connected``)."""
    failed = False

    def configure(self, deflate: Any, max_size: int, max_queue: int) -> None:
        """``deflate``: the negotiated permessage-deflate (or None); ``max_size``: the largest
        message; ``max_queue``: messages queued before reading pauses (no consumer yet)."""
        self._deflate = deflate
        self._max_size = max_size
        self._max_queue = max_queue
        self._fragments: list[bytes] = []
        self._fragments_size = 0
        self._fragments_binary = False
        self._queue: deque[tuple[bytes, bool]] = deque()
        self._consumer: FrameConsumer | None = None
        self._reading_paused = False
        self.consumer_paused = False
        """The consumer asked to pause; messages queue until :meth:`resume`."""
        self._waiter: asyncio.Future[None] | None = None
        self.ended = False

    # -- picows' callbacks --------------------------------------------------------------

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.ws_transport = transport
        self.disconnected = asyncio.ensure_future(_disconnected(transport))
        super().on_ws_connected(transport)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        super().on_ws_disconnected(transport)
        self.ended = True
        self._wake()

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        """The hot path: a complete, uncompressed data frame is delivered at once."""
        if self.failed:
            return
        msg_type = frame.msg_type
        if (
            (msg_type is _TEXT or msg_type is _BINARY)
            and frame.fin
            and not frame.rsv1
            and not self._fragments
        ):
            self._deliver(frame.get_payload_as_bytes(), msg_type is _BINARY)
            return
        try:
            if msg_type is _TEXT or msg_type is _BINARY or msg_type is _CONTINUATION:
                self._assemble(frame)
            else:  # pong, close: the base class answers them (and refuses unknown opcodes)
                PicowsClientConnection.on_ws_frame(self, transport, frame)
        except Exception:
            self.failed = True
            raise

    # -- messages -----------------------------------------------------------------------

    def _assemble(self, frame: WSFrame) -> None:
        """A fragment or a compressed frame: checked and added to the message in progress."""
        continuation = frame.msg_type is _CONTINUATION
        if continuation != bool(self._fragments):
            expected = "continuation" if self._fragments else "data"
            raise WSProtocolError(WSCloseCode.PROTOCOL_ERROR, f"expected a {expected} frame")
        if frame.rsv1 and self._deflate is None:
            raise WSProtocolError(
                WSCloseCode.PROTOCOL_ERROR, "compressed frame without permessage-deflate"
            )
        if not continuation:
            self._fragments_binary = frame.msg_type is _BINARY
            self._fragments_size = 0
        if self._deflate is not None:
            left = max(self._max_size - self._fragments_size, 0)
            payload: bytes = self._deflate.decode_frame(frame, left)
        else:
            payload = frame.get_payload_as_bytes()
        self._fragments_size += len(payload)
        if self._fragments_size > self._max_size:
            raise WSProtocolError(WSCloseCode.MESSAGE_TOO_BIG, "message too big")
        if not frame.fin:
            self._fragments.append(payload)
            return
        if self._fragments:
            self._fragments.append(payload)
            payload = b"".join(self._fragments)
            self._fragments.clear()
        self._deliver(payload, self._fragments_binary)

    def _deliver(self, payload: bytes, binary: bool) -> None:
        if not binary and not payload.isascii() and not self._valid_text(payload):
            return
        consumer = self._consumer
        if consumer is None or self.consumer_paused:
            self._queue.append((payload, binary))
            self._wake()
            if consumer is None and len(self._queue) >= self._max_queue:
                self._pause_reading()
            return
        if consumer(payload, binary):
            self._pause_consumer()

    def _valid_text(self, payload: bytes) -> bool:
        """UTF-8, or the connection fails with 1007 as websockets fails it."""
        try:
            payload.decode()
        except UnicodeDecodeError as exc:
            self.failed = True
            transport = self.ws_transport
            transport.send_close(WSCloseCode.INVALID_TEXT, f"{exc.reason} at position {exc.start}")
            transport.disconnect(False)
            return False
        return True

    # -- the bridge's side --------------------------------------------------------------

    def next_message(self) -> tuple[bytes, bool] | None:
        """The oldest queued message, if any (reading resumes as the queue empties)."""
        if not self._queue:
            return None
        message = self._queue.popleft()
        if self._consumer is None and len(self._queue) <= self._max_queue // 4:
            self._resume_reading()
        return message

    def attach(self, consumer: FrameConsumer) -> None:
        """From now on, messages go to ``consumer``: the queued ones first."""
        self._consumer = consumer
        self.resume()

    def resume(self) -> None:
        """The consumer has room again: the queued messages first, then the socket."""
        consumer = self._consumer
        assert consumer is not None
        self.consumer_paused = False
        queue = self._queue
        while queue:
            payload, binary = queue.popleft()
            if consumer(payload, binary):
                self._pause_consumer()
                return
        self._resume_reading()

    async def wait(self) -> None:
        """Until a message is queued, the consumer pauses, or the connection ends."""
        if self._queue or self.consumer_paused or self.ended:
            return
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def _pause_consumer(self) -> None:
        self.consumer_paused = True
        self._pause_reading()
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _pause_reading(self) -> None:
        if not self._reading_paused:
            self._reading_paused = True
            self.ws_transport.underlying_transport.pause_reading()

    def _resume_reading(self) -> None:
        if self._reading_paused and not self.ended:
            self._reading_paused = False
            self.ws_transport.underlying_transport.resume_reading()


async def _disconnected(transport: WSTransport) -> None:
    """Wait for the end of the connection, whatever picows raises about it.

    picows fails its disconnect future with the protocol error it closed for (e.g. 1009),
    which the bridge learns from the close exception; left unretrieved, asyncio would log it
    as an ERROR ("Future exception was never retrieved") for every such close.
    """
    with contextlib.suppress(Exception):
        await transport.wait_disconnected()

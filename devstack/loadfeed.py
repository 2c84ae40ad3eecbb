"""The benchmarks' load feed: pre-encoded, numbered, timestamped text frames on raw sockets.

A load server must not be the bottleneck it measures, so frames are encoded once into a batch
and only their sequence numbers and send times are rewritten before each ``sendall``; the
WebSocket handshake is the minimal server side of RFC 6455. Used by ``bench/run.py`` (one
connection) and ``bench/operator_scale.py`` (one per source), and, as :class:`PacedFeed` in a
thread of its own, by the cluster failover tests, which need tens of thousands of numbered
frames a second while the test's event loop runs the bridge.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import random
import socket
import threading
import time
from types import TracebackType
from typing import Final

#: ``{"seq":"<12 digits>","ts":"<19 digits>","pad":"<random>"}``: valid JSON, fixed offsets.
_PREFIX = b'{"seq":"'
SEQ_AT, SEQ_LEN = 8, 12
TS_AT, TS_LEN = 28, 19
_OVERHEAD = 58
#: Bytes of frames written per ``sendall``.
BATCH_BYTES = 256 * 1024
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def frame_payload(size: int, seq: int, ts_ns: int, pad: bytes) -> bytes:
    """One frame's payload of exactly ``size`` bytes (``pad`` is at least the rest)."""
    head = b'%s%012d","ts":"%019d","pad":"' % (_PREFIX, seq, ts_ns)
    return head + pad[: size - _OVERHEAD] + b'"}'


def random_pad(length: int, rng: random.Random) -> bytes:
    """Barely compressible ASCII (base64 of random bytes): lz4 gains little, as on real feeds."""
    return base64.b64encode(rng.randbytes(length))[:length]


def frame_header(length: int) -> bytes:
    """An unmasked server-to-client FIN text frame header."""
    if length < 126:
        return bytes((0x81, length))
    if length < 65536:
        return bytes((0x81, 126)) + length.to_bytes(2, "big")
    return bytes((0x81, 127)) + length.to_bytes(8, "big")


def frames_per_batch(size: int) -> int:
    return max(1, BATCH_BYTES // (size + 10))


def frame_batch(size: int, frames: int, rng: random.Random) -> tuple[bytearray, int]:
    """``frames`` whole frames of ``size`` payload bytes back to back (numbers still zero),
    and the length of one frame, header included."""
    header = frame_header(size)
    batch = bytearray()
    for _ in range(frames):
        batch += header + frame_payload(size, 0, 0, random_pad(size, rng))
    return batch, len(header) + size


def number_batch(
    batch: bytearray, frame_length: int, size: int, first: int, count: int, ts_ns: int
) -> None:
    """Number the first ``count`` frames of ``batch`` from ``first`` and stamp ``ts_ns``."""
    stamp = b"%019d" % ts_ns
    header_length = frame_length - size
    for index in range(count):
        at = index * frame_length + header_length
        batch[at + SEQ_AT : at + SEQ_AT + SEQ_LEN] = b"%012d" % (first + index)
        batch[at + TS_AT : at + TS_AT + TS_LEN] = stamp


def sequence_of(payload: bytes) -> int:
    return int(payload[SEQ_AT : SEQ_AT + SEQ_LEN])


def sent_at_ms(payload: bytes) -> float:
    """The server's send time written into the frame, epoch milliseconds (as Kafka's)."""
    return int(payload[TS_AT : TS_AT + TS_LEN]) / 1e6


def accept_handshake(sock: socket.socket) -> None:
    """Answer a client's opening handshake with 101 (no extensions, no subprotocol)."""
    request = b""
    while b"\r\n\r\n" not in request:
        request += sock.recv(4096)
    key = next(
        line.split(b":", 1)[1].strip()
        for line in request.split(b"\r\n")
        if line.lower().startswith(b"sec-websocket-key:")
    )
    accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())
    sock.sendall(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
    )


class PacedFeed:
    """A numbered load feed at a steady rate, served from a thread: the bridge under test runs
    on the caller's event loop, and a feed on that loop would steal the time it measures.

    Connections are served one after another; the numbering goes on across them, so a bridge
    that reconnected would show up as ``connections > 1``, never as a hole. Sending stops at
    :meth:`release`'s limit, and each connection ends when the client closes it (its close
    frame is answered). A client that cannot keep up (a bridge that stopped reading) blocks
    ``sendall``; once it reads again the feed catches up on the frames that fell due meanwhile.
    """

    def __init__(self, *, rate: int, size: int = 200) -> None:
        self.rate = rate
        self.size = size
        self.sent = 0
        """Frames sent so far, over all connections (the last ``seq``)."""
        self.connections = 0
        self._limit = 0
        self._released = threading.Condition()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="paced-feed", daemon=True)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self._listener.getsockname()[1]}/load"

    @property
    def released(self) -> int:
        """The highest number :meth:`release` allowed so far."""
        return self._limit

    def release(self, count: int) -> None:
        """Let the feed send frames up to number ``count`` (in total, at its rate)."""
        with self._released:
            self._limit = max(self._limit, count)
            self._released.notify_all()

    def __enter__(self) -> PacedFeed:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stopping.set()
        with self._released:
            self._released.notify_all()
        self._listener.close()
        self._thread.join(10)

    def _serve(self) -> None:
        with contextlib.suppress(OSError):  # the listener closed: the feed stops
            while not self._stopping.is_set():
                sock, _ = self._listener.accept()
                with sock:
                    self.connections += 1
                    self._stream(sock)

    def _stream(self, sock: socket.socket) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        accept_handshake(sock)
        closed, sending = threading.Event(), threading.Lock()
        reader = threading.Thread(target=_answer_close, args=(sock, closed, sending), daemon=True)
        reader.start()
        per_batch = frames_per_batch(self.size)
        template, slot = frame_batch(self.size, per_batch, random.Random(self.size))
        view = memoryview(template)
        paced_from, paced_sent = time.monotonic(), self.sent
        try:
            while not (closed.is_set() or self._stopping.is_set()):
                with self._released:
                    if self.sent >= self._limit:
                        self._released.wait(0.1)
                        paced_from, paced_sent = time.monotonic(), self.sent
                        continue
                    limit = self._limit
                due = paced_sent + int((time.monotonic() - paced_from) * self.rate) - self.sent
                batch = min(per_batch, due, limit - self.sent)
                if batch <= 0:
                    time.sleep(0.001)
                    continue
                number_batch(template, slot, self.size, self.sent + 1, batch, time.time_ns())
                with sending:  # never a data frame after the answer to the client's close
                    if closed.is_set():
                        break
                    sock.sendall(view[: batch * slot])
                self.sent += batch
        except OSError:
            return
        closed.wait(60)
        reader.join(5)


#: The server's answer to a client's close frame: close, code 1000.
CLOSE_ANSWER: Final = b"\x88\x02\x03\xe8"


def wait_for_client_close(sock: socket.socket) -> bool:
    """Read the client's frames (masked, RFC 6455) until its close frame: True then, False
    at EOF or a socket error (a timeout the caller set included)."""
    data = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return False
            data += chunk
            while len(data) >= 2:
                opcode, length = data[0] & 0x0F, data[1] & 0x7F
                start = 2 + {126: 2, 127: 8}.get(length, 0) + 4
                if length >= 126:
                    length = int.from_bytes(data[2 : start - 4], "big")
                if len(data) < start + length:
                    break
                if opcode == 0x8:
                    return True
                data = data[start + length :]
    except OSError:
        return False


def answer_close(sock: socket.socket, timeout: float) -> None:
    """Wait up to ``timeout`` s for the client's close frame, answer it, close the socket."""
    sock.settimeout(timeout)
    try:
        if wait_for_client_close(sock):
            with contextlib.suppress(OSError):
                sock.sendall(CLOSE_ANSWER)
    finally:
        sock.close()


def _answer_close(sock: socket.socket, closed: threading.Event, sending: threading.Lock) -> None:
    """The reader beside a sender: on the client's close frame, stop the sender (``closed``)
    and answer it, between two of the sender's writes."""
    try:
        if wait_for_client_close(sock):
            with sending:
                closed.set()
                with contextlib.suppress(OSError):
                    sock.sendall(CLOSE_ANSWER)
    finally:
        closed.set()

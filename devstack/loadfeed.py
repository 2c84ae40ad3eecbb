"""The benchmarks' load feed: pre-encoded, numbered, timestamped text frames on raw sockets.

A load server must not be the bottleneck it measures, so frames are encoded once into a batch
and only their sequence numbers and send times are rewritten before each ``sendall``; the
WebSocket handshake is the minimal server side of RFC 6455. Used by ``bench/run.py`` (one
connection) and ``bench/operator_scale.py`` (one per source).
"""

from __future__ import annotations

import base64
import hashlib
import random
import socket

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

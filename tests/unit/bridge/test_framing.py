"""Frames to records: bytes unchanged, keys, timestamps and headers."""

import gzip
import zlib
from typing import Any

import pytest

from ws2kafka.bridge.config import Inflate, KafkaSinkSpec
from ws2kafka.bridge.framing import MISSING, FrameRejected, Record, RecordBuilder, compile_pointer


def resolve_pointer(document: Any, pointer: str) -> Any:
    """The bridge's reading of ``pointer`` in ``document`` (None: no such path)."""
    value = compile_pointer(pointer)(document)
    return None if value is MISSING else value


def builder(inflate: Inflate = Inflate.NONE, **kafka: object) -> RecordBuilder:
    spec = KafkaSinkSpec.model_validate({"bootstrapServers": "k", "topic": "t", **kafka})
    return RecordBuilder(spec, source="src", connection_id="c1", inflate=inflate)


def build(made: RecordBuilder, payload: bytes, *, binary: bool = False, seq: int = 7) -> Record:
    return made.build(payload, binary, 1_700_000_000_123_456, seq)


def test_payload_bytes_are_unchanged_and_timestamp_is_receive_time() -> None:
    payload = '{"p": "caf\u00e9"}'.encode()
    record = build(builder(), payload)
    assert record.value == payload
    assert record.key is None
    assert record.timestamp_ms == 1_700_000_000_123


def test_default_headers() -> None:
    record = build(builder(), b"\x00\xff", binary=True)
    assert record.headers == [
        ("ws2kafka.source", b"src"),
        ("ws2kafka.connection", b"c1"),
        ("ws2kafka.seq", b"7"),
        ("ws2kafka.received", b"1700000000123456"),
        ("ws2kafka.type", b"binary"),
    ]


def test_headers_can_be_switched_off() -> None:
    off = {
        "source": False,
        "connectionId": False,
        "sequence": False,
        "receivedAt": False,
        "frameType": False,
    }
    assert build(builder(headers=off), b"x").headers is None


def test_headers_switched_off_one_by_one_leave_the_others_in_order() -> None:
    some = {"connectionId": False, "receivedAt": False}
    assert build(builder(headers=some), b"x", seq=3).headers == [
        ("ws2kafka.source", b"src"),
        ("ws2kafka.seq", b"3"),
        ("ws2kafka.type", b"text"),
    ]


@pytest.mark.parametrize(
    ("payload", "key"),
    [(b'{"s":"BTCUSDT"}', b"BTCUSDT"), (b'{"s":42}', b"42"), (b'{"x":1}', None), (b"nojson", None)],
)
def test_key_from_json_pointer(payload: bytes, key: bytes | None) -> None:
    record = build(builder(key={"source": "jsonPointer", "pointer": "/s"}), payload)
    assert record.key == key
    assert record.value == payload


def test_static_key() -> None:
    assert build(builder(key={"source": "static", "value": "k1"}), b"x").key == b"k1"


def test_timestamp_from_json_pointer_with_unit_and_fallback() -> None:
    spec = {"source": "jsonPointer", "pointer": "/T", "unit": "s"}
    b = builder(timestamp=spec)
    assert build(b, b'{"T": 1700000001.5}').timestamp_ms == 1_700_000_001_500
    assert build(b, b'{"T": "soon"}').timestamp_ms == 1_700_000_000_123


def test_inflate_gzip_and_zlib_binary_frames_only() -> None:
    assert build(builder(Inflate.GZIP), gzip.compress(b"hi"), binary=True).value == b"hi"
    assert build(builder(Inflate.ZLIB), zlib.compress(b"hi"), binary=True).value == b"hi"
    assert build(builder(Inflate.GZIP), b"text").value == b"text"
    with pytest.raises(FrameRejected):
        build(builder(Inflate.GZIP), b"garbage", binary=True)


def test_resolve_pointer_escapes_and_arrays() -> None:
    doc = {"a/b": {"m~n": [10, 20]}}
    assert resolve_pointer(doc, "/a~1b/m~0n/1") == 20
    assert resolve_pointer(doc, "/a~1b/m~0n/9") is None
    assert resolve_pointer(doc, "") == doc

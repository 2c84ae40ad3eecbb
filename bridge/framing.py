"""Turning a received WebSocket frame into a Kafka record, without I/O.

The payload is produced byte for byte as it arrived (text frames as their UTF-8 bytes, binary
frames unchanged, or inflated when configured). JSON is parsed only when a key or timestamp
must be extracted from the frame, so plain pass-through pays nothing for it.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import orjson

from .config import (
    Inflate,
    KafkaSinkSpec,
    KeySource,
    RecordHeadersSpec,
    TimestampSource,
    TimestampUnit,
)

HEADER_SOURCE = "ws2kafka.source"
HEADER_CONNECTION = "ws2kafka.connection"
HEADER_SEQUENCE = "ws2kafka.seq"
HEADER_RECEIVED = "ws2kafka.received"
HEADER_TYPE = "ws2kafka.type"
HEADER_INDEX = "ws2kafka.index"
HEADER_RULE = "ws2kafka.rule"
HEADER_KIND = "ws2kafka.kind"

#: The latest record timestamp taken from a frame (9999-12-31): Kafka's timestamps are int64
#: milliseconds, and a value beyond that (``1e300``, ``Infinity``) would fail in ``produce()``.
MAX_TIMESTAMP_MS = 253_402_300_799_999

_UNIT_TO_MS = {
    TimestampUnit.SECONDS: 1000.0,
    TimestampUnit.MILLISECONDS: 1.0,
    TimestampUnit.MICROSECONDS: 0.001,
    TimestampUnit.NANOSECONDS: 0.000001,
}

Headers = list[tuple[str, str | bytes | None]]


# Not frozen: a frozen dataclass sets each field through object.__setattr__, which costs
# ~0.3 µs per record on the hot path (measured in docs/performance.md); nothing mutates it.
@dataclass(slots=True)
class Record:
    """What is handed to the producer."""

    value: bytes
    key: bytes | None
    timestamp_ms: int
    headers: Headers | None
    topic: str | None = None
    """None: the data topic (``kafka.topic``); else the topic the router named."""


class FrameRejected(ValueError):
    """The frame cannot become a record (e.g. corrupt compressed data); it is counted."""


#: What :func:`lookup` returns for a path that does not exist (JSON ``null`` is a value).
MISSING: Final = object()


def lookup(document: Any, pointer: str) -> Any:
    """The value at an RFC 6901 JSON pointer, or :data:`MISSING`."""
    if pointer == "":
        return document
    node = document
    for raw in pointer[1:].split("/"):
        token = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict):
            if token not in node:
                return MISSING
            node = node[token]
        elif isinstance(node, list) and _is_index(token) and int(token) < len(node):
            node = node[int(token)]
        else:
            return MISSING
    return node


Getter = Callable[[Any], Any]


def compile_pointer(pointer: str) -> Getter:
    """:func:`lookup` of one pointer, compiled once: a one-token pointer (``/ping``, the usual
    case in rules) costs a dict lookup per frame instead of a parse of the pointer."""
    tokens = pointer[1:].split("/") if pointer else []
    if len(tokens) != 1:
        return lambda document: lookup(document, pointer)
    token = tokens[0].replace("~1", "/").replace("~0", "~")
    index = int(token) if _is_index(token) else None

    def get(document: Any) -> Any:
        if type(document) is dict:
            return document.get(token, MISSING)
        if type(document) is list and index is not None and index < len(document):
            return document[index]
        return MISSING

    return get


def _missing(document: Any) -> Any:
    return MISSING


def _getter(pointer: str | None) -> Getter:
    """The compiled getter of an optional pointer (none: every path is missing)."""
    return _missing if pointer is None else compile_pointer(pointer)


def _is_index(token: str) -> bool:
    """An RFC 6901 array index: ASCII digits, no leading zero (``str.isdigit`` accepts "²")."""
    return token.isascii() and token.isdigit() and (token == "0" or token[0] != "0")


def scalar_to_bytes(value: Any) -> bytes | None:
    """A key from a JSON value: strings as UTF-8, numbers/bools/objects as compact JSON.

    JSON may carry lone surrogates (``"\\ud800"``), which strict UTF-8 cannot encode: they are
    kept as their surrogate bytes, so a hostile key never stops the bridge and stays distinct.
    """
    if value is None:
        return None
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    text = json.dumps(value, separators=(",", ":"), sort_keys=True)
    return text.encode("utf-8", "surrogatepass")


def inflate(payload: bytes, method: Inflate) -> bytes:
    """Decompress a binary frame; raises FrameRejected on corrupt data."""
    try:
        if method is Inflate.GZIP:
            return gzip.decompress(payload)
        return zlib.decompress(payload)
    except (OSError, zlib.error, EOFError) as exc:
        raise FrameRejected(f"cannot {method.value}-inflate frame: {exc}") from None


class RecordBuilder:
    """Builds records for one connection; constant headers are encoded once per connection.

    The common case (no inflating, no JSON extraction) takes a short path: about 0.5 µs per
    frame, which matters at 100k frames/s (docs/performance.md).
    """

    def __init__(
        self, spec: KafkaSinkSpec, *, source: str, connection_id: str, inflate: Inflate
    ) -> None:
        self._key_spec = spec.key
        self._static_key = spec.key.value.encode() if spec.key.value is not None else None
        self._key_at = _getter(spec.key.pointer)
        self._timestamp_spec = spec.timestamp
        self._timestamp_at = _getter(spec.timestamp.pointer)
        self._inflate = inflate
        self._needs_json = (
            spec.key.source is KeySource.JSON_POINTER
            or spec.timestamp.source is TimestampSource.JSON_POINTER
        )
        self._plain = not self._needs_json and inflate is Inflate.NONE
        self._plain_key = self._key(None) if not self._needs_json else None
        headers = spec.headers
        self._fixed_headers = _fixed_headers(headers, source, connection_id)
        self._sequence_header = headers.sequence
        self._received_header = headers.received_at
        self._type_header = headers.frame_type

    def build(self, payload: bytes, binary: bool, received_us: int, sequence: int) -> Record:
        """The record of a data frame: its bytes, received at ``received_us`` (epoch µs), the
        ``sequence``-th frame (1-based) of the connection."""
        if self._plain:
            return Record(
                payload,
                self._plain_key,
                received_us // 1000,
                self._headers(binary, received_us, sequence),
            )
        payload = self.decode(payload, binary)
        document = parse_json(payload) if self._needs_json else None
        return self.record(payload, document, binary, received_us, sequence)

    @property
    def needs_json(self) -> bool:
        """The key or the timestamp comes from the frame's JSON."""
        return self._needs_json

    def decode(self, payload: bytes, binary: bool) -> bytes:
        """The frame's bytes as produced: inflated when configured (FrameRejected if corrupt)."""
        if binary and self._inflate is not Inflate.NONE:
            return inflate(payload, self._inflate)
        return payload

    def record(
        self,
        payload: bytes,
        document: Any,
        binary: bool,
        received_us: int,
        sequence: int,
        topic: str | None = None,
        index: int | None = None,
    ) -> Record:
        """The record of a decoded frame, or of its ``index``-th element, and its JSON."""
        headers = self._headers(binary, received_us, sequence)
        if index is not None:
            headers = [*(headers or ()), (HEADER_INDEX, b"%d" % index)]
        return Record(
            payload,
            self._key(document),
            self._timestamp_ms(received_us, document),
            headers,
            topic,
        )

    def control_record(self, payload: bytes, received_us: int, rule: str, kind: str) -> Record:
        """A frame a rule routed to the control topic: as received, named by its rule."""
        headers = self._fixed_headers.copy()
        headers.append((HEADER_RULE, rule.encode()))
        headers.append((HEADER_KIND, kind.encode()))
        return Record(payload, None, received_us // 1000, headers)

    def _key(self, document: Any) -> bytes | None:
        source = self._key_spec.source
        if source is KeySource.NONE:
            return None
        if source is KeySource.STATIC:
            return self._static_key
        value = self._key_at(document)
        return scalar_to_bytes(None if value is MISSING else value)

    def _timestamp_ms(self, received_us: int, document: Any) -> int:
        spec = self._timestamp_spec
        if spec.source is TimestampSource.JSON_POINTER:
            value = self._timestamp_at(document)
            if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) < 25:
                value = int(value)  # OKX and Bybit send epoch milliseconds as strings
            if isinstance(value, int | float) and not isinstance(value, bool):
                milliseconds = value * _UNIT_TO_MS[spec.unit]
                # NaN and infinities fail both comparisons
                if 1 <= milliseconds <= MAX_TIMESTAMP_MS:
                    return int(milliseconds)
        return received_us // 1000

    def _headers(self, binary: bool, received_us: int, sequence: int) -> Headers | None:
        headers = self._fixed_headers.copy()
        if self._sequence_header:
            headers.append((HEADER_SEQUENCE, b"%d" % sequence))
        if self._received_header:
            headers.append((HEADER_RECEIVED, b"%d" % received_us))
        if self._type_header:
            headers.append(_BINARY if binary else _TEXT)
        return headers or None


_TEXT = (HEADER_TYPE, b"text")
_BINARY = (HEADER_TYPE, b"binary")


def _fixed_headers(spec: RecordHeadersSpec, source: str, connection_id: str) -> Headers:
    headers: Headers = []
    if spec.source:
        headers.append((HEADER_SOURCE, source.encode()))
    if spec.connection_id:
        headers.append((HEADER_CONNECTION, connection_id.encode()))
    return headers


def parse_json(payload: bytes) -> Any:
    """The frame as JSON, or None when it is not JSON (such frames get no extracted fields).

    orjson parses a 200 B frame in a fifth of the standard library's time (bench/hot_path.py,
    ``parts_us``), and it is strict RFC 8259: ``NaN``/``Infinity``, integers beyond 64 bits,
    lone surrogates and nesting deeper than 1,024 (a hostile ``[[[[...]]]]``) are not JSON.
    """
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None

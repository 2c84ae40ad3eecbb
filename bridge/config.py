"""The one configuration model: a bridge config file and a WebSocketSource ``spec`` are the same.

Fields are snake_case in Python and camelCase in YAML and in the CRD (an alias generator maps
them), so a file that runs ``ws2kafka-bridge --config`` locally is a valid resource ``spec``
and vice versa. Every field carries its description: the CRD's schema and the docs are
generated from it. Defaults follow the Java connector where they make sense (reconnect on,
5 s initial interval, queue of 10,000 messages, 30 s connect timeout).
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection, Iterable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Final, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from .errors import ConfigError
from .podtemplate import BridgeTemplate

#: The longest ``drainTimeoutSeconds``: an hour of Kafka outage rides out a shutdown.
MAX_DRAIN_TIMEOUT_SECONDS: Final = 3600

#: A Kafka topic name: the characters Kafka allows, at most 249 of them.
TOPIC_PATTERN: Final = r"^[a-zA-Z0-9._-]+$"
MAX_TOPIC_LENGTH: Final = 249

#: Largest subscription message: the whole spec is rendered into a ConfigMap (1 MiB at most).
MAX_SUBSCRIBE_BYTES = 262_144

#: JSON pointers (RFC 6901) address a field of a JSON frame: "" is the whole document.
JsonPointer = Annotated[
    str,
    Field(pattern=r"^(/([^~/]|~[01])*)*$", max_length=256, examples=["/s", "/data/sequence"]),
]


#: A token placeholder: ``{name.token}`` or ``{name.endpoint}``, a value a token provider
#: fetched (``spec.tokens``), filled in at every connect.
TOKEN_PLACEHOLDER: Final = r"\{([a-z][A-Za-z0-9]{0,62})\.(token|endpoint)\}"
#: A token provider's name.
TOKEN_NAME_PATTERN: Final = r"^[a-z][A-Za-z0-9]{0,62}$"


#: librdkafka properties that ``kafka.properties`` must not set: the bridge sets them itself,
#: or its accounting depends on them (with ``delivery.report.only.error`` successful
#: deliveries are never reported, so records would never settle and ``block`` would stall).
#: The CRD generator turns this set into the API server's CEL rule as well.
RESERVED_PROPERTIES: Final = frozenset(
    {
        "bootstrap.servers",
        "delivery.report.only.error",
        "dr_cb",
        "dr_msg_cb",
        "error_cb",
        "logger",
        "on_delivery",
        "stats_cb",
    }
)


class Model(BaseModel):
    """Base of every config model: camelCase aliases, unknown fields rejected, immutable."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        use_attribute_docstrings=True,
    )


class SecretKeyRef(Model):
    """A key of a Kubernetes Secret in the resource's namespace."""

    name: str = Field(min_length=1, max_length=253)
    """Name of the Secret."""
    key: str = Field(min_length=1, max_length=253)
    """Key inside the Secret."""


class SecretValue(Model):
    """A secret string, given by exactly one of its sources. It is never logged or echoed.

    In a WebSocketSource resource only ``secretKeyRef`` is allowed: the operator mounts the
    Secret's key into the bridge pod as a file, which the kubelet keeps current, so a rotated
    Secret is taken up without a restart. A local config file may also use ``value``,
    ``env`` or ``file`` (files are watched too).
    """

    value: SecretStr | None = Field(default=None, json_schema_extra={"x-ws2kafka-local": True})
    """The secret itself (local config files only)."""
    env: str | None = Field(default=None, json_schema_extra={"x-ws2kafka-local": True})
    """Name of an environment variable that holds the secret."""
    file: Path | None = Field(default=None, json_schema_extra={"x-ws2kafka-local": True})
    """Path of a file that holds the secret (a trailing newline is removed)."""
    secret_key_ref: SecretKeyRef | None = None
    """A key of a Kubernetes Secret (resources only; the operator resolves it)."""

    @model_validator(mode="after")
    def _exactly_one_source(self) -> Self:
        given = [
            name
            for name in ("value", "env", "file", "secret_key_ref")
            if getattr(self, name) is not None
        ]
        if len(given) != 1:
            raise ValueError("give exactly one of value, env, file or secretKeyRef")
        return self

    def resolve(self) -> str:
        """Read the secret from its source; raises ConfigError naming the missing source."""
        if self.value is not None:
            return self.value.get_secret_value()
        if self.env is not None:
            if self.env not in os.environ:
                raise ConfigError([f"environment variable {self.env} is not set"])
            return os.environ[self.env]
        if self.file is not None:
            try:
                return self.file.read_text().removesuffix("\n")
            except OSError as exc:
                raise ConfigError(
                    [f"cannot read secret file {self.file}: {exc.strerror}"]
                ) from None
        raise ConfigError(["secretKeyRef is resolved by the operator; locally use value/env/file"])


class Header(Model):
    """One HTTP header of the WebSocket handshake. Values may contain commas and colons."""

    name: str = Field(min_length=1, max_length=256, pattern=r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
    """Header name, e.g. ``User-Agent``."""
    value: str | None = Field(
        default=None, max_length=8192, pattern=r"^[^\x00-\x08\x0a-\x1f\x7f]*$"
    )
    """Plain value (not secret). No control characters (CR/LF would split the header)."""
    value_from: SecretValue | None = None
    """Secret value, e.g. an API key."""

    @model_validator(mode="after")
    def _one_value(self) -> Self:
        if (self.value is None) == (self.value_from is None):
            raise ValueError("give exactly one of value or valueFrom")
        return self


class QueryParameter(Model):
    """One parameter of the connection URL's query, appended to ``url`` at every connect
    (KuCoin's ``token``, Finnhub's ``token``). A secret value is resolved then, and shown as
    ``***`` wherever the URL is (logs, status, errors)."""

    name: str = Field(min_length=1, max_length=256, pattern=r"^[^\x00-\x1f\x7f&=#]+$")
    """Parameter name, e.g. ``token`` (no ``&``, ``=``, ``#`` or control characters)."""
    value: str | None = Field(default=None, max_length=8192)
    """Plain value (not secret), percent-encoded as needed."""
    value_from: SecretValue | None = None
    """Secret value, e.g. an API token: it never shows where the URL does."""

    @model_validator(mode="after")
    def _one_value(self) -> Self:
        if (self.value is None) == (self.value_from is None):
            raise ValueError("give exactly one of value or valueFrom")
        return self


class BasicAuth(Model):
    """HTTP basic authentication for the handshake."""

    username: str = Field(min_length=1, max_length=256, pattern=r"^[^:\x00-\x1f\x7f]+$")
    """User name (no colon: RFC 7617)."""
    password: SecretValue
    """Password."""


class AuthSpec(Model):
    """Handshake authentication. A bearer token and basic auth cannot both be set."""

    bearer_token: SecretValue | None = None
    """Sent as ``Authorization: Bearer <token>``."""
    basic: BasicAuth | None = None
    """Sent as ``Authorization: Basic ...``."""

    @model_validator(mode="after")
    def _one_scheme(self) -> Self:
        if self.bearer_token is not None and self.basic is not None:
            raise ValueError("set bearerToken or basic, not both")
        return self


class ConfigMapKeyRef(Model):
    """A key of a Kubernetes ConfigMap in the resource's namespace."""

    name: str = Field(min_length=1, max_length=253)
    """Name of the ConfigMap."""
    key: str = Field(min_length=1, max_length=253)
    """Key inside the ConfigMap."""


class PemSource(Model):
    """PEM material (certificates, or a private key) from exactly one source.

    In a WebSocketSource resource it is a key of a Secret or of a ConfigMap: in pod mode the
    operator mounts that key into the bridge pod as a file (the rendered config names the
    file), in inline mode it reads the key and hands the PEM text to the bridge in memory. A
    local config file may also give the PEM text itself.
    """

    secret_key_ref: SecretKeyRef | None = None
    """A key of a Secret (resources only)."""
    config_map_key_ref: ConfigMapKeyRef | None = None
    """A key of a ConfigMap (resources only; not for a private key)."""
    value: SecretStr | None = Field(default=None, json_schema_extra={"x-ws2kafka-local": True})
    """The PEM text itself (local config files, and inline mode's resolved references)."""

    @model_validator(mode="after")
    def _exactly_one_source(self) -> Self:
        given = [
            name
            for name in ("secret_key_ref", "config_map_key_ref", "value")
            if getattr(self, name) is not None
        ]
        if len(given) != 1:
            raise ValueError("give exactly one of secretKeyRef or configMapKeyRef")
        return self

    def text(self, field: str) -> str:
        """The PEM text; a reference here is an operator's job (a local config has none)."""
        if self.value is None:
            raise ConfigError(
                [
                    f"spec.tls.{field}: secretKeyRef and configMapKeyRef are resolved by the "
                    f"operator; a local config uses tls.{field}File or {field}.value"
                ]
            )
        return self.value.get_secret_value()


class TlsSpec(Model):
    """TLS for ``wss://`` URLs. Certificates are verified unless ``insecureSkipVerify``.

    A resource names its CA bundle and client certificate by reference (``ca``,
    ``clientCert``, ``clientKey``); a local config file may name files instead (``caFile``,
    ``clientCertFile``, ``clientKeyFile``), which is also what a bridge pod's rendered config
    does, with the paths where the operator mounted the referenced keys.
    """

    ca: PemSource | None = None
    """PEM bundle of CAs to trust instead of the system's."""
    client_cert: PemSource | None = None
    """PEM client certificate (and chain) for mutual TLS."""
    client_key: PemSource | None = None
    """PEM private key of the client certificate: a Secret, never a ConfigMap."""
    ca_file: Path | None = Field(default=None, json_schema_extra={"x-ws2kafka-local": True})
    """Path of the CA bundle (local config files, and the bridge pod's mounted file)."""
    client_cert_file: Path | None = Field(
        default=None, json_schema_extra={"x-ws2kafka-local": True}
    )
    """Path of the client certificate (local config files, and the bridge pod's mounted file)."""
    client_key_file: Path | None = Field(default=None, json_schema_extra={"x-ws2kafka-local": True})
    """Path of the client key (local config files, and the bridge pod's mounted file)."""
    insecure_skip_verify: bool = False
    """Accept any server certificate. Logs a warning at every connect; never for production."""

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        for field in ("ca", "client_cert", "client_key"):
            if getattr(self, field) is not None and getattr(self, f"{field}_file") is not None:
                name = to_camel(field)
                raise ValueError(f"set {name} or {name}File, not both")
        has_cert = self.client_cert is not None or self.client_cert_file is not None
        has_key = self.client_key is not None or self.client_key_file is not None
        if has_cert != has_key:
            raise ValueError("clientCert and clientKey go together")
        if self.client_key is not None and self.client_key.config_map_key_ref is not None:
            raise ValueError("clientKey must come from a Secret (secretKeyRef), not a ConfigMap")
        return self


class ConnectRateSpec(Model):
    """At most ``connects`` connection attempts per ``perSeconds``, over all connections of
    the bridge (Binance: 300 per 5 minutes per IP; Bybit: 500 per 5 minutes)."""

    connects: int = Field(ge=1, le=100_000)
    """Attempts allowed in a window."""
    per_seconds: float = Field(gt=0, le=86400)
    """The window, seconds."""


#: The most connections one bridge pod opens: beyond it, split the source.
MAX_CONNECTIONS: Final = 200


class StreamsSpec(Model):
    """Many streams (symbols, channels) over as many connections as the server's caps need.

    The streams are split in order into shares of ``maxPerConnection``; each share gets its
    own connection, subscribed with ``subscribeTemplate`` (in messages of at most
    ``maxPerMessage`` streams) or named in its URL (``urlTemplate``). All connections feed
    the bridge's one buffer and producer; each keeps its own gaps, sequence checks,
    watchdogs and rotation.
    """

    names: list[Annotated[str, Field(min_length=1, max_length=256, description="A stream.")]] = (
        Field(min_length=1, max_length=100_000)
    )
    """The streams, e.g. ``btcusdt@trade``."""
    max_per_connection: int = Field(ge=1, le=100_000)
    """Streams one connection may carry (Binance 1024, KuCoin 300, Bitfinex 25)."""
    max_connections: int = Field(default=50, ge=1, le=MAX_CONNECTIONS)
    """Connections this source may open; more streams than fit are refused at apply."""
    subscribe_template: str | None = Field(default=None, min_length=1, max_length=65536)
    """A subscribe message: ``{streams}`` becomes the JSON array of the share's streams,
    ``{n}`` the message's number on its connection (1, 2, ...), e.g.
    ``{"method":"SUBSCRIBE","params":{streams},"id":{n}}``."""
    max_per_message: int = Field(default=0, ge=0, le=100_000)
    """Streams per subscribe message at most (0: a connection's whole share in one)."""
    url_template: str | None = Field(default=None, min_length=6, max_length=65536)
    """The URL instead: ``{streams}`` becomes the share joined by ``separator``, e.g.
    ``wss://stream.binance.com:9443/stream?streams={streams}``."""
    separator: str = Field(default="/", min_length=1, max_length=8)
    """Between two streams in ``urlTemplate``."""

    @model_validator(mode="after")
    def _placed(self) -> Self:
        if (self.subscribe_template is None) == (self.url_template is None):
            raise ValueError("give exactly one of subscribeTemplate or urlTemplate")
        template = self.subscribe_template or self.url_template or ""
        if "{streams}" not in template:
            raise ValueError("the template must contain {streams}")
        return self

    @model_validator(mode="after")
    def _fits(self) -> Self:
        if len(self.names) > self.max_per_connection * self.max_connections:
            raise ValueError(
                f"{len(self.names)} streams do not fit maxConnections {self.max_connections} "
                f"x maxPerConnection {self.max_per_connection}"
            )
        return self


class ReconnectSpec(Model):
    """Reconnection after a failed connect or a lost connection."""

    enabled: bool = True
    """Reconnect at all. When false the bridge exits after the first connection ends."""
    initial_delay_seconds: float = Field(default=5.0, gt=0, le=3600)
    """Upper bound of the first delay (full jitter: the delay is random in [0, bound])."""
    max_delay_seconds: float = Field(default=300.0, gt=0, le=86400)
    """The bound doubles per failed attempt up to this cap."""
    max_attempts: int = Field(default=0, ge=0, le=1_000_000)
    """Consecutive failed attempts before giving up (0 = never give up)."""

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.max_delay_seconds < self.initial_delay_seconds:
            raise ValueError("maxDelaySeconds must be >= initialDelaySeconds")
        return self


class AutoRestartSpec(Model):
    """Restarting a bridge that gave up (``reconnect.maxAttempts`` reached, or
    ``subscription.onFailure: giveUp``), as Strimzi restarts a failed connector: the inline
    operator starts it again; a bridge pod stays (not ready) and the operator rolls it."""

    enabled: bool = False
    """Restart a bridge that gave up, after a delay. Off: it stays stopped until the spec
    changes or ``ws2kafka.dev/restart`` is set."""
    max_restarts: int = Field(default=0, ge=0, le=1_000_000)
    """Consecutive automatic restarts before the source stays given up (0 = no limit)."""
    initial_delay_seconds: float = Field(default=10.0, gt=0, le=3600)
    """The delay before the first automatic restart; it doubles with every consecutive one."""
    max_delay_seconds: float = Field(default=600.0, gt=0, le=86400)
    """The cap of the delay. A run connected for this long (at least 10 minutes) was not a
    failure: the count starts again from 0."""

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.max_delay_seconds < self.initial_delay_seconds:
            raise ValueError("maxDelaySeconds must be >= initialDelaySeconds")
        return self


class HeartbeatSpec(Model):
    """An application-level message sent periodically, for feeds that need one (OKX: "ping")."""

    message: str = Field(min_length=1, max_length=65536)
    """The text frame to send."""
    interval_seconds: float = Field(default=25.0, gt=0, le=3600)
    """Seconds between two heartbeats."""


class Inflate(StrEnum):
    """Decompression of binary frames before they are produced."""

    NONE = "none"
    GZIP = "gzip"
    ZLIB = "zlib"


class Client(StrEnum):
    """The WebSocket client implementation; both behave the same (the same tests pass).

    picows is the default for speed; websockets, which the bridge was written against, stays
    selectable as the fallback.
    """

    WEBSOCKETS = "websockets"
    PICOWS = "picows"


class ConnectionSpec(Model):
    """How the WebSocket connection is opened and kept alive."""

    connect_timeout_seconds: float = Field(default=30.0, gt=0, le=600)
    """Timeout of TCP connect + TLS + handshake."""
    subprotocols: list[str] = Field(default_factory=list, max_length=16)
    """Subprotocols offered in ``Sec-WebSocket-Protocol``."""
    compression: bool = True
    """Offer permessage-deflate."""
    max_frame_bytes: int = Field(default=1_048_576, ge=1024, le=256 * 1_048_576)
    """Largest message accepted; a larger one closes the connection with 1009."""
    ping_interval_seconds: float = Field(default=20.0, ge=0, le=3600)
    """Protocol ping interval (0 = no pings)."""
    ping_timeout_seconds: float = Field(default=20.0, gt=0, le=3600)
    """A pong not received within this time drops the connection."""
    stale_after_seconds: float = Field(default=0.0, ge=0, le=86400)
    """No data frame for this long drops the connection and reconnects (0 = off)."""
    heartbeat: HeartbeatSpec | None = None
    """Optional application heartbeat."""
    inflate: Inflate = Inflate.NONE
    """Decompress binary frames (gzip or zlib) before producing them."""
    client: Client = Client.PICOWS
    """``picows`` (the default: the bridge runs up to 1.5x faster with it, see
    docs/performance.md) or ``websockets``, the reference implementation kept as a fallback:
    both pass the same tests; select websockets if a server trips picows, or to tell a client
    problem from a feed problem."""


class KeySource(StrEnum):
    """Where a record's key comes from."""

    NONE = "none"
    STATIC = "static"
    JSON_POINTER = "jsonPointer"


class KeySpec(Model):
    """The record key."""

    source: KeySource = KeySource.NONE
    """``none``, ``static`` (the ``value``) or ``jsonPointer`` (a field of the JSON frame)."""
    value: str | None = Field(default=None, max_length=4096)
    """The key for ``static``."""
    pointer: JsonPointer | None = None
    """The field for ``jsonPointer``, e.g. ``/s``. Frames without it get no key."""

    @model_validator(mode="after")
    def _matching_fields(self) -> Self:
        if self.source is KeySource.STATIC and self.value is None:
            raise ValueError("source static needs value")
        if self.source is KeySource.JSON_POINTER and self.pointer is None:
            raise ValueError("source jsonPointer needs pointer")
        return self


class TimestampSource(StrEnum):
    """Where a record's timestamp comes from."""

    RECEIVE_TIME = "receiveTime"
    JSON_POINTER = "jsonPointer"


class TimestampUnit(StrEnum):
    """Unit of a numeric timestamp field."""

    SECONDS = "s"
    MILLISECONDS = "ms"
    MICROSECONDS = "us"
    NANOSECONDS = "ns"


class TimestampSpec(Model):
    """The record timestamp: the time the bridge received the frame, or a field of the frame."""

    source: TimestampSource = TimestampSource.RECEIVE_TIME
    """``receiveTime`` or ``jsonPointer``; frames without the field fall back to receive time."""
    pointer: JsonPointer | None = None
    """The numeric epoch field for ``jsonPointer``, e.g. ``/T``."""
    unit: TimestampUnit = TimestampUnit.MILLISECONDS
    """Unit of that field."""

    @model_validator(mode="after")
    def _pointer_given(self) -> Self:
        if self.source is TimestampSource.JSON_POINTER and self.pointer is None:
            raise ValueError("source jsonPointer needs pointer")
        return self


class RecordHeadersSpec(Model):
    """Kafka headers added to every record (``ws2kafka.*``); each can be switched off."""

    source: bool = True
    """``ws2kafka.source``: the source's name."""
    connection_id: bool = True
    """``ws2kafka.connection``: id of the WebSocket connection the frame came on."""
    sequence: bool = True
    """``ws2kafka.seq``: 1-based position of the frame within its connection."""
    received_at: bool = True
    """``ws2kafka.received``: receive time, epoch microseconds."""
    frame_type: bool = True
    """``ws2kafka.type``: ``text`` or ``binary``."""


class KafkaSinkSpec(Model):
    """Where and how records are produced."""

    bootstrap_servers: str = Field(min_length=1, max_length=4096)
    """Kafka bootstrap servers, ``host:port[,host:port...]``."""
    topic: str = Field(min_length=1, max_length=MAX_TOPIC_LENGTH, pattern=TOPIC_PATTERN)
    """Target topic."""
    key: KeySpec = Field(default_factory=KeySpec)
    """Record key."""
    timestamp: TimestampSpec = Field(default_factory=TimestampSpec)
    """Record timestamp."""
    headers: RecordHeadersSpec = Field(default_factory=RecordHeadersSpec)
    """Record headers."""
    routing: TopicRoutingSpec | None = None
    """Route records to topics named by the frame (off: every record goes to ``topic``)."""
    split: SplitSpec | None = None
    """Split a frame's array into one record per element (off: one record per frame)."""
    properties: dict[str, str] = Field(default_factory=dict, max_length=200)
    """librdkafka producer properties, passed through (``compression.type``, ``linger.ms``...).
    Defaults: ``acks=all``, ``enable.idempotence=true``."""
    secret_properties: dict[str, SecretValue] = Field(default_factory=dict, max_length=50)
    """librdkafka properties whose values are secret (``sasl.password``, ``ssl.key.password``)."""

    @field_validator("properties")
    @classmethod
    def _no_reserved(cls, value: dict[str, str]) -> dict[str, str]:
        reserved = RESERVED_PROPERTIES & value.keys()
        if reserved:
            raise ValueError(f"set {', '.join(sorted(reserved))} through its own field")
        return value


#: Any JSON value but ``null`` (the API server keeps it as it is written).
AnyJson = Annotated[
    JsonValue,
    Field(
        description="Any JSON value.",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    ),
]


class FrameCondition(Model):
    """One test of a frame (after inflating); a rule matches when all its conditions hold.

    Either ``text`` (the whole frame, e.g. OKX's ``pong``), or a ``pointer`` into the JSON
    frame that must exist, optionally with the value it must have (``equals``), one of
    several (``oneOf``), or ``null`` (``isNull``: the API server drops null values, so
    ``equals: null`` cannot be written in a resource).
    """

    text: str | None = Field(default=None, min_length=1, max_length=4096)
    """The frame is exactly this text."""
    pointer: JsonPointer | None = None
    """A field of the JSON frame, e.g. ``/ping`` or ``/type``; alone, it must exist."""
    equals: AnyJson | None = None
    """The JSON value the field must have (a string, number, boolean, array or object)."""
    one_of: list[AnyJson] | None = Field(default=None, min_length=1, max_length=64)
    """Values the field may have, e.g. ``["subscribe", "unsubscribe"]``."""
    is_null: bool = False
    """The field is ``null`` (Binance's acknowledgement ``{"result":null,"id":1}``)."""

    @model_validator(mode="after")
    def _one_test(self) -> Self:
        if (self.text is None) == (self.pointer is None):
            raise ValueError("give exactly one of text or pointer")
        return self

    @model_validator(mode="after")
    def _values_of_a_pointer(self) -> Self:
        if "equals" in self.model_fields_set and self.equals is None:
            raise ValueError("equals cannot be null (the API server drops it): use isNull")
        tests = (self.equals is not None) + (self.one_of is not None) + self.is_null
        if self.pointer is None and tests:
            raise ValueError("equals, oneOf and isNull test a pointer's value: give pointer")
        if tests > 1:
            raise ValueError("give one of equals, oneOf or isNull")
        if self.one_of is not None and None in self.one_of:
            raise ValueError("oneOf cannot hold null (the API server drops it): use isNull")
        return self


class MessageKind(StrEnum):
    """What a frame a rule matched is, as counted in metrics and named in control records."""

    DATA = "data"
    ACKNOWLEDGEMENT = "acknowledgement"
    HEARTBEAT = "heartbeat"
    PING = "ping"
    PONG = "pong"
    ERROR = "error"
    CONTROL = "control"


class MessageRoute(StrEnum):
    """Where a matched frame goes."""

    DROP = "drop"
    """Nowhere (counted by rule)."""
    CONTROL = "control"
    """To ``messages.controlTopic``, with header ``ws2kafka.rule``."""
    DATA = "data"
    """To the data topic, like any other frame."""


#: Placeholders of a reply: ``{/pointer}`` is the JSON value at that pointer of the frame.
TEMPLATE_PLACEHOLDER: Final = r"\{(/[^{}]*)\}"


class MessageRule(Model):
    """A rule for frames that are not data: answer them, count them, route them.

    Rules are tried in order on every frame and the first that matches decides. A reply
    (HTX's ``{"pong": ...}`` to ``{"ping": ...}``, Deribit's ``public/test``) is sent as a
    text frame on the same connection before the next frame is read.
    """

    name: str = Field(min_length=1, max_length=63, pattern=r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
    """Names the rule in metrics (label ``rule``), logs and the ``ws2kafka.rule`` header."""
    match: list[FrameCondition] = Field(min_length=1, max_length=8)
    """Conditions that must all hold."""
    kind: MessageKind = MessageKind.CONTROL
    """What the frame is."""
    reply: str | None = Field(default=None, min_length=1, max_length=65536)
    """A text frame to send back; ``{/pointer}`` is replaced by the JSON value at that
    pointer of the frame (``{"pong": {/ping}}``), ``null`` when it has none."""
    route: MessageRoute | None = None
    """``drop``, ``control`` or ``data``; the default is ``data`` for kind ``data`` and
    ``drop`` for every other kind."""
    expires_token: str | None = Field(default=None, pattern=TOKEN_NAME_PATTERN)
    """The frame says this token (``spec.tokens``) expired, e.g. Binance's
    ``listenKeyExpired``: the connection ends (``TokenExpired``) and the next one connects
    with a token fetched anew."""

    @property
    def destination(self) -> MessageRoute:
        if self.route is not None:
            return self.route
        return MessageRoute.DATA if self.kind is MessageKind.DATA else MessageRoute.DROP


class MessagesSpec(Model):
    """Frames that are not data: pings to answer, acknowledgements, heartbeats, errors."""

    rules: list[MessageRule] = Field(
        default_factory=list,
        max_length=64,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    """Tried in order on every frame; the first that matches decides (none: a data frame)."""
    control_topic: str | None = Field(
        default=None, min_length=1, max_length=MAX_TOPIC_LENGTH, pattern=TOPIC_PATTERN
    )
    """Topic of the frames a rule routes to ``control``."""

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        names = [rule.name for rule in self.rules]
        if len(names) != len(set(names)):
            raise ValueError("rule names must be unique")
        routed = any(rule.destination is MessageRoute.CONTROL for rule in self.rules)
        if routed and self.control_topic is None:
            raise ValueError("a rule routes to control: set controlTopic")
        return self


class SubscriptionFailurePolicy(StrEnum):
    """What a rejected or unacknowledged subscription does to the connection."""

    RECONNECT = "reconnect"
    """Close and reconnect with the reconnect backoff."""
    GIVE_UP = "giveUp"
    """Stop the bridge (exit 3), as after ``reconnect.maxAttempts``."""


class SubscriptionSpec(Model):
    """How the server acknowledges the ``subscribe`` messages, so that a refused
    subscription shows in status (condition ``Subscribed``) instead of a silent feed."""

    success: list[FrameCondition] = Field(min_length=1, max_length=8)
    """A frame that says the subscription succeeded (all conditions), e.g. Binance's
    ``/result`` equals null, or Coinbase's ``/type`` equals ``subscriptions``."""
    failure: list[FrameCondition] = Field(default_factory=list, max_length=8)
    """A frame that says it failed, e.g. ``/type`` equals ``error`` (none: only the timeout)."""
    message_pointer: JsonPointer | None = None
    """The server's own words in a failure frame, e.g. ``/message`` (null: the whole frame)."""
    timeout_seconds: float = Field(default=10.0, gt=0, le=600)
    """Neither within this time after the last subscribe message: ``SubscriptionTimeout``."""
    on_failure: SubscriptionFailurePolicy = SubscriptionFailurePolicy.RECONNECT
    """``reconnect`` (with backoff) or ``giveUp``."""


class LoginTimestamp(StrEnum):
    """How ``{timestamp}`` is written: the connect's time, taken anew for every login."""

    SECONDS = "seconds"
    """Whole epoch seconds (OKX: ``1704876947``)."""
    MILLISECONDS = "milliseconds"
    """Epoch milliseconds (Deribit)."""
    ISO8601 = "iso8601"
    """UTC with milliseconds, ``2024-01-10T08:55:47.123Z``."""


class SignatureAlgorithm(StrEnum):
    """The HMAC of a login signature."""

    HMAC_SHA256 = "hmacSha256"
    HMAC_SHA512 = "hmacSha512"


class SignatureEncoding(StrEnum):
    """How the signature's bytes are written as text."""

    HEX = "hex"
    BASE64 = "base64"


class KeyEncoding(StrEnum):
    """How the signing key is written in its secret."""

    TEXT = "text"
    """Its UTF-8 bytes are the key (OKX, Bybit, Deribit)."""
    BASE64 = "base64"
    """Base64 of the key (Coinbase)."""
    HEX = "hex"


#: A login placeholder: ``{name}``, a value of ``login.values`` or a computed one.
LOGIN_PLACEHOLDER: Final = r"\{([A-Za-z][A-Za-z0-9_]{0,62})\}"
#: The values a login computes itself, at every connect.
COMPUTED_LOGIN_VALUES: Final = ("timestamp", "expires", "nonce", "signature")


def _check_placeholder_name(what: str, name: str) -> None:
    """A name that ``{name}`` in a template can stand for (:data:`LOGIN_PLACEHOLDER`)."""
    if re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,62}", name) is None:
        raise ValueError(f"{what} {name!r}: letters, digits and _, a letter first")


def _check_value_names(names: Iterable[str], computed: Collection[str]) -> None:
    """The names of secret values: placeholder names, none of them a computed one."""
    for name in names:
        _check_placeholder_name("value name", name)
        if name in computed:
            raise ValueError(f"{name} is computed by the bridge: name the value otherwise")


class Signature(Model):
    """An HMAC of ``payload`` keyed with one of the secret ``values``: a login's
    ``{signature}``, or a token request's named signature (``{sign}``)."""

    algorithm: SignatureAlgorithm = SignatureAlgorithm.HMAC_SHA256
    """``hmacSha256`` or ``hmacSha512`` (Kraken)."""
    encoding: SignatureEncoding = SignatureEncoding.HEX
    """``hex`` (Bybit, Deribit) or ``base64`` (OKX, KuCoin, Kraken)."""
    key: str = Field(min_length=1, max_length=63, pattern=r"^[A-Za-z][A-Za-z0-9_]*$")
    """The value of ``values`` that keys the HMAC, e.g. ``secret``; it may not be sent
    itself."""
    key_encoding: KeyEncoding = KeyEncoding.TEXT
    """How that key is written: ``text`` (its UTF-8 bytes), ``base64`` (Coinbase, Kraken) or
    ``hex``."""
    payload: str = Field(min_length=1, max_length=4096)
    """What is signed, with placeholders written as they are (not escaped), e.g.
    ``{timestamp}GET/users/self/verify`` (OKX) or ``GET/realtime{expires}`` (Bybit)."""
    sha256_of: str | None = Field(default=None, min_length=1, max_length=65536)
    """Signs ``payload`` followed by the raw SHA-256 digest of this template: Kraken's
    ``API-Sign`` is ``/0/private/GetWebSocketsToken`` + SHA-256(``{nonce}nonce={nonce}``)
    (none: the payload alone)."""


class LoginSpec(Model):
    """A login message sent after every connect, before ``subscribe``, and the server's answer.

    The message is a template: ``{name}`` is replaced by a value of ``values`` (from secrets)
    or a computed one: ``{timestamp}`` (the connect's time, see ``timestamp``), ``{expires}``
    (epoch milliseconds ``expiresAfterMs`` from now), ``{nonce}`` (random hex) and
    ``{signature}``. In the message, values are JSON-escaped, so ``"{apiKey}"`` is a JSON
    string and ``{expires}`` a number. Every login computes them anew: a retried login never
    reuses a timestamp. The answer is recognised like the subscription's; a refusal makes
    the connection fail with ``LoginRejected`` (condition ``Authenticated``) and the bridge
    retries with the reconnect backoff, re-reading the secrets.
    """

    message: str = Field(min_length=1, max_length=65536)
    """The login message, e.g. OKX's ``{"op":"login","args":[{"apiKey":"{apiKey}",...}]}``."""
    values: dict[str, SecretValue] = Field(default_factory=dict, max_length=16)
    """Secret values by placeholder name, e.g. ``apiKey``, ``secret``, ``passphrase``."""
    timestamp: LoginTimestamp = LoginTimestamp.SECONDS
    """How ``{timestamp}`` is written: ``seconds``, ``milliseconds`` or ``iso8601``."""
    expires_after_ms: int = Field(default=10_000, ge=1, le=3_600_000)
    """``{expires}`` is the connect's time plus this, in epoch milliseconds (Bybit)."""
    signature: Signature | None = None
    """How ``{signature}`` is computed (none: the message has no signature)."""
    success: list[FrameCondition] = Field(min_length=1, max_length=8)
    """A frame that says the login succeeded (all conditions), e.g. ``/event`` equals
    ``login``."""
    failure: list[FrameCondition] = Field(default_factory=list, max_length=8)
    """A frame that says it failed, e.g. ``/event`` equals ``error`` (none: only the timeout)."""
    message_pointer: JsonPointer | None = None
    """The server's own words in a failure frame, e.g. ``/msg`` (null: the whole frame)."""
    timeout_seconds: float = Field(default=10.0, gt=0, le=600)
    """No answer within this time: ``LoginTimeout``, retried with the reconnect backoff."""

    @model_validator(mode="after")
    def _value_names(self) -> Self:
        _check_value_names(self.values, COMPUTED_LOGIN_VALUES)
        return self

    @model_validator(mode="after")
    def _signing_key(self) -> Self:
        if self.signature is None:
            return self
        if self.signature.key not in self.values:
            raise ValueError("signature.key must name one of values")
        if "{" + self.signature.key + "}" in self.message:
            raise ValueError("the signing key may not be sent in the message")
        return self

    @model_validator(mode="after")
    def _placeholders(self) -> Self:
        known = set(self.values) | {"timestamp", "expires", "nonce"}
        payload = self.signature.payload if self.signature is not None else ""
        signed = {"signature"} if self.signature is not None else set()
        for where, text, allowed in (
            ("message", self.message, known | signed),
            ("signature.payload", payload, known),
        ):
            for name in re.findall(LOGIN_PLACEHOLDER, text):
                if name not in allowed:
                    raise ValueError(f"{where}: {{{name}}} is neither a value nor computed here")
        return self


class HttpMethod(StrEnum):
    """The method of a token request."""

    GET = "GET"
    POST = "POST"
    PUT = "PUT"
    DELETE = "DELETE"


#: The values a signed token request computes itself, for every request.
COMPUTED_REQUEST_VALUES: Final = ("timestamp", "expires", "nonce")


class TokenRequestSpec(Model):
    """One HTTP request of a token provider: the fetch, or its keep-alive.

    It goes out with the same TLS settings (``spec.tls``: CA, client certificate) and the same
    proxy as the WebSocket to the same host (``NO_PROXY``, ``WSS_PROXY``, ``SOCKS_PROXY``,
    ``HTTPS_PROXY``, ``HTTP_PROXY`` in the environment).
    ``{name.token}`` in ``url``, a query or header value, or ``body`` is the provider's current
    token (a keep-alive's ``?listenKey=``). ``{key}`` in ``body`` or a query or header value
    is a value of ``values``, a signature of ``signatures``, or computed for every request:
    ``{timestamp}``, ``{expires}``, ``{nonce}`` (as in ``login``), so a signed request (KuCoin's
    private bullet, Kraken's GetWebSocketsToken) is signed anew each time.
    """

    method: HttpMethod = HttpMethod.POST
    """``GET``, ``POST``, ``PUT`` or ``DELETE``."""
    url: str = Field(min_length=8, max_length=2048, pattern=r"^https?://")
    """``http://`` or ``https://``, e.g. ``https://api.binance.com/api/v3/userDataStream``."""
    query: list[QueryParameter] = Field(default_factory=list, max_length=64)
    """Query parameters appended to ``url``; secret ones never show where the URL does."""
    headers: list[Header] = Field(default_factory=list, max_length=64)
    """Request headers, e.g. Binance's ``X-MBX-APIKEY`` from a Secret, or KuCoin's
    ``KC-API-SIGN`` with the value ``{sign}``."""
    body: str | None = Field(default=None, max_length=65536)
    """The request body; a ``{key}`` is JSON-escaped when ``contentType`` is JSON,
    percent-encoded when it is a form (none: no body)."""
    content_type: str = Field(default="application/json", min_length=1, max_length=256)
    """The body's ``Content-Type``."""
    values: dict[str, SecretValue] = Field(default_factory=dict, max_length=16)
    """Secret values by placeholder name, e.g. ``clientSecret``, or the ``secret`` that keys
    a signature (which may not be sent itself)."""
    timestamp: LoginTimestamp = LoginTimestamp.SECONDS
    """How ``{timestamp}`` is written: ``seconds``, ``milliseconds`` (KuCoin, and Kraken's
    increasing nonce) or ``iso8601``."""
    expires_after_ms: int = Field(default=10_000, ge=1, le=3_600_000)
    """``{expires}`` is the request's time plus this, in epoch milliseconds."""
    signatures: dict[str, Signature] = Field(default_factory=dict, max_length=4)
    """Signatures by placeholder name, computed for every request, e.g. KuCoin's ``sign``
    (Base64 HMAC-SHA256 of ``{timestamp}POST/api/v1/bullet-private``) and its signed
    ``passphrase``; a payload holds values and computed values, not other signatures."""
    timeout_seconds: float = Field(default=10.0, gt=0, le=600)
    """No answer within this time: the request failed."""

    @model_validator(mode="after")
    def _value_names(self) -> Self:
        _check_value_names(self.values, COMPUTED_REQUEST_VALUES)
        return self

    @model_validator(mode="after")
    def _signatures(self) -> Self:
        for name, signature in self.signatures.items():
            _check_placeholder_name("signature name", name)
            if name in self.values or name in COMPUTED_REQUEST_VALUES:
                raise ValueError(f"signature {name} is named like a value: name it otherwise")
            if signature.key not in self.values:
                raise ValueError(f"signature {name}: key must name one of values")
        return self

    @model_validator(mode="after")
    def _placeholders(self) -> Self:
        known = set(self.values) | set(COMPUTED_REQUEST_VALUES)
        keys = {signature.key for signature in self.signatures.values()}
        sent = [("body", self.body or "")]
        sent += [(f"query {p.name}", p.value) for p in self.query if p.value is not None]
        sent += [(f"header {h.name}", h.value) for h in self.headers if h.value is not None]
        for where, text in sent:
            for used in re.findall(LOGIN_PLACEHOLDER, text):
                if used in keys:
                    raise ValueError(f"{where}: the signing key {{{used}}} may not be sent")
                if used not in known and used not in self.signatures:
                    raise ValueError(f"{where}: {{{used}}} is neither a value nor computed here")
        for name, signature in self.signatures.items():
            signed = signature.payload + (signature.sha256_of or "")
            for used in re.findall(LOGIN_PLACEHOLDER, signed):
                if used not in known:
                    raise ValueError(
                        f"signature {name}: {{{used}}} is neither a value nor computed here"
                    )
        return self


class TokenKeepAliveSpec(Model):
    """A request that keeps the token valid, on a timer (Binance: ``PUT`` the listenKey every
    30 minutes, or it expires after 60). A failed keep-alive is retried at the next tick; a
    token that expires meanwhile is fetched anew (see ``messages.rules[].expiresToken``)."""

    request: TokenRequestSpec
    """The keep-alive request; ``{name.token}`` is the token it keeps."""
    interval_seconds: float = Field(default=1800.0, gt=0, le=30 * 86400)
    """Seconds between two keep-alives (the first one this long after the fetch)."""


class DurationUnit(StrEnum):
    """The unit of a duration in a token's answer."""

    SECONDS = "s"
    MILLISECONDS = "ms"


class TokenSpec(Model):
    """A token fetched over HTTP before connecting, placed by ``{name.token}`` into the URL,
    the query, the headers, the subscribe or the login message.

    The answer is JSON; pointers name the token and, optionally, the endpoint to connect to
    (KuCoin's bullet names it), its expiry and the ping interval to use. A token is fetched
    before the first connect and again before a connect when it expired (``lifetimeSeconds``
    or ``expiresIn``), when the server refused it (HTTP 401/403, close 1008, a rule with
    ``expiresToken``), or after a failed fetch. The token is a secret: it never shows in
    logs, status, events or metrics.
    """

    name: str = Field(pattern=TOKEN_NAME_PATTERN)
    """Names the token in placeholders (``{listenKey.token}``) and metrics."""
    request: TokenRequestSpec
    """The request that fetches (or creates) the token."""
    token: JsonPointer
    """The token in the answer, e.g. ``/listenKey`` or ``/data/token``."""
    endpoint: JsonPointer | None = None
    """The WebSocket URL in the answer (``{name.endpoint}``), e.g.
    ``/data/instanceServers/0/endpoint``; it must be ``ws://`` or ``wss://``."""
    expires_in: JsonPointer | None = None
    """The token's remaining life in the answer, e.g. Kraken's ``/result/expires``."""
    expires_in_unit: DurationUnit = DurationUnit.SECONDS
    """The unit of ``expiresIn``: ``s`` or ``ms``."""
    lifetime_seconds: float | None = Field(default=None, gt=0, le=30 * 86400)
    """The token's life when the answer does not say it (none: until the server refuses it)."""
    ping_interval: JsonPointer | None = None
    """The ping interval in the answer, e.g. KuCoin's ``/data/instanceServers/0/pingInterval``:
    it replaces ``connection.heartbeat.intervalSeconds`` (or, without a heartbeat,
    ``connection.pingIntervalSeconds``)."""
    ping_interval_unit: DurationUnit = DurationUnit.MILLISECONDS
    """The unit of ``pingInterval``: ``s`` or ``ms`` (KuCoin)."""
    message_pointer: JsonPointer | None = None
    """The server's own words in a refusal, e.g. ``/msg`` (null: the whole answer)."""
    keep_alive: TokenKeepAliveSpec | None = None
    """A request that keeps the token valid on a timer (none: fetched anew when it expires)."""
    refresh_margin_seconds: float = Field(default=30.0, ge=0, le=86400)
    """A token that expires within this margin is fetched anew before a connect."""


class TopicRoutingSpec(Model):
    """Records go to a topic named by the frame: ``trades.{/s}``; bounded and filtered."""

    template: str = Field(min_length=1, max_length=249, examples=["trades.{/s}"])
    """The topic name; ``{/pointer}`` is replaced by that field's value (a string or number).
    A frame without the field, or whose topic breaks ``allowed`` or ``maxTopics``, goes to
    ``kafka.topic`` and is counted."""
    allowed: str = Field(default=r"^[a-zA-Z0-9._-]{1,249}$", min_length=1, max_length=1024)
    """A regular expression every routed topic must match (it must also be a valid topic name)."""
    max_topics: int = Field(default=100, ge=1, le=10_000)
    """Distinct routed topics at most; frames for more go to ``kafka.topic``."""

    @model_validator(mode="after")
    def _usable(self) -> Self:
        if re.search(TEMPLATE_PLACEHOLDER, self.template) is None:
            raise ValueError("template names no field: use {/pointer}, e.g. trades.{/s}")
        try:
            re.compile(self.allowed)
        except re.error as exc:
            raise ValueError(f"allowed is not a regular expression: {exc}") from None
        return self


class SplitSpec(Model):
    """One record per element of an array in the frame (OKX's ``data: [...]``)."""

    pointer: JsonPointer
    """The array, e.g. ``/data``. Each element becomes a record (compact JSON); the key,
    timestamp and topic pointers then address the element. A frame without an array there is
    produced whole; an empty array produces nothing (counted)."""


class Overflow(StrEnum):
    """What happens when the buffer between the socket and Kafka is full."""

    BLOCK = "block"
    DROP_OLDEST = "dropOldest"
    DROP_NEWEST = "dropNewest"


class BufferSpec(Model):
    """The bounded buffer between the socket and Kafka's delivery acknowledgements."""

    max_messages: int = Field(default=10_000, ge=1, le=10_000_000)
    """Frames received but not yet acknowledged by Kafka, at most."""
    max_bytes: int = Field(default=32 * 1_048_576, ge=1024, le=16 * 1024 * 1_048_576)
    """Their payload bytes, at most. librdkafka holds its own copy of what it was handed, so
    the bridge's memory grows by up to twice this; 32 MiB keeps a bridge of large frames
    under 150 MB (docs/performance.md)."""
    overflow: Overflow = Overflow.BLOCK
    """``block`` stops reading the socket (TCP pushes back on the server; its pings are answered
    once reading resumes, and the bridge's own keepalive is suspended meanwhile), ``dropOldest``
    and ``dropNewest`` discard frames and count them."""


class GapSpec(Model):
    """Gap markers: what the bridge does when one connection ends and the next one starts.

    Every gap is counted in metrics, logged and shown in ``status.lastGap``; this block only
    decides whether it also becomes a Kafka record, so that consumers of the topic see it.
    """

    record: bool = False
    """Produce a control record (JSON, header ``ws2kafka.control: gap``) for every gap."""
    topic: str | None = Field(
        default=None, min_length=1, max_length=MAX_TOPIC_LENGTH, pattern=TOPIC_PATTERN
    )
    """Topic of the control records (null: the data topic; consumers filter on the header)."""


class SequenceSpec(Model):
    """Sequence-gap detection: a per-stream counter in each JSON frame (Coinbase ``/sequence``,
    Binance ``/u``). Frames are parsed as JSON only when this is set."""

    pointer: JsonPointer
    """The integer sequence field, e.g. ``/seq``. Frames without it are counted, not checked."""
    partition_pointer: JsonPointer | None = None
    """The stream a sequence belongs to, e.g. ``/symbol`` (null: one sequence for the feed)."""
    max_partitions: int = Field(default=10_000, ge=1, le=1_000_000)
    """Streams tracked at most; the least recently seen one is forgotten beyond it."""


class DedupeSpec(Model):
    """Skip frames whose id was already produced recently (the overlap of a rotation)."""

    pointer: JsonPointer
    """The id field, e.g. ``/id``. Frames without it are always produced."""
    window_size: int = Field(default=10_000, ge=1, le=1_000_000)
    """How many recent ids are remembered."""


class RotationSpec(Model):
    """Make-before-break rotation: open a new connection, switch once it delivers data, then
    close the old one with 1000. Also available on demand (``Bridge.rotate()``)."""

    interval_seconds: float = Field(default=0.0, ge=0, le=30 * 86400)
    """Rotate this often (0 = only on demand), e.g. 82800 for feeds that cut at 24 h."""
    switch_timeout_seconds: float = Field(default=30.0, gt=0, le=3600)
    """Once open and subscribed, the new connection must deliver its first frame within this
    time, or the rotation is abandoned (the old connection stays)."""
    dedupe: DedupeSpec | None = None
    """Drop duplicates by id; without it the overlap may produce duplicates (never a gap)."""


class WebSocketSourceSpec(Model):
    """A WebSocket feed streamed into a Kafka topic: the ``spec`` of a WebSocketSource."""

    url: str = Field(min_length=6, max_length=2048)
    """The feed, ``ws://`` or ``wss://``."""
    subscribe: list[Annotated[str, Field(max_length=MAX_SUBSCRIBE_BYTES)]] = Field(
        default_factory=list, max_length=1000
    )
    """Messages sent in order after every successful (re)connect, e.g. a JSON subscription.
    At most 256 KiB each (the rendered config must fit a ConfigMap)."""
    login: LoginSpec | None = None
    """A signed login message sent after every connect, before ``subscribe`` (off: none)."""
    tokens: list[TokenSpec] = Field(
        default_factory=list,
        max_length=8,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    """Tokens fetched over HTTP before connecting (Binance's listenKey, KuCoin's bullet),
    placed with ``{name.token}`` and ``{name.endpoint}`` (off: none)."""
    subscription: SubscriptionSpec | None = None
    """How the server acknowledges ``subscribe`` (off: nothing is checked)."""
    messages: MessagesSpec = Field(default_factory=MessagesSpec)
    """Rules for frames that are not data (pings, acknowledgements, heartbeats, errors)."""
    headers: list[Header] = Field(default_factory=list, max_length=64)
    """Extra handshake headers."""
    query: list[QueryParameter] = Field(default_factory=list, max_length=64)
    """Query parameters appended to ``url`` (``urlTemplate``'s URLs too) at every connect;
    secret ones are re-read before a reconnect that follows an authentication failure."""
    auth: AuthSpec = Field(default_factory=AuthSpec)
    """Handshake authentication."""
    tls: TlsSpec = Field(default_factory=TlsSpec)
    """TLS settings for ``wss://``."""
    connection: ConnectionSpec = Field(default_factory=ConnectionSpec)
    """Connection behaviour: timeouts, pings, watchdog, heartbeat, frame limits."""
    reconnect: ReconnectSpec = Field(default_factory=ReconnectSpec)
    """Reconnect policy."""
    auto_restart: AutoRestartSpec = Field(default_factory=AutoRestartSpec)
    """Restarting the bridge after it gave up (off: it stays stopped)."""
    kafka: KafkaSinkSpec
    """The Kafka side."""
    buffer: BufferSpec = Field(default_factory=BufferSpec)
    """Bounded buffer and overflow policy."""
    gaps: GapSpec = Field(default_factory=GapSpec)
    """Gap markers between connections."""
    sequence: SequenceSpec | None = None
    """Sequence-gap detection (off unless set)."""
    rotation: RotationSpec = Field(default_factory=RotationSpec)
    """Make-before-break rotation of the connection."""
    streams: StreamsSpec | None = None
    """Streams spread over several connections (off: one connection, ``subscribe`` as is)."""
    connect_rate: ConnectRateSpec | None = None
    """A limit on connection attempts over all connections (off: only the reconnect backoff)."""
    drain_timeout_seconds: float = Field(default=25.0, gt=0, le=MAX_DRAIN_TIMEOUT_SECONDS)
    """On shutdown, how long to wait for Kafka to acknowledge what was received."""
    suspend: bool = False
    """Stop the bridge without deleting the resource (the operator scales it to zero)."""
    template: BridgeTemplate | None = None
    """Customisations of the bridge pod (pod mode): labels, env, volumes, security context,
    host networking, metrics port. Merged over the chart-wide ``bridge.template``."""

    @field_validator("url")
    @classmethod
    def _websocket_scheme(cls, url: str) -> str:
        if not url.startswith(("ws://", "wss://")) and re.match(_ENDPOINT_FIRST, url) is None:
            raise ValueError("must start with ws:// or wss://")
        return url

    @model_validator(mode="after")
    def _tokens_placed(self) -> Self:
        providers = {token.name: token for token in self.tokens}
        if len(providers) != len(self.tokens):
            raise ValueError("token names must be unique")
        for where, text in self._templates():
            for name, part in re.findall(TOKEN_PLACEHOLDER, text):
                provider = providers.get(name)
                if provider is None:
                    raise ValueError(f"{where}: {{{name}.{part}}} names no token of tokens")
                if part == "endpoint" and provider.endpoint is None:
                    raise ValueError(f"{where}: token {name} has no endpoint pointer")
        for token in self.tokens:
            keep_alive = token.keep_alive
            requests = [("request", token.request)]
            requests += [("keepAlive.request", keep_alive.request)] if keep_alive else []
            for where, request in requests:
                for name, part in re.findall(TOKEN_PLACEHOLDER, _request_text(request)):
                    if (name, part) != (token.name, "token") or where == "request":
                        raise ValueError(
                            f"tokens {token.name}.{where}: only a keep-alive may hold a token, "
                            f"its own: {{{token.name}.token}}"
                        )
        return self

    @model_validator(mode="after")
    def _expiring_tokens_named(self) -> Self:
        names = {token.name for token in self.tokens}
        for rule in self.messages.rules:
            if rule.expires_token is not None and rule.expires_token not in names:
                raise ValueError(f"rule {rule.name}: expiresToken names no token of tokens")
        return self

    def _templates(self) -> list[tuple[str, str]]:
        """Every text a token may be placed in, and where it is."""
        texts = [("url", self.url)]
        texts += [(f"query {p.name}", p.value) for p in self.query if p.value is not None]
        texts += [(f"header {h.name}", h.value) for h in self.headers if h.value is not None]
        texts += [("subscribe", message) for message in self.subscribe]
        if self.login is not None:
            texts.append(("login.message", self.login.message))
        if self.streams is not None:
            for template in (self.streams.subscribe_template, self.streams.url_template):
                texts += [("streams", template)] if template is not None else []
        return texts

    @model_validator(mode="after")
    def _subscription_needs_messages(self) -> Self:
        subscribes = self.subscribe or (self.streams and self.streams.subscribe_template)
        if self.subscription is not None and not subscribes:
            raise ValueError("subscription describes the answer to subscribe: give subscribe")
        return self


#: A URL that is a fetched endpoint (KuCoin's bullet), perhaps with a path or query after it.
_ENDPOINT_FIRST: Final = r"\{[a-z][A-Za-z0-9]{0,62}\.endpoint\}"


def _request_text(request: TokenRequestSpec) -> str:
    """Every text of a token request a placeholder may be in."""
    parts = [request.url, request.body or ""]
    parts += [p.value for p in request.query if p.value is not None]
    parts += [h.value for h in request.headers if h.value is not None]
    return "\n".join(parts)


def _location(loc: tuple[int | str, ...]) -> str:
    """``("kafka", "topic")`` -> ``spec.kafka.topic``, with camelCase names."""
    parts = ["spec"]
    for item in loc:
        if isinstance(item, int):
            parts[-1] += f"[{item}]"
        else:
            parts.append(to_camel(item) if "_" in item else item)
    return ".".join(parts)


def _message(error: Any) -> str:
    message: str = error["msg"]
    return message.removeprefix("Value error, ")


def parse_spec(data: object) -> WebSocketSourceSpec:
    """Validate a spec; raises ConfigError with one ``spec.field: problem`` line per problem."""
    try:
        return WebSocketSourceSpec.model_validate(data)
    except ValidationError as exc:
        problems = [f"{_location(err['loc'])}: {_message(err)}" for err in exc.errors()]
        raise ConfigError(problems) from None

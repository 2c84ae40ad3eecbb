"""The WebSocket side: how a connection is opened, and what a failure means for the next try.

Written against the ``websockets`` asyncio client API, so an implementation with the same API
(e.g. ``picows.websockets``) can be swapped in through ``connect``.
"""

from __future__ import annotations

import base64
import logging
import re
import ssl
import tempfile
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final, Protocol, runtime_checkable
from urllib.parse import quote, quote_plus, unquote_plus, urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.frames import Close, Frame, Opcode
from websockets.proxy import get_proxy
from websockets.uri import parse_uri

from .config import ConnectionSpec, PemSource, TlsSpec, WebSocketSourceSpec
from .errors import AuthenticationFailed, ConfigError, HandshakeFailed

log = logging.getLogger(__name__)

USER_AGENT = "ws2kafka/0.1 (+https://ws2kafka.dev)"


def build_ssl_context(tls: TlsSpec) -> ssl.SSLContext:
    """The TLS context for ``wss://``: system CAs unless a bundle is given; mTLS if configured.

    An unreadable or invalid file or PEM text is a ConfigError naming the field: retrying
    the connection cannot fix it.
    """
    context = ssl.create_default_context()
    if tls.ca_file is not None:
        _load("caFile", tls.ca_file, lambda: context.load_verify_locations(cafile=tls.ca_file))
    elif tls.ca is not None:
        ca = tls.ca.text("ca")
        _load("ca", None, lambda: context.load_verify_locations(cadata=ca))
    if tls.client_cert_file is not None or tls.client_cert is not None:
        _load_client_certificate(context, tls)
    if tls.insecure_skip_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _load_client_certificate(context: ssl.SSLContext, tls: TlsSpec) -> None:
    """mTLS from files, or from PEM texts (written to a private temporary directory for the
    moment ssl reads them: it loads a certificate chain from files only)."""
    with tempfile.TemporaryDirectory(prefix="ws2kafka-tls-") as private:
        cert = _pem_file(tls.client_cert_file, tls.client_cert, "clientCert", private)
        key = _pem_file(tls.client_key_file, tls.client_key, "clientKey", private)
        field = "clientCertFile" if tls.client_cert_file is not None else "clientCert"
        _load(field, tls.client_cert_file, lambda: context.load_cert_chain(cert, key))


def _pem_file(path: Path | None, source: PemSource | None, field: str, private: str) -> Path:
    if path is not None:
        return path
    assert source is not None  # TlsSpec requires one of the two
    written = Path(private) / f"{field}.pem"
    written.touch(mode=0o600)
    written.write_text(source.text(field))
    return written


def _load(field: str, path: Path | None, load: Callable[[], None]) -> None:
    try:
        load()
    except OSError as exc:  # ssl.SSLError too: not PEM, or a key that does not match
        where = f"{path}: " if path is not None else ""
        reason = exc.strerror or str(exc)
        raise ConfigError([f"spec.tls.{field}: cannot load {where}{reason}"]) from None


def build_headers(spec: WebSocketSourceSpec) -> list[tuple[str, str]]:
    """Handshake headers, secrets resolved. A list of pairs, so values may hold commas."""
    headers = [
        (header.name, header.value_from.resolve() if header.value_from else header.value or "")
        for header in spec.headers
    ]
    auth = spec.auth
    if auth.bearer_token is not None:
        headers.append(("Authorization", f"Bearer {auth.bearer_token.resolve()}"))
    elif auth.basic is not None:
        pair = f"{auth.basic.username}:{auth.basic.password.resolve()}".encode()
        headers.append(("Authorization", f"Basic {base64.b64encode(pair).decode()}"))
    for name, value in headers:
        if _CONTROL.search(value):
            # a CR/LF would split the header: fail as a config error, never retry forever
            raise ConfigError([f"header {name}: its value contains control characters"])
    return headers


_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")

#: What a secret is shown as, wherever the text it was in is shown.
REDACTED: Final = "***"


def redact_url(url: str, secret_names: Collection[str] | None = None) -> str:
    """``url`` as it may be shown: the values of the query parameters named in
    ``secret_names`` (all of them when None) and a userinfo password replaced by ``***``.

    The one way a URL is shown: the connect log line, failure messages, the clients' DEBUG
    request line (where the parameters' secrecy is not known, so every value is hidden).
    """
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        userinfo, _, host = netloc.rpartition("@")
        netloc = f"{userinfo.partition(':')[0]}:{REDACTED}@{host}"
    pieces = []
    for piece in parts.query.split("&") if parts.query else ():
        name, sep, _ = piece.partition("=")
        hidden = secret_names is None or unquote_plus(name) in secret_names
        pieces.append(f"{name}={REDACTED}" if sep and hidden else piece)
    return urlunsplit(parts._replace(netloc=netloc, query="&".join(pieces)))


def _with_query(url: str, pairs: list[tuple[str, str]]) -> str:
    """``url`` with ``pairs`` appended to its query (before a fragment), percent-encoded."""
    if not pairs:
        return url
    parts = urlsplit(url)
    added = "&".join(f"{quote(name, safe='')}={quote(value, safe='')}" for name, value in pairs)
    query = f"{parts.query}&{added}" if parts.query else added
    return urlunsplit(parts._replace(query=query))


@dataclass(frozen=True)
class Endpoint:
    """The URL a connection is opened with (``spec.query`` appended, secrets resolved), and
    what may be shown instead. Neither the URL nor the secrets are in its ``repr``."""

    url: str = field(repr=False)
    shown: str
    """The URL with its secrets as ``***``."""
    secrets: tuple[str, ...] = field(default=(), repr=False)
    """The secret values, as written and percent-encoded (what :meth:`scrub` removes)."""

    def scrub(self, text: str) -> str:
        """``text`` (a client's error message) without the URL's secrets."""
        text = text.replace(self.url, self.shown)
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        return text

    def scrub_failure(self, failure: Failure) -> Failure:
        return replace(failure, message=self.scrub(failure.message))


def build_endpoint(spec: WebSocketSourceSpec, tokens: Collection[str] = ()) -> Endpoint:
    """The URL to connect to, its secret query values resolved now (a ConfigError names a
    missing source); called at startup and again when secrets are re-read. ``tokens``: the
    fetched tokens placed in it (in any form), shown as ``***`` wherever they are."""
    pairs: list[tuple[str, str]] = []
    names: set[str] = set()
    secrets: set[str] = set()
    for parameter in spec.query:
        if parameter.value_from is None:
            pairs.append((parameter.name, parameter.value or ""))
            continue
        value = parameter.value_from.resolve()
        pairs.append((parameter.name, value))
        names.add(parameter.name)
        if value:
            secrets.update((value, quote(value, safe=""), quote_plus(value)))
    url = _with_query(spec.url, pairs)
    # longest first: a secret that contains another one is scrubbed whole
    ordered = tuple(sorted(secrets | set(tokens), key=len, reverse=True))
    PATH_SECRETS.add(tokens)
    shown = redact_url(url, names)
    for token in ordered:
        shown = shown.replace(token, REDACTED)
    return Endpoint(url, shown, ordered)


def shown_url(spec: WebSocketSourceSpec) -> str:
    """The URL a connection of ``spec`` is opened with, as it may be shown (no secret is
    resolved: their values are ``***``)."""
    pairs = [(parameter.name, parameter.value or "") for parameter in spec.query]
    secret = {parameter.name for parameter in spec.query if parameter.value_from is not None}
    return redact_url(_with_query(spec.url, pairs), secret)


#: Handshake headers whose values may be logged; every other value (Authorization, API keys,
#: any custom header) is replaced by "[redacted]" in the clients' DEBUG log.
_VISIBLE_HEADERS = frozenset(
    {
        "host",
        "upgrade",
        "connection",
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-extensions",
        "sec-websocket-protocol",
        "sec-websocket-accept",
        "user-agent",
        "server",
        "date",
    }
)


class PathSecrets:
    """Fetched tokens placed in a URL's path (Binance's ``/ws/<listenKey>``): the clients'
    DEBUG request line hides them too, though it cannot know which part of a path is one.
    The last few are kept (a token lives for hours; a bridge uses one at a time)."""

    def __init__(self, keep: int = 64) -> None:
        self._keep = keep
        self._values: dict[str, None] = {}

    def add(self, values: Collection[str]) -> None:
        for value in values:
            self._values.pop(value, None)
            self._values[value] = None
        while len(self._values) > self._keep:
            del self._values[next(iter(self._values))]

    def scrub(self, text: str) -> str:
        for value in sorted(self._values, key=len, reverse=True):
            text = text.replace(value, REDACTED)
        return text


#: The tokens the clients' DEBUG request line hides (:func:`build_endpoint` adds them).
PATH_SECRETS = PathSecrets()


#: Frames whose content websockets' DEBUG log shows: the ones the bridge sends may be a login.
_DATA_OPCODES = frozenset({Opcode.TEXT, Opcode.BINARY, Opcode.CONT})


class RedactHeaderValues(logging.Filter):
    """websockets logs each handshake header at DEBUG as ``> name: value``: hide the values,
    the query's values in its request line ``> GET path HTTP/1.1``, and the content of the
    messages the bridge sends (``> TEXT ...``: a login).

    The picows client logs its handshake in the same form, through the same filter.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if record.msg == "> GET %s HTTP/1.1" and isinstance(args, tuple) and len(args) == 1:
            # the request line: the query may carry secrets (spec.query)
            record.args = (PATH_SECRETS.scrub(redact_url(str(args[0]))),)
        elif record.msg == "> %s" and isinstance(args, tuple) and isinstance(args[0], Frame):
            # a sent frame: the login carries secrets (spec.login); control frames stay
            frame = args[0]
            if frame.opcode in _DATA_OPCODES:
                record.args = (f"{frame.opcode.name} [{len(frame.data)} bytes, redacted]",)
        elif (
            record.msg in ("> %s: %s", "< %s: %s")
            and isinstance(args, tuple)
            and len(args) == 2
            and str(args[0]).lower() not in _VISIBLE_HEADERS
        ):
            record.args = (args[0], "[redacted]")
        return True


#: The logger handed to the websockets client: its records never carry header secrets.
CLIENT_LOG = logging.getLogger("ws2kafka.websockets.client")
CLIENT_LOG.addFilter(RedactHeaderValues())


def build_connect_kwargs(spec: WebSocketSourceSpec) -> dict[str, Any]:
    """Keyword arguments for ``websockets.asyncio.client.connect``."""
    conn: ConnectionSpec = spec.connection
    kwargs: dict[str, Any] = {
        "additional_headers": build_headers(spec),
        "user_agent_header": USER_AGENT,
        "open_timeout": conn.connect_timeout_seconds,
        "max_size": conn.max_frame_bytes,
        "compression": "deflate" if conn.compression else None,
        # Keepalive pings are sent by the bridge itself, so that they can be suspended while
        # the overflow policy deliberately stops reading (see Bridge._keepalive).
        "ping_interval": None,
        "close_timeout": 5,
        "max_queue": 64,
        "logger": CLIENT_LOG,
    }
    if conn.subprotocols:
        kwargs["subprotocols"] = list(conn.subprotocols)
    if spec.url.startswith("wss://"):
        kwargs["ssl"] = build_ssl_context(spec.tls)
    return kwargs


async def open_connection(spec: WebSocketSourceSpec, kwargs: dict[str, Any]) -> ClientConnection:
    """Open one connection; a rejected handshake becomes HandshakeFailed/AuthenticationFailed."""
    try:
        return await connect(spec.url, **kwargs)
    except InvalidStatus as exc:
        response = exc.response
        raise handshake_rejected(
            response.status_code, response.headers.get("Retry-After")
        ) from None


def handshake_rejected(status: int, retry_after: str | None) -> HandshakeFailed:
    """The error of a handshake the server answered with ``status`` (and ``Retry-After``),
    whichever client read it: 401/403 are AuthenticationFailed."""
    if status in (401, 403):
        return AuthenticationFailed(status)
    return HandshakeFailed(status, retry_after_seconds(retry_after))


def retry_after_seconds(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: rare for WebSocket endpoints, backoff applies instead


class Aborting(Protocol):
    """The part of a transport the bridge uses: dropping a dead connection at once."""

    def abort(self) -> None: ...


class SourceConnection(Protocol):
    """What the bridge needs of a WebSocket client connection.

    ``websockets``' ``ClientConnection`` has this shape; ``picows_client.PicowsConnection``
    offers it on top of picows. Closed connections raise websockets' ``ConnectionClosed``.
    """

    @property
    def transport(self) -> Aborting: ...

    @property
    def subprotocol(self) -> str | None: ...

    async def recv(self) -> str | bytes: ...

    async def send(self, message: str) -> None: ...

    async def ping(self) -> Awaitable[float]: ...

    async def close(self, code: int = 1000, reason: str = "") -> None: ...


#: Takes a message (its bytes, whether binary); returns True when reading must pause.
FrameConsumer = Callable[[bytes, bool], bool]


@runtime_checkable
class CallbackReading(Protocol):
    """A connection that hands its messages to a consumer itself (picows), instead of one
    ``recv()`` coroutine per message."""

    async def read_into(
        self, consumer: FrameConsumer, wait_for_room: Callable[[], Awaitable[None]]
    ) -> None: ...


async def read_messages(
    ws: SourceConnection, consumer: FrameConsumer, wait_for_room: Callable[[], Awaitable[None]]
) -> None:
    """Every message of ``ws`` into ``consumer`` until the connection ends (``ConnectionClosed``);
    when the consumer asks to pause, nothing is read until ``wait_for_room`` returns."""
    if isinstance(ws, CallbackReading):
        await ws.read_into(consumer, wait_for_room)
        return
    recv = ws.recv
    while True:
        if consumer(*as_message(await recv())):
            await wait_for_room()


def as_message(data: str | bytes) -> tuple[bytes, bool]:
    """A ``recv()`` result as the consumer takes it: its bytes, and whether it is binary."""
    return (data, True) if isinstance(data, bytes) else (data.encode(), False)


Opener = Callable[[WebSocketSourceSpec, dict[str, Any]], Awaitable[SourceConnection]]


@dataclass(frozen=True)
class Failure:
    """Why a connection attempt failed or a connection ended, as counted and reported."""

    reason: str
    """Exception class name (the status condition's reason)."""
    message: str
    close_code: int | None = None
    retry_after: float | None = None
    authentication: bool = False
    give_up: bool = False
    """The spec says this failure ends the bridge (``subscription.onFailure: giveUp``)."""
    token_expired: bool = False
    """The server refused a token or said it expired (``spec.tokens``): a new one is
    fetched before the next connect, after the ordinary backoff."""


class ConnectFailed(Exception):
    """A failed connection attempt, classified and scrubbed of the URL's secrets by the link
    that made it (so that whoever reports it, a rotation too, needs no secrets)."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.message)
        self.failure = failure


def describe_failure(exc: BaseException) -> Failure:
    """Classify an exception from connecting or reading."""
    if isinstance(exc, ConnectFailed):
        return exc.failure
    if isinstance(exc, HandshakeFailed):
        return Failure(
            type(exc).__name__,
            str(exc),
            retry_after=exc.retry_after,
            authentication=isinstance(exc, AuthenticationFailed),
        )
    if isinstance(exc, ConnectionClosed):
        frame = _initiating_close(exc)
        code = frame.code if frame is not None else 1006
        reason = frame.reason if frame is not None else "no close frame received"
        return Failure(type(exc).__name__, f"closed with {code} {reason}".strip(), code)
    if isinstance(exc, TimeoutError):
        return Failure("ConnectTimeout", "timed out")
    return Failure(type(exc).__name__, str(exc) or type(exc).__name__)


def _initiating_close(exc: ConnectionClosed) -> Close | None:
    """The close frame of the side that closed first: that code says why the connection ended.

    When the bridge itself fails the connection (1009 frame too big, 1007 invalid UTF-8), no
    close frame is received at all; only the one sent carries the reason.
    """
    if exc.rcvd is not None and (exc.sent is None or exc.rcvd_then_sent):
        return exc.rcvd
    return exc.sent


def environment_proxy(url: str) -> str | None:
    """The proxy from the environment for ``url`` (``ws(s)://``, or a token request's
    ``http(s)://``, looked up as the ``ws(s)://`` URL of the same host), picked by
    ``websockets``' own rule (its ``proxy=True``).

    That rule honours ``no_proxy`` and prefers ``ws(s)_proxy``, then SOCKS (``socks_proxy``),
    then ``https_proxy`` (even for ``ws://``), then ``http_proxy``: in a cluster behind a
    proxy, the same hosts go through it whichever client is selected, and a feed's token
    requests take the path its WebSocket does.
    """
    if url.startswith("http"):
        url = "ws" + url.removeprefix("http")
    return get_proxy(parse_uri(url))

"""A WebSocket client on picows, behind the interface the bridge reads through.

:func:`open_picows` has the contract of :func:`ws2kafka.bridge.source.open_connection`: it takes
the same spec and ``build_connect_kwargs`` arguments and raises the same
``HandshakeFailed``/``AuthenticationFailed``. The connection it returns offers the part of the
``websockets`` ``ClientConnection`` API that the bridge uses (``recv``, ``send``, ``ping``,
``close``, ``transport.abort()``, ``subprotocol``, ``response``), and raises ``websockets``'
own ``ConnectionClosed`` classes, so ``describe_failure`` classifies its failures exactly like
those of the websockets client. It also offers ``read_into``: the session's read path, every
message handed over from picows' callback (``picows_listener``) without a coroutine per frame.

It runs on ``picows.websockets`` (the websockets client API implemented on picows, with
permessage-deflate). It is the default client: the bridge runs up to 1.5x faster with it than
with websockets (see docs/performance.md), which stays selectable as the fallback.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn

from picows import (
    WSInvalidMessageError,
    WSInvalidStatusError,
    WSTransport,
    WSUpgradeRequest,
    WSUpgradeResponse,
    ws_connect,
)
from picows.picows import WSCloseInfo
from picows.websockets import ClientConnection as PicowsClientConnection
from picows.websockets.asyncio.negotiation import configure_permessage_deflate, resolve_subprotocol
from picows.websockets.compat import Request, Response
from picows.websockets.exceptions import ConnectionClosed as PicowsConnectionClosed
from picows.websockets.exceptions import ConnectionClosedOK as PicowsConnectionClosedOK
from websockets.exceptions import ConnectionClosed, ConnectionClosedError, ConnectionClosedOK
from websockets.frames import Close

from .config import WebSocketSourceSpec
from .picows_listener import FrameListener
from .source import FrameConsumer, RedactHeaderValues, environment_proxy, handshake_rejected

#: The logger of the picows client (handshake, connection, picows itself): like
#: ``source.CLIENT_LOG`` for websockets, its records never carry header secrets.
log = logging.getLogger("ws2kafka.picows.client")
log.addFilter(RedactHeaderValues())

#: What ``websockets`` offers when compression is on.
PERMESSAGE_DEFLATE_OFFER = "permessage-deflate; client_max_window_bits"
#: Send buffer high watermark, as ``websockets``' default ``write_limit``.
WRITE_LIMIT = 32768


#: picows' ERROR records about the peer's protocol violations (e.g. a message over the limit):
#: the bridge reports the close they cause, code and reason, itself.
_PROTOCOL_ERRORS = frozenset(
    {
        "on_ws_frame raised WSProtocolError: %s, send CLOSE and initiate disconnect",
        "WS parser error: %s, initiate disconnect",
    }
)


class PicowsLog(logging.LoggerAdapter[logging.Logger]):
    """picows' own log, routed into :data:`log` and made as quiet as websockets' client.

    picows dumps the raw upgrade request, Authorization value included, at its level 9: that
    record is dropped (:func:`_log_handshake` logs the handshake with values redacted). Its
    INFO records ("WS connection established", "Disconnected") and its protocol errors become
    DEBUG: the bridge logs every connect and close itself, and websockets' client logs neither
    above DEBUG.
    """

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        if msg == "Send upgrade request: %s":
            return
        if level == logging.INFO or msg in _PROTOCOL_ERRORS:
            level = logging.DEBUG
        super().log(level, msg, *args, **kwargs)


PICOWS_LOG = PicowsLog(log)


def _log_handshake(request: WSUpgradeRequest | None, response: WSUpgradeResponse) -> None:
    """The handshake at DEBUG, in websockets' format, so that ``RedactHeaderValues`` applies."""
    if not log.isEnabledFor(logging.DEBUG):
        return
    if request is not None:
        log.debug("> GET %s HTTP/1.1", request.path.decode(errors="replace"))
        for name, value in request.headers.items():
            log.debug("> %s: %s", name, value)
    log.debug("< HTTP/1.1 %d %s", response.status.value, response.status.phrase)
    for name, value in response.headers.items():
        log.debug("< %s: %s", name, value)


class AbortingTransport:
    """``transport.abort()`` as the bridge calls it: drop the TCP connection at once."""

    __slots__ = ("_transport",)

    def __init__(self, transport: WSTransport) -> None:
        self._transport = transport

    def abort(self) -> None:
        self._transport.disconnect(False)


class PicowsConnection:
    """One open connection; see the module docstring for the API it offers."""

    __slots__ = ("_listener", "response", "subprotocol", "transport")

    def __init__(self, listener: FrameListener) -> None:
        self._listener = listener
        self.transport = AbortingTransport(listener.ws_transport)
        self.subprotocol: str | None = listener.subprotocol
        self.response = listener.response

    async def recv(self) -> str | bytes:
        """The next message: ``str`` for a text frame, ``bytes`` for a binary one."""
        listener = self._listener
        while (message := listener.next_message()) is None:
            if listener.ended:
                await self._raise_closed()
            await listener.wait()
        payload, binary = message
        return payload if binary else payload.decode()

    async def read_into(
        self, consumer: FrameConsumer, wait_for_room: Callable[[], Awaitable[None]]
    ) -> None:
        """Hand every message to ``consumer`` from picows' callback until the connection ends
        (raising ``ConnectionClosed``); when it asks to pause, reading stops until
        ``wait_for_room`` returns."""
        listener = self._listener
        listener.attach(consumer)
        while True:
            await listener.wait()
            if listener.consumer_paused:
                await wait_for_room()
                listener.resume()
            elif listener.ended:
                await self._raise_closed()

    async def _raise_closed(self) -> NoReturn:
        """The close exception, from ``picows.websockets`` (its queue stays empty: the
        listener takes every message itself)."""
        try:
            await PicowsClientConnection.recv(self._listener)
        except PicowsConnectionClosed as exc:
            raise closed_to_websockets(exc) from None
        raise AssertionError("picows.websockets queued a message")  # pragma: no cover

    async def send(self, message: str | bytes) -> None:
        try:
            await self._listener.send(message)
        except PicowsConnectionClosed as exc:
            raise closed_to_websockets(exc) from None

    async def ping(self) -> Awaitable[float]:
        """Send a ping; returns the future that the pong completes (with the latency)."""
        try:
            return await self._listener.ping()
        except PicowsConnectionClosed as exc:
            raise closed_to_websockets(exc) from None

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Send a close frame and wait (up to ``close_timeout``) for the server's."""
        await self._listener.close(code, reason)


def closed_to_websockets(exc: PicowsConnectionClosed) -> ConnectionClosed:
    """The ``websockets`` exception for a closed picows connection, close frames included."""
    ok = isinstance(exc, PicowsConnectionClosedOK)
    kind = ConnectionClosedOK if ok else ConnectionClosedError
    rcvd, sent = _close_frame(exc.rcvd), _close_frame(exc.sent)
    # websockets insists that the order is known exactly when both frames exist; picows may
    # report an order for a connection aborted after one close frame
    order = bool(exc.rcvd_then_sent) if rcvd is not None and sent is not None else None
    return kind(rcvd, sent, order)


def _close_frame(info: WSCloseInfo | None) -> Close | None:
    if info is None:
        return None
    return Close(int(info.code.value), info.reason or "")


async def open_picows(spec: WebSocketSourceSpec, kwargs: dict[str, Any]) -> PicowsConnection:
    """Open one connection; a rejected handshake becomes HandshakeFailed/AuthenticationFailed.

    ``kwargs`` are those of ``websockets``' ``connect`` (see ``build_connect_kwargs``); the
    handshake is the one ``picows.websockets.connect`` performs, with the same options.
    """
    subprotocols: list[str] | None = kwargs.get("subprotocols")
    compression: str | None = kwargs["compression"]
    max_size: int = kwargs["max_size"]
    headers = [*kwargs["additional_headers"], ("User-Agent", kwargs["user_agent_header"])]
    if subprotocols:
        headers.append(("Sec-WebSocket-Protocol", ", ".join(subprotocols)))
    if compression == "deflate":
        headers.append(("Sec-WebSocket-Extensions", PERMESSAGE_DEFLATE_OFFER))

    def listener_factory(request: WSUpgradeRequest, response: WSUpgradeResponse) -> FrameListener:
        _log_handshake(request, response)
        wrapped = Response.from_picows(response)
        deflate = configure_permessage_deflate(wrapped, compression)
        listener = FrameListener(
            request=Request.from_picows(request),
            response=wrapped,
            subprotocol=resolve_subprotocol(subprotocols, wrapped),
            permessage_deflate=deflate,
            ping_interval=None,  # the bridge pings itself (Bridge._keepalive)
            ping_timeout=None,
            close_timeout=kwargs["close_timeout"],
            max_queue=kwargs["max_queue"],
            write_limit=WRITE_LIMIT,
            max_message_size=max_size,
            max_frame_size=max_size,
            logger=log,
        )
        listener.configure(deflate, max_size, kwargs["max_queue"])
        return listener

    try:
        # picows times the HTTP upgrade only; websockets' open_timeout also covers the TCP
        # connect (and proxy tunnel) and the TLS handshake, which a blackholed peer can stall
        async with asyncio.timeout(kwargs["open_timeout"]):
            _, listener = await ws_connect(
                listener_factory,
                spec.url,
                ssl_context=kwargs.get("ssl"),
                websocket_handshake_timeout=kwargs["open_timeout"],
                enable_auto_ping=False,
                enable_auto_pong=True,
                max_frame_size=max_size,
                extra_headers=headers,
                proxy=environment_proxy(spec.url),
                logger_name=PICOWS_LOG,
            )
    except WSInvalidStatusError as exc:
        response = exc.response
        assert response is not None  # picows sets it on every invalid status
        _log_handshake(None, response)
        raise handshake_rejected(
            int(response.status), response.headers.get("Retry-After")
        ) from None
    except WSInvalidMessageError as exc:
        rejection = _unlisted_status(exc.raw_header) if exc.response is None else None
        if rejection is None:
            raise
        raise handshake_rejected(*rejection) from None
    assert isinstance(listener, FrameListener)
    return PicowsConnection(listener)


_STATUS_LINE = re.compile(rb"HTTP/1\.1 (\d{3})(?: |$)")


def _unlisted_status(raw_header: bytes | None) -> tuple[int, str | None] | None:
    """Status and Retry-After of an upgrade response whose status picows could not parse.

    picows only parses the statuses ``http.HTTPStatus`` lists and calls any other one (e.g.
    Cloudflare's 520-530) an invalid message; websockets rejects it as an HTTP status like any
    other, which the bridge needs to honour Retry-After and to report the status.
    """
    lines = (raw_header or b"").split(b"\r\n")
    match = _STATUS_LINE.match(lines[0])
    if match is None:
        return None
    retry_after = None
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"retry-after":
            retry_after = value.strip().decode("latin-1")
    return int(match[1]), retry_after

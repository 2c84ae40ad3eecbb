"""A WebSocket client on picows, behind the interface the bridge reads through.

:func:`open_picows` has the contract of :func:`ws2kafka.bridge.source.open_connection`: it takes
the same spec and ``build_connect_kwargs`` arguments and raises the same
``HandshakeFailed``/``AuthenticationFailed``. The connection it returns offers the part of the
``websockets`` ``ClientConnection`` API that :class:`~ws2kafka.bridge.service.Bridge` uses
(``recv``, ``send``, ``ping``, ``close``, ``transport.abort()``, ``subprotocol``,
``response``), and raises ``websockets``' own ``ConnectionClosed`` classes, so
``describe_failure`` classifies its failures exactly like those of the default client.

It runs on ``picows.websockets`` (the websockets client API implemented on picows, with
permessage-deflate), which receives about nine times faster than websockets (see
docs/performance.md).
"""

from __future__ import annotations

import logging
import urllib.request
from collections.abc import Awaitable
from typing import Any

from picows import (
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
from .errors import AuthenticationFailed, HandshakeFailed
from .source import retry_after_seconds

log = logging.getLogger(__name__)

#: What ``websockets`` offers when compression is on.
PERMESSAGE_DEFLATE_OFFER = "permessage-deflate; client_max_window_bits"
#: Send buffer high watermark, as ``websockets``' default ``write_limit``.
WRITE_LIMIT = 32768


class AbortingTransport:
    """``transport.abort()`` as the bridge calls it: drop the TCP connection at once."""

    __slots__ = ("_transport",)

    def __init__(self, transport: WSTransport) -> None:
        self._transport = transport

    def abort(self) -> None:
        self._transport.disconnect(False)


class _Listener(PicowsClientConnection):
    """``picows.websockets``' connection, keeping the transport it hides, to abort it."""

    ws_transport: WSTransport

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.ws_transport = transport
        super().on_ws_connected(transport)


class PicowsConnection:
    """One open connection; see the module docstring for the API it offers."""

    __slots__ = ("_connection", "response", "subprotocol", "transport")

    def __init__(self, connection: _Listener) -> None:
        self._connection = connection
        self.transport = AbortingTransport(connection.ws_transport)
        self.subprotocol: str | None = connection.subprotocol
        self.response = connection.response

    async def recv(self) -> str | bytes:
        """The next message: ``str`` for a text frame, ``bytes`` for a binary one."""
        try:
            data: str | bytes = await self._connection.recv()
        except PicowsConnectionClosed as exc:
            raise closed_to_websockets(exc) from None
        return data

    async def send(self, message: str | bytes) -> None:
        try:
            await self._connection.send(message)
        except PicowsConnectionClosed as exc:
            raise closed_to_websockets(exc) from None

    async def ping(self) -> Awaitable[float]:
        """Send a ping; returns the future that the pong completes (with the latency)."""
        try:
            return await self._connection.ping()
        except PicowsConnectionClosed as exc:
            raise closed_to_websockets(exc) from None

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Send a close frame and wait (up to ``close_timeout``) for the server's."""
        await self._connection.close(code, reason)


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

    def listener_factory(request: WSUpgradeRequest, response: WSUpgradeResponse) -> _Listener:
        wrapped = Response.from_picows(response)
        return _Listener(
            request=Request.from_picows(request),
            response=wrapped,
            subprotocol=resolve_subprotocol(subprotocols, wrapped),
            permessage_deflate=configure_permessage_deflate(wrapped, compression),
            ping_interval=None,  # the bridge pings itself (Bridge._keepalive)
            ping_timeout=None,
            close_timeout=kwargs["close_timeout"],
            max_queue=kwargs["max_queue"],
            write_limit=WRITE_LIMIT,
            max_message_size=max_size,
            max_frame_size=max_size,
            logger=log,
        )

    try:
        _, listener = await ws_connect(
            listener_factory,
            spec.url,
            ssl_context=kwargs.get("ssl"),
            websocket_handshake_timeout=kwargs["open_timeout"],
            enable_auto_ping=False,
            enable_auto_pong=True,
            max_frame_size=max_size,
            extra_headers=headers,
            proxy=_proxy(spec.url),
        )
    except WSInvalidStatusError as exc:
        response = exc.response
        assert response is not None  # picows sets it on every invalid status
        status = int(response.status)
        retry_after = retry_after_seconds(response.headers.get("Retry-After"))
        if status in (401, 403):
            raise AuthenticationFailed(status) from None
        raise HandshakeFailed(status, retry_after) from None
    assert isinstance(listener, _Listener)
    return PicowsConnection(listener)


def _proxy(url: str) -> str | None:
    """The proxy from the environment, as ``websockets`` (``proxy=True``) picks it."""
    proxies = urllib.request.getproxies()
    secure = url.startswith("wss://")
    return proxies.get("wss" if secure else "ws") or proxies.get("https" if secure else "http")

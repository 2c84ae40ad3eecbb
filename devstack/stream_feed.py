"""A feed with an exchange's limits: streams per connection, and connections per window.

Real exchanges cap what one connection may carry (Binance: 1024 streams) and how fast a
client may connect (300 connections per 5 minutes per IP), and answer beyond the latter with
HTTP 429 and ``Retry-After``. :class:`CappedStreamFeed` enforces both on loopback: a
connection subscribing more than ``max_per_connection`` streams is closed with 1008, a
handshake beyond ``connects`` per ``per_seconds`` is refused with 429. Every subscribed
stream then gets ``per_stream`` numbered frames (``{"stream": s, "seq": n}``, ``n`` from 1),
so a test can check each stream's frames reached Kafka exactly once. A stream on two
connections at once (a make-before-break replacement) gets each of its frames on one of them:
:attr:`CappedStreamFeed.sent` counts what went out, and every connection's subscriptions are
kept in :attr:`CappedStreamFeed.subscriptions`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from http import HTTPStatus
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response


class CappedStreamFeed:
    """See the module docstring. Subscribe with ``{"method":"SUBSCRIBE","params":[...]}``."""

    def __init__(
        self,
        *,
        max_per_connection: int,
        connects: int,
        per_seconds: float,
        per_stream: int,
        retry_after: int = 2,
        pace: float = 0.0,
    ) -> None:
        """``pace``: seconds between two rounds of frames (0: as fast as it can)."""
        self.max_per_connection = max_per_connection
        self.connects = connects
        self.per_seconds = per_seconds
        self.per_stream = per_stream
        self.retry_after = retry_after
        self.pace = pace
        self.refused_429 = 0
        """Handshakes refused for going beyond the connect rate."""
        self.capped = 0
        """Connections closed with 1008 for subscribing too many streams."""
        self.accepted = 0
        self.live: set[ServerConnection] = set()
        self.subscribed: dict[ServerConnection, list[str]] = {}
        self.subscriptions: list[list[str]] = []
        """The streams each accepted connection subscribed, in the order they connected."""
        self._handshakes: deque[float] = deque()
        self._next_seq: dict[str, int] = {}
        self._server: Server | None = None
        self._closing: set[asyncio.Future[None]] = set()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"ws://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/ws"

    async def __aenter__(self) -> CappedStreamFeed:
        self._server = await serve(
            self._handle, "127.0.0.1", 0, process_request=self._admit, max_queue=None
        )
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.close()
        with contextlib.suppress(Exception):
            await self._server.wait_closed()

    @property
    def sent(self) -> dict[str, int]:
        """Frames sent per stream (numbered 1 to that)."""
        return {stream: seq - 1 for stream, seq in self._next_seq.items()}

    def drop(self, stream: str) -> None:
        """Close the connection that carries ``stream`` (1011), as a server restart would."""
        for connection, streams in self.subscribed.items():
            if stream in streams:
                self._closing.add(asyncio.ensure_future(connection.close(1011, "server restart")))
                return

    def _admit(self, connection: ServerConnection, request: Request) -> Response | None:
        now = time.monotonic()
        while self._handshakes and self._handshakes[0] <= now - self.per_seconds:
            self._handshakes.popleft()
        if len(self._handshakes) >= self.connects:
            self.refused_429 += 1
            headers = Headers([("Retry-After", str(self.retry_after))])
            return Response(HTTPStatus.TOO_MANY_REQUESTS, "Too Many Requests", headers, b"")
        self._handshakes.append(now)
        return None

    async def _handle(self, connection: ServerConnection) -> None:
        self.accepted += 1
        self.live.add(connection)
        streams: list[str] = []
        self.subscriptions.append(streams)
        try:
            async for message in connection:
                request: dict[str, Any] = json.loads(message)
                streams.extend(request["params"])
                if len(streams) > self.max_per_connection:
                    self.capped += 1
                    await connection.close(1008, "too many streams for one connection")
                    return
                self.subscribed[connection] = list(streams)
                await connection.send(json.dumps({"result": None, "id": request["id"]}))
                await self._stream(connection, request["params"])
        except ConnectionClosed:
            pass
        finally:
            self.live.discard(connection)
            self.subscribed.pop(connection, None)

    async def _stream(self, connection: ServerConnection, streams: list[str]) -> None:
        """Each stream's next frames up to ``per_stream``: a reconnected stream resumes where
        the server left it (what it sent meanwhile is the gap a real feed would leave)."""
        for _ in range(self.per_stream):
            for stream in streams:
                seq = self._next_seq.get(stream, 1)
                if seq > self.per_stream:
                    continue
                await connection.send(json.dumps({"stream": stream, "seq": seq}))
                self._next_seq[stream] = seq + 1
            await asyncio.sleep(self.pace)

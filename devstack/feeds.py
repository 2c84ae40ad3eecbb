"""Local WebSocket feeds for tests, the demo and benchmarks.

:class:`SequenceFeed` sends JSON frames numbered 1, 2, 3... (``{"seq": n, ...}``), so a test
can check exactly which frames reached Kafka: none lost, none duplicated. It records what
every connection sent it (subscriptions, headers), and can close connections on cue.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed


@dataclass
class FeedConnection:
    """What the feed saw of one client connection."""

    headers: dict[str, str]
    path: str
    messages: list[str | bytes] = field(default_factory=list)
    """Messages the client sent (subscriptions, heartbeats)."""
    sent: int = 0
    """Frames the feed sent on this connection."""
    spoke: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once the client sent its first message."""


class SequenceFeed:
    """A WebSocket server that streams numbered frames to every client.

    Args:
        count: frames per connection before the feed idles (None: until the client leaves).
        rate: frames per second (None: as fast as the socket takes them).
        wait_for_subscribe: only start sending after the client sent its first message.
        binary: send binary frames instead of text frames.
        pad: bytes of padding in each frame.
        close_after: close each connection after this many frames, with ``close_code``.
    """

    def __init__(
        self,
        *,
        count: int | None = None,
        rate: float | None = None,
        wait_for_subscribe: bool = False,
        binary: bool = False,
        pad: int = 0,
        close_after: int | None = None,
        close_code: int = 1000,
        **serve_kwargs: Any,
    ) -> None:
        self.count = count
        self.rate = rate
        self.wait_for_subscribe = wait_for_subscribe
        self.binary = binary
        self.padding = "x" * pad
        self.close_after = close_after
        self.close_code = close_code
        self.connections: list[FeedConnection] = []
        self.next_seq = 1
        self._serve_kwargs = serve_kwargs
        self._server: Server | None = None

    @property
    def sent(self) -> int:
        """Frames sent over all connections."""
        return self.next_seq - 1

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"ws://127.0.0.1:{port}/feed"

    async def start(self) -> SequenceFeed:
        self._server = await serve(self._handle, "127.0.0.1", 0, **self._serve_kwargs)
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def __aenter__(self) -> SequenceFeed:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def frame(self, seq: int) -> str | bytes:
        text = json.dumps({"seq": seq, "pad": self.padding}, separators=(",", ":"))
        return text.encode() if self.binary else text

    async def _handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        conn = FeedConnection(headers=dict(ws.request.headers.raw_items()), path=ws.request.path)
        self.connections.append(conn)
        listener = asyncio.create_task(self._listen(ws, conn))
        try:
            if self.wait_for_subscribe:
                await conn.spoke.wait()
            await self._send_frames(ws, conn)
            if self.close_after is not None:
                await ws.close(self.close_code, "feed closes on cue")
            await ws.wait_closed()
        except ConnectionClosed:
            pass
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener

    async def _send_frames(self, ws: ServerConnection, conn: FeedConnection) -> None:
        interval = 1.0 / self.rate if self.rate else 0.0
        limit = self.count if self.close_after is None else self.close_after
        while limit is None or conn.sent < limit:
            await ws.send(self.frame(self.next_seq))
            self.next_seq += 1
            conn.sent += 1
            if interval:
                await asyncio.sleep(interval)
            elif conn.sent % 100 == 0:
                await asyncio.sleep(0)

    async def _listen(self, ws: ServerConnection, conn: FeedConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for message in ws:
                conn.messages.append(message)
                conn.spoke.set()

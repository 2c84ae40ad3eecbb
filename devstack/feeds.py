"""Local WebSocket feeds for tests, the demo and benchmarks.

:class:`SequenceFeed` sends JSON frames numbered 1, 2, 3... (``{"seq": n, ...}``), so a test
can check exactly which frames reached Kafka: none lost, none duplicated. It records what
every connection sent it (subscriptions, headers) and what its handshake negotiated, can close
connections on cue, serve ``wss://`` (pass ``ssl=``), and ping its clients to count their pongs.

:class:`BroadcastFeed` publishes one global numbered stream to whoever is connected, like an
exchange: what it publishes while the bridge is away is missed, which is what gap markers and
sequence-gap detection must reveal, and rotation must avoid.

:class:`FeedThread` serves a :class:`SequenceFeed` from a thread of its own, for tests that
poll synchronously (kubectl) while frames flow.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response


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
    subprotocol: str | None = None
    """The subprotocol the handshake negotiated."""
    extensions: str | None = None
    """The ``Sec-WebSocket-Extensions`` header the feed answered with (None: no extension)."""
    pongs: int = 0
    """Pongs the client returned to the feed's pings (see ``ping_every``)."""
    close_code: int | None = None
    """The close code of the connection, once it is closed."""


class SequenceFeed:
    """A WebSocket server that streams numbered frames to every client.

    Args:
        count: frames per connection before the feed idles (None: until the client leaves).
        rate: frames per second (None: as fast as the socket takes them).
        wait_for_subscribe: only start sending after the client sent its first message.
        binary: send binary frames instead of text frames.
        pad: bytes of padding in each frame.
        close_after: close each connection after this many frames, with ``close_code``.
        ping_every: ping each client this often (seconds), counting its pongs; the next ping
            goes out once the previous one was answered.
        fragments: send each frame as a message of this many fragments (WebSocket
            continuation frames), each compressed on its own when compression is on.
        port: the port to listen on (0: any free one); a fixed one lets a test point a
            source at a feed that is down, then bring it up.
        serve_kwargs: passed to ``websockets.asyncio.server.serve`` (``ssl``, ``subprotocols``,
            ``compression``...).
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
        ping_every: float | None = None,
        fragments: int = 1,
        port: int = 0,
        **serve_kwargs: Any,
    ) -> None:
        self.count = count
        self.rate = rate
        self.wait_for_subscribe = wait_for_subscribe
        self.binary = binary
        self.padding = "x" * pad
        self.close_after = close_after
        self.close_code = close_code
        self.ping_every = ping_every
        self.fragments = fragments
        self.port = port
        self.connections: list[FeedConnection] = []
        self.next_seq = 1
        self._serve_kwargs = serve_kwargs
        self._server: Server | None = None
        self._up_to: int | None = None
        self._raised = asyncio.Event()

    @property
    def sent(self) -> int:
        """Frames sent over all connections."""
        return self.next_seq - 1

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        scheme = "wss" if self._serve_kwargs.get("ssl") else "ws"
        return f"{scheme}://127.0.0.1:{port}/feed"

    def send_up_to(self, last: int | None) -> None:
        """Send no frame numbered above ``last`` (None: no such limit), over all connections.

        Senders hold at the limit until it is raised, so a test can let an exact number of
        frames out, change the world (stop Kafka), and let the next ones out.
        """
        self._up_to = last
        self._raised.set()

    async def start(self) -> SequenceFeed:
        self._server = await serve(self._handle, "127.0.0.1", self.port, **self._serve_kwargs)
        return self

    async def stop(self) -> None:
        self.send_up_to(None)  # a holding sender notices the closed connection and ends
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

    def _message(self, seq: int) -> str | bytes | list[str | bytes]:
        """Frame ``seq`` as sent: whole, or cut into ``fragments`` pieces."""
        frame = self.frame(seq)
        if self.fragments == 1:
            return frame
        step = -(-len(frame) // self.fragments)
        return [frame[start : start + step] for start in range(0, len(frame), step)]

    async def _handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        assert ws.response is not None
        conn = FeedConnection(
            headers=dict(ws.request.headers.raw_items()),
            path=ws.request.path,
            subprotocol=ws.subprotocol,
            extensions=ws.response.headers.get("Sec-WebSocket-Extensions"),
        )
        self.connections.append(conn)
        listener = asyncio.create_task(self._listen(ws, conn))
        helpers = [listener]
        if self.ping_every:
            helpers.append(asyncio.create_task(self._ping(ws, conn, self.ping_every)))
        try:
            if self.wait_for_subscribe:
                spoke = asyncio.ensure_future(conn.spoke.wait())
                # a client that leaves before subscribing ends the listener instead
                await asyncio.wait({spoke, listener}, return_when=asyncio.FIRST_COMPLETED)
                spoke.cancel()
                if not conn.spoke.is_set():
                    return
            await self._send_frames(ws, conn)
            if self.close_after is not None:
                await ws.close(self.close_code, "feed closes on cue")
            await ws.wait_closed()
        except ConnectionClosed:
            pass
        finally:
            conn.close_code = ws.close_code
            for helper in helpers:
                helper.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)

    async def _send_frames(self, ws: ServerConnection, conn: FeedConnection) -> None:
        interval = 1.0 / self.rate if self.rate else 0.0
        limit = self.count if self.close_after is None else self.close_after
        while limit is None or conn.sent < limit:
            while self._up_to is not None and self.next_seq > self._up_to:
                self._raised.clear()
                await self._raised.wait()
            await ws.send(self._message(self.next_seq))
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

    async def _ping(self, ws: ServerConnection, conn: FeedConnection, every: float) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                await asyncio.sleep(every)
                pong = await ws.ping()
                await pong
                conn.pongs += 1


class BroadcastFeed:
    """One global numbered stream (``{"seq": n}``) published to every subscribed client, as
    an exchange does: a frame published while a client is away is never sent to it, and two
    clients connected at once receive the same frames.

    A client joins the stream with its first message (its subscription). :meth:`publish`
    sends the next frames to the clients joined at that moment, in join order, so a newer
    connection never receives a frame before an older one did. :meth:`refuse` makes the
    handshake fail (e.g. 503 with ``Retry-After``) until :meth:`accept`.
    """

    def __init__(self, **serve_kwargs: Any) -> None:
        self.connections: list[FeedConnection] = []
        self.published = 0
        """Frames published so far (the last ``seq``)."""
        self.refused = 0
        """Handshakes refused while :meth:`refuse` was in force."""
        self._live: list[tuple[ServerConnection, FeedConnection]] = []
        self._refusal: tuple[int, str | None] | None = None
        self._serve_kwargs = serve_kwargs
        self._server: Server | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"ws://127.0.0.1:{port}/stream"

    @property
    def live(self) -> int:
        """Clients joined to the stream now."""
        return len(self._live)

    def refuse(self, status: int, retry_after: str | None = None) -> None:
        """Answer every handshake with ``status`` (and ``Retry-After``) until :meth:`accept`."""
        self._refusal = (status, retry_after)

    def accept(self) -> None:
        self._refusal = None

    async def __aenter__(self) -> BroadcastFeed:
        self._server = await serve(
            self._handle, "127.0.0.1", 0, process_request=self._gate, **self._serve_kwargs
        )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def publish(self, count: int, rate: float | None = None) -> None:
        """Publish the next ``count`` frames (at ``rate`` per second, or as fast as possible)."""
        interval = 1.0 / rate if rate else 0.0
        for _ in range(count):
            self.published += 1
            frame = json.dumps({"seq": self.published}, separators=(",", ":"))
            for ws, conn in list(self._live):
                with contextlib.suppress(ConnectionClosed):
                    await ws.send(frame)
                    conn.sent += 1
            if interval:
                await asyncio.sleep(interval)
            elif self.published % 100 == 0:
                await asyncio.sleep(0)

    async def close(self, index: int, code: int, reason: str) -> None:
        """Close connection ``index`` (in connection order) with ``code`` and ``reason``."""
        for ws, conn in list(self._live):
            if conn is self.connections[index]:
                await ws.close(code, reason)

    def _gate(self, connection: ServerConnection, request: Request) -> Response | None:
        if self._refusal is None:
            return None
        self.refused += 1
        status, retry_after = self._refusal
        headers = Headers({"Retry-After": retry_after} if retry_after else {})
        return Response(status, "refused", headers, b"refused\n")

    async def _handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        conn = FeedConnection(headers=dict(ws.request.headers.raw_items()), path=ws.request.path)
        self.connections.append(conn)
        entry = (ws, conn)
        try:
            with contextlib.suppress(ConnectionClosed):
                async for message in ws:
                    conn.messages.append(message)
                    if not conn.spoke.is_set():
                        conn.spoke.set()
                        self._live.append(entry)
        finally:
            if entry in self._live:
                self._live.remove(entry)
            conn.close_code = ws.close_code


@contextlib.asynccontextmanager
async def silent_server() -> AsyncIterator[int]:
    """A TCP server that accepts connections and never answers (a stalled handshake, plain or
    TLS); yields its port. The accepted sockets stay open until the server closes."""
    accepted: list[asyncio.StreamWriter] = []

    async def keep_silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)

    server = await asyncio.start_server(keep_silent, "127.0.0.1", 0)
    async with server:
        try:
            yield server.sockets[0].getsockname()[1]
        finally:
            for writer in accepted:
                writer.close()


#: The frame limit to configure on a bridge facing :func:`send_oversized_frame`.
HOSTILE_FRAME_LIMIT = 1024


async def send_oversized_frame(ws: ServerConnection) -> None:
    """A text frame one byte over :data:`HOSTILE_FRAME_LIMIT` (the client must close 1009)."""
    await ws.send("x" * (HOSTILE_FRAME_LIMIT + 1))


async def send_oversized_fragments(ws: ServerConnection) -> None:
    """A message in fragments, compressed if negotiated, over :data:`HOSTILE_FRAME_LIMIT` in
    total though each fragment is under it (the client must close 1009 and deliver nothing)."""
    await ws.send(["x" * 600, "y" * 600])


async def send_invalid_utf8(ws: ServerConnection) -> None:
    """A text frame that is not UTF-8 (the client must close 1007)."""
    await ws.send(b'{"seq": \xff}', text=True)


#: Every protocol violation a hostile feed can commit, by test id, with the close code the
#: bridge must answer it with.
VIOLATIONS: dict[str, tuple[Callable[[ServerConnection], Awaitable[None]], int]] = {
    "1009": (send_oversized_frame, 1009),
    "1009-fragments": (send_oversized_fragments, 1009),
    "1007": (send_invalid_utf8, 1007),
}


class HostileFeed:
    """Sends two numbered frames (``{"seq": n}``, numbering across connections), then a
    protocol violation, on the first connection only or on every one.

    ``served`` holds every server-side connection, so a test reads the close code the client
    answered with.
    """

    def __init__(
        self, violation: Callable[[ServerConnection], Awaitable[None]], *, every: bool
    ) -> None:
        self.violation = violation
        self.every = every
        self.served: list[ServerConnection] = []
        self._server: Server | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"ws://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def __aenter__(self) -> HostileFeed:
        self._server = await serve(self._handle, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _handle(self, ws: ServerConnection) -> None:
        self.served.append(ws)
        first = 2 * len(self.served) - 1
        with contextlib.suppress(ConnectionClosed):
            for seq in (first, first + 1):
                await ws.send(json.dumps({"seq": seq}))
            if self.every or len(self.served) == 1:
                await self.violation(ws)
            await ws.wait_closed()


class FeedThread:
    """A SequenceFeed on loopback, served by an event loop of its own in a thread, so the
    synchronous test can poll kubectl while frames flow."""

    def __init__(self, rate: float | None, pad: int = 0, tls: ssl.SSLContext | None = None) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.feed: SequenceFeed = self._call(SequenceFeed(rate=rate, pad=pad, ssl=tls).start())

    def _call(self, coroutine: Any) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        return future.result(30)

    @property
    def url(self) -> str:
        return self.feed.url

    def hold(self) -> int:
        """Send no frame after the ones sent so far; returns how many that is."""
        done: Future[int] = Future()

        def freeze() -> None:
            self.feed.send_up_to(self.feed.sent)
            done.set_result(self.feed.sent)

        self._loop.call_soon_threadsafe(freeze)
        return done.result(10)

    def close(self) -> None:
        self._call(self.feed.stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

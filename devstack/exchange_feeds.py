"""Local feeds that speak the public market-data protocols of eight exchanges.

Each feed imitates what one exchange documents (each example in ``examples/`` cites its page;
docs/exchanges.md sums up the rules), so the
WebSocketSources in ``examples/`` run against it unchanged but for the URL: it checks the
subscribe message, acknowledges it, or answers a bad one (an unknown instrument) with that
exchange's error and sends no data; it streams numbered data frames interleaved with the
exchange's control frames; it keeps the connection alive the exchange's way and **closes a
connection whose client does not keep its side of it in time** (an unanswered application or
protocol ping, a missing client heartbeat); and it forces a disconnect, the way exchanges
restart or rotate their servers, after ``frames_per_connection`` data frames on each of the
first ``disconnects`` connections.

Times are scaled down (pings every 0.1 s instead of 5-20 s) so that a test takes seconds.
A feed records, per connection, what the client sent, whether it subscribed, how many
keepalive obligations were met (:attr:`ExchangeConnection.keepalives`) and why the feed closed
it, and overall every data frame it sent (decoded, in order), so a test can check that each
one reached Kafka exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

#: A frame as the feed builds it: a JSON document, or a bare text (OKX's ``pong``).
Frame = Any


@dataclass
class ExchangeConnection:
    """What the feed saw of one client connection."""

    messages: list[str] = field(default_factory=list)
    """Every message the client sent, as text."""
    symbols: list[str] = field(default_factory=list)
    """The instruments the client subscribed to (the exchange's spelling)."""
    heartbeats: bool = False
    """The client asked for heartbeats (Coinbase's channel, Deribit's ``set_heartbeat``)."""
    subscribed: asyncio.Event = field(default_factory=asyncio.Event)
    rejected: str | None = None
    """The server's message when it refused the subscription."""
    keepalives: int = 0
    """Keepalive obligations met: server pings answered in time, client heartbeats received
    in time, or (feeds whose heartbeats need no answer) heartbeats sent."""
    answered: int = 0
    """Application pings the client answered in time (HTX, Deribit)."""
    unexpected: list[str] = field(default_factory=list)
    """Client messages the protocol has no place for (answered with the exchange's error)."""
    missed: str | None = None
    """Why the feed closed the connection for a reply or heartbeat that did not come."""
    forced: bool = False
    """The feed closed it on cue (its forced disconnect)."""
    data_sent: int = 0
    """Data frames the feed sent on this connection."""
    last_heard: float = field(default_factory=time.monotonic)
    """When the client last sent a heartbeat (monotonic)."""
    replies: dict[object, asyncio.Event] = field(default_factory=dict)
    """Pending server pings by token; set when the client's reply arrives."""
    close_code: int | None = None
    logins: list[str] = field(default_factory=list)
    """The timestamps (or expiries) of the client's login attempts, in order (private feeds)."""
    authenticated: bool = False
    """The client logged in (private feeds)."""


class ExchangeFeed(ABC):
    """The common machinery; each subclass is one exchange's protocol.

    Args:
        frames_per_connection: data frames on a connection before its forced disconnect.
        disconnects: connections closed on cue; the next one streams its frames, then idles
            (keepalive and heartbeats go on) until the client leaves.
        frame_interval: seconds between two data frames.
        ping_interval: seconds between two server pings or heartbeats.
        deadline: seconds the client has to answer a ping, or between two of its heartbeats,
            before the feed closes the connection.
    """

    #: The WebSocket path of the exchange's public endpoint.
    path: ClassVar[str] = "/ws"
    #: Instruments the exchange knows; a subscription to any other is refused.
    instruments: ClassVar[tuple[str, ...]] = ()
    #: The close code and reason of the forced disconnect.
    disconnect: ClassVar[tuple[int, str]] = (1001, "server restart")

    def __init__(
        self,
        *,
        frames_per_connection: int = 30,
        disconnects: int = 1,
        frame_interval: float = 0.01,
        ping_interval: float = 0.1,
        deadline: float = 1.0,
    ) -> None:
        self.frames_per_connection = frames_per_connection
        self.disconnects = disconnects
        self.frame_interval = frame_interval
        self.ping_interval = ping_interval
        self.deadline = deadline
        self.connections: list[ExchangeConnection] = []
        self.data_frames: list[str] = []
        """Every data frame sent, decoded (before gzip), in the order sent."""
        self.notices: list[str] = []
        """Every greeting and farewell sent (status and info messages), in the order sent."""
        self.number = 0
        """The last number given to a trade or update (numbering runs across connections)."""
        self._server: Server | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"ws://127.0.0.1:{port}{self.path}"

    async def __aenter__(self) -> ExchangeFeed:
        # no keepalive of the library's own: each feed pings as its exchange does
        self._server = await serve(self._handle, "127.0.0.1", 0, ping_interval=None)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    # -- what a subclass says ------------------------------------------------------------

    def greeting(self) -> list[Frame]:
        """Frames sent as soon as a client connects (Kraken's status, Bitfinex's info)."""
        return []

    def farewell(self) -> list[Frame]:
        """Frames sent just before the forced disconnect (OKX's and Bitfinex's notices)."""
        return []

    @abstractmethod
    def answer(self, conn: ExchangeConnection, message: str) -> list[Frame]:
        """The answer to one client message; marks subscriptions and replies."""

    @abstractmethod
    def data(self, conn: ExchangeConnection, symbol: str) -> Frame:
        """The next data frame for ``symbol`` (numbered with :meth:`next_number`)."""

    @abstractmethod
    async def keepalive(self, ws: ServerConnection, conn: ExchangeConnection) -> None:
        """One round of the exchange's keepalive, every ``ping_interval``."""

    def encode(self, frame: Frame) -> str | bytes:
        """A frame on the wire: compact JSON text (HTX overrides it with gzip)."""
        return frame if isinstance(frame, str) else _compact(frame)

    # -- helpers for subclasses ----------------------------------------------------------

    def next_number(self) -> int:
        self.number += 1
        return self.number

    def accept(self, conn: ExchangeConnection, symbols: list[str]) -> None:
        """The subscription is valid: data for ``symbols`` follows its acknowledgement."""
        conn.symbols.extend(symbols)
        conn.subscribed.set()

    def refuse(self, conn: ExchangeConnection, message: str) -> None:
        conn.rejected = message

    def unknown(self, symbols: list[str]) -> list[str]:
        return [symbol for symbol in symbols if symbol not in self.instruments]

    def heard(self, conn: ExchangeConnection) -> None:
        """The client's heartbeat arrived."""
        conn.last_heard = time.monotonic()
        conn.keepalives += 1

    def replied(self, conn: ExchangeConnection, token: object) -> None:
        """The client answered the server ping ``token``."""
        event = conn.replies.get(token)
        if event is not None:
            event.set()

    async def challenge(
        self, ws: ServerConnection, conn: ExchangeConnection, frame: Frame, token: object
    ) -> None:
        """Send an application ping and close the connection unless :meth:`replied` says
        the client answered it within ``deadline`` (HTX, Deribit)."""
        event = conn.replies[token] = asyncio.Event()
        await ws.send(self.encode(frame))
        try:
            await asyncio.wait_for(event.wait(), self.deadline)
        except TimeoutError:
            await self._close_for(ws, conn, f"no answer to ping {token} in {self.deadline} s")
            return
        del conn.replies[token]
        conn.answered += 1
        conn.keepalives += 1

    async def protocol_ping(self, ws: ServerConnection, conn: ExchangeConnection) -> None:
        """A WebSocket ping; no pong within ``deadline`` closes the connection (Binance)."""
        pong = await ws.ping()
        try:
            await asyncio.wait_for(pong, self.deadline)
        except TimeoutError:
            await self._close_for(ws, conn, f"no pong in {self.deadline} s")
            return
        conn.keepalives += 1

    async def expect_heartbeat(self, ws: ServerConnection, conn: ExchangeConnection) -> None:
        """Close the connection if the client's last heartbeat is older than ``deadline``
        (OKX, Bybit)."""
        if time.monotonic() - conn.last_heard > self.deadline:
            await self._close_for(ws, conn, f"no client heartbeat in {self.deadline} s")

    async def beat(self, ws: ServerConnection, conn: ExchangeConnection, frame: Frame) -> None:
        """A heartbeat that needs no answer (Coinbase, Kraken, Bitfinex, Deribit)."""
        await ws.send(self.encode(frame))
        conn.keepalives += 1

    # -- the connection ------------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        conn = ExchangeConnection()
        self.connections.append(conn)
        forced = len(self.connections) <= self.disconnects
        reader = asyncio.create_task(self._read(ws, conn))
        helpers: list[asyncio.Task[Any]] = [reader]
        try:
            await self._notify(ws, self.greeting())
            subscribed = asyncio.create_task(conn.subscribed.wait())
            helpers.append(subscribed)
            await asyncio.wait({subscribed, reader}, return_when=asyncio.FIRST_COMPLETED)
            if conn.subscribed.is_set():
                conn.last_heard = time.monotonic()
                helpers.append(asyncio.create_task(self._keep_alive(ws, conn)))
                await self._stream(ws, conn)
                if forced:
                    await self._notify(ws, self.farewell())
                    conn.forced = True
                    await ws.close(*self.disconnect)
            await ws.wait_closed()
        except ConnectionClosed:
            pass
        finally:
            conn.close_code = ws.close_code
            for helper in helpers:
                helper.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)

    async def _notify(self, ws: ServerConnection, frames: list[Frame]) -> None:
        for frame in frames:
            self.notices.append(frame if isinstance(frame, str) else _compact(frame))
            await ws.send(self.encode(frame))

    async def _read(self, ws: ServerConnection, conn: ExchangeConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for message in ws:
                text = message if isinstance(message, str) else message.decode()
                conn.messages.append(text)
                for frame in self.answer(conn, text):
                    await ws.send(self.encode(frame))

    async def _stream(self, ws: ServerConnection, conn: ExchangeConnection) -> None:
        for index in range(self.frames_per_connection):
            frame = self.data(conn, conn.symbols[index % len(conn.symbols)])
            text = self.encode(frame)
            self.data_frames.append(frame if isinstance(frame, str) else _compact(frame))
            await ws.send(text)
            conn.data_sent += 1
            await asyncio.sleep(self.frame_interval)

    async def _keep_alive(self, ws: ServerConnection, conn: ExchangeConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            while conn.missed is None:
                await asyncio.sleep(self.ping_interval)
                await self.keepalive(ws, conn)

    async def _close_for(self, ws: ServerConnection, conn: ExchangeConnection, why: str) -> None:
        conn.missed = why
        await ws.close(4000, why[:120])


def _compact(document: Any) -> str:
    return json.dumps(document, separators=(",", ":"))


def _parse(message: str) -> Any:
    """A client message as JSON, or None when it is not JSON (OKX's ``ping`` is text)."""
    try:
        return json.loads(message)
    except ValueError:
        return None


def _stamp(number: int) -> int:
    """An epoch-milliseconds time for the ``number``-th event: distinct and increasing."""
    return 1_795_000_000_000 + number


class BinanceFeed(ExchangeFeed):
    """Binance spot market streams (``/ws``): ``SUBSCRIBE`` by stream name answered by
    ``{"result":null,"id":..}``, an error object with code and message otherwise; the server
    sends protocol pings and disconnects a client whose pong does not come; a connection
    lives 24 hours at most."""

    instruments = ("btcusdt", "ethusdt")
    disconnect = (1000, "connection lifetime reached")

    def answer(self, conn: ExchangeConnection, message: str) -> list[Frame]:
        request = _parse(message)
        if not isinstance(request, dict) or request.get("method") != "SUBSCRIBE":
            conn.unexpected.append(message)
            return [{"error": {"code": 2, "msg": "Invalid request: unknown method"}, "id": None}]
        streams = request.get("params") or []
        symbols = [stream.removesuffix("@trade") for stream in streams]
        bad = [s for s, stream in zip(symbols, streams, strict=True) if s == stream]
        bad += self.unknown(symbols)
        if bad:
            text = f"Invalid request: unknown stream {bad[0]}"
            self.refuse(conn, text)
            return [{"error": {"code": 2, "msg": text}, "id": request.get("id")}]
        self.accept(conn, symbols)
        return [{"result": None, "id": request.get("id")}]

    def data(self, conn: ExchangeConnection, symbol: str) -> Frame:
        number = self.next_number()
        return {
            "e": "trade",
            "E": _stamp(number) + 1,
            "s": symbol.upper(),
            "t": number,
            "p": f"97{number % 1000:03d}.10",
            "q": "0.01000000",
            "T": _stamp(number),
            "m": number % 2 == 0,
            "M": True,
        }

    async def keepalive(self, ws: ServerConnection, conn: ExchangeConnection) -> None:
        await self.protocol_ping(ws, conn)


class CoinbaseFeed(ExchangeFeed):
    """Coinbase Exchange (``ws-feed``): a ``subscribe`` naming products and channels, answered
    by a ``subscriptions`` message or an ``error`` with message and reason; the ``heartbeat``
    channel sends a numbered heartbeat per product every second; ``level2_batch`` sends a
    snapshot, then ``l2update`` messages."""

    path = "/"
    instruments = ("BTC-USD", "ETH-USD")
    channels = ("level2_batch", "heartbeat")

    def answer(self, conn: ExchangeConnection, message: str) -> list[Frame]:
        request = _parse(message)
        if not isinstance(request, dict) or request.get("type") != "subscribe":
            conn.unexpected.append(message)
            return [{"type": "error", "message": "Failed to subscribe", "reason": "bad request"}]
        products = list(request.get("product_ids") or [])
        channels = list(request.get("channels") or [])
        bad = self.unknown(products)
        if bad or not products or any(ch not in self.channels for ch in channels):
            reason = f"{bad[0]} is not a valid product" if bad else "unknown channel"
            self.refuse(conn, reason)
            return [{"type": "error", "message": "Failed to subscribe", "reason": reason}]
        self.accept(conn, products)
        conn.heartbeats = "heartbeat" in channels
        return [
            {
                "type": "subscriptions",
                "channels": [{"name": ch, "product_ids": products} for ch in channels],
            }
        ]

    def data(self, conn: ExchangeConnection, symbol: str) -> Frame:
        number = self.next_number()
        price = f"97{number % 1000:03d}.00"
        if conn.data_sent == 0:
            return {
                "type": "snapshot",
                "product_id": symbol,
                "bids": [[price, "0.5"]],
                "asks": [[f"98{number % 1000:03d}.00", "0.4"]],
            }
        return {
            "type": "l2update",
            "product_id": symbol,
            "changes": [["buy" if number % 2 else "sell", price, f"0.{number:06d}"]],
            "time": f"2026-12-02T00:00:00.{number:06d}Z",
        }

    async def keepalive(self, ws: ServerConnection, conn: ExchangeConnection) -> None:
        if not conn.heartbeats:
            return
        for product in conn.symbols:
            await self.beat(
                ws,
                conn,
                {
                    "type": "heartbeat",
                    "sequence": conn.keepalives + 1,
                    "last_trade_id": self.number,
                    "product_id": product,
                    "time": "2026-12-02T00:00:00.000000Z",
                },
            )


def _elements(conn: ExchangeConnection) -> int:
    """How many trades a frame of an array-carrying feed holds: two, then one, alternately,
    so that splitting is tested on both."""
    return 2 if conn.data_sent % 2 == 0 else 1


class OkxFeed(ExchangeFeed):
    """OKX v5 public (``/ws/v5/public``): ``{"op":"subscribe","args":[...]}`` answered with one
    ``{"event":"subscribe","arg":...}`` per argument, or ``{"event":"error",...}``; data
    arrive as ``{"arg":...,"data":[...]}``; the client sends the text ``ping`` when it has
    been quiet (under 30 s) and gets ``pong``; a ``notice`` event announces a disconnect for
    a service upgrade."""

    path = "/ws/v5/public"
    instruments = ("BTC-USDT", "ETH-USDT")
    disconnect = (1001, "service upgrade")

    def answer(self, conn: ExchangeConnection, message: str) -> list[Frame]:
        if message == "ping":
            self.heard(conn)
            return ["pong"]
        request = _parse(message)
        if not isinstance(request, dict) or request.get("op") != "subscribe":
            conn.unexpected.append(message)
            return [{"event": "error", "code": "60012", "msg": "Invalid request", "connId": "1"}]
        args = list(request.get("args") or [])
        symbols = [arg.get("instId") for arg in args if arg.get("channel") == "trades"]
        bad = self.unknown(symbols) if len(symbols) == len(args) else ["channel"]
        if bad:
            text = f"Wrong URL or channel:trades,instId:{bad[0]} doesn't exist."
            self.refuse(conn, text)
            return [{"event": "error", "code": "60018", "msg": text, "connId": "1"}]
        self.accept(conn, symbols)
        return [{"event": "subscribe", "arg": arg, "connId": "1"} for arg in args]

    def data(self, conn: ExchangeConnection, symbol: str) -> Frame:
        trades = []
        for _ in range(_elements(conn)):
            number = self.next_number()
            trades.append(
                {
                    "instId": symbol,
                    "tradeId": str(number),
                    "px": f"97{number % 1000:03d}.1",
                    "sz": "0.01",
                    "side": "buy" if number % 2 else "sell",
                    "ts": str(_stamp(number)),
                    "count": "1",
                }
            )
        return {"arg": {"channel": "trades", "instId": symbol}, "data": trades}

    def farewell(self) -> list[Frame]:
        msg = "The connection will soon be closed for a service upgrade. Please reconnect."
        return [{"event": "notice", "code": "64008", "msg": msg, "connId": "1"}]

    async def keepalive(self, ws: ServerConnection, conn: ExchangeConnection) -> None:
        await self.expect_heartbeat(ws, conn)


class HtxFeed(ExchangeFeed):
    """HTX (Huobi) market data (``/ws``): every server frame is gzip-compressed binary JSON;
    ``{"sub":...,"id":...}`` is answered with ``"status":"ok"`` and ``subbed``, or
    ``"status":"error"`` with ``err-code`` and ``err-msg``; the server sends
    ``{"ping": <ms>}`` every 5 s and closes the connection unless ``{"pong": <same>}`` comes
    back (two missed pings)."""

    instruments = ("btcusdt", "ethusdt")
    disconnect = (1000, "server restart")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._pings = 0

    def encode(self, frame: Frame) -> str | bytes:
        return gzip.compress(_compact(frame).encode())

    def answer(self, conn: ExchangeConnection, message: str) -> list[Frame]:
        request = _parse(message)
        if isinstance(request, dict) and "pong" in request:
            self.replied(conn, request["pong"])
            return []
        if not isinstance(request, dict) or "sub" not in request:
            conn.unexpected.append(message)
            return [{"status": "error", "err-code": "bad-request", "err-msg": "invalid request"}]
        topic = str(request["sub"])
        symbol = topic.removeprefix("market.").removesuffix(".trade.detail")
        if symbol == topic or self.unknown([symbol]):
            text = f"invalid symbol {symbol}"
            self.refuse(conn, text)
            return [
                {
                    "id": request.get("id"),
                    "status": "error",
                    "err-code": "bad-request",
                    "err-msg": text,
                    "ts": _stamp(self.number),
                }
            ]
        self.accept(conn, [symbol])
        return [
            {"id": request.get("id"), "status": "ok", "subbed": topic, "ts": _stamp(self.number)}
        ]

    def data(self, conn: ExchangeConnection, symbol: str) -> Frame:
        number = self.next_number()
        trade = {
            "id": number * 1000,
            "ts": _stamp(number),
            "tradeId": number,
            "amount": 0.01,
            "price": 97000.5,
            "direction": "buy" if number % 2 else "sell",
        }
        return {
            "ch": f"market.{symbol}.trade.detail",
            "ts": _stamp(number) + 2,
            "tick": {"id": number, "ts": _stamp(number), "data": [trade]},
        }

    async def keepalive(self, ws: ServerConnection, conn: ExchangeConnection) -> None:
        self._pings += 1
        token = _stamp(self._pings)
        await self.challenge(ws, conn, {"ping": token}, token)


class BybitFeed(ExchangeFeed):
    """Bybit v5 public spot (``/v5/public/spot``): ``{"op":"subscribe","args":[topics]}``
    answered with ``"success":true`` or ``false`` and ``ret_msg``; data arrive as
    ``{"topic":...,"data":[...]}``; the client sends ``{"op":"ping"}`` (every 20 s is
    advised) and spot answers ``{"op":"ping","ret_msg":"pong",...}``."""

    path = "/v5/public/spot"
    instruments = ("BTCUSDT", "ETHUSDT")

    def answer(self, conn: ExchangeConnection, message: str) -> list[Frame]:
        request = _parse(message)
        op = request.get("op") if isinstance(request, dict) else None
        if op == "ping":
            self.heard(conn)
            req_id = request.get("req_id", "")
            return [
                {"success": True, "ret_msg": "pong", "conn_id": "c1", "req_id": req_id, "op": op}
            ]
        if op != "subscribe":
            conn.unexpected.append(message)
            return [{"success": False, "ret_msg": "unknown op", "conn_id": "c1", "op": op}]
        topics = [str(topic) for topic in request.get("args") or []]
        symbols = [topic.removeprefix("publicTrade.") for topic in topics]
        bad = [t for t, s in zip(topics, symbols, strict=True) if t == s or self.unknown([s])]
        req_id = request.get("req_id", "")
        if bad:
            text = f"Invalid symbol :[{bad[0]}]"
            self.refuse(conn, text)
            return [
                {"success": False, "ret_msg": text, "conn_id": "c1", "req_id": req_id, "op": op}
            ]
        self.accept(conn, symbols)
        return [{"success": True, "ret_msg": "", "conn_id": "c1", "req_id": req_id, "op": op}]

    def data(self, conn: ExchangeConnection, symbol: str) -> Frame:
        trades = []
        for _ in range(_elements(conn)):
            number = self.next_number()
            trades.append(
                {
                    "i": str(number),
                    "T": _stamp(number),
                    "p": f"97{number % 1000:03d}.10",
                    "v": "0.001",
                    "S": "Buy" if number % 2 else "Sell",
                    "s": symbol,
                    "BT": False,
                }
            )
        return {
            "topic": f"publicTrade.{symbol}",
            "ts": trades[-1]["T"],
            "type": "snapshot",
            "data": trades,
        }

    async def keepalive(self, ws: ServerConnection, conn: ExchangeConnection) -> None:
        await self.expect_heartbeat(ws, conn)


class KrakenFeed(ExchangeFeed):
    """Kraken spot v2 (``/v2``): a ``status`` message on connect; ``{"method":"subscribe",
    "params":{"channel":"trade","symbol":[...]}}`` answered per symbol with ``"success":true``
    and the result, or ``"success":false`` and ``error``; data arrive as
    ``{"channel":"trade","data":[...]}``; ``{"channel":"heartbeat"}`` about every second,
    which needs no answer."""

    path = "/v2"
    instruments = ("BTC/USD", "ETH/USD")

    def greeting(self) -> list[Frame]:
        status = {"api_version": "v2", "connection_id": len(self.connections), "system": "online"}
        return [{"channel": "status", "type": "update", "data": [{**status, "version": "2.0.10"}]}]

    def answer(self, conn: ExchangeConnection, message: str) -> list[Frame]:
        request = _parse(message)
        if not isinstance(request, dict) or request.get("method") != "subscribe":
            conn.unexpected.append(message)
            return [{"error": "Unsupported method", "method": "error", "success": False}]
        params = request.get("params") or {}
        symbols = list(params.get("symbol") or [])
        req_id = request.get("req_id")
        times = {"time_in": "2026-12-02T00:00:00.000000Z", "time_out": "2026-12-02T00:00:00.1Z"}
        bad = self.unknown(symbols) if params.get("channel") == "trade" else ["channel"]
        if bad:
            text = f"Currency pair not supported {bad[0]}"
            self.refuse(conn, text)
            return [
                {"error": text, "method": "subscribe", "success": False, "symbol": bad[0]}
                | times
                | {"req_id": req_id}
            ]
        self.accept(conn, symbols)
        return [
            {
                "method": "subscribe",
                "result": {"channel": "trade", "snapshot": True, "symbol": symbol},
                "success": True,
            }
            | times
            | {"req_id": req_id}
            for symbol in symbols
        ]

    def data(self, conn: ExchangeConnection, symbol: str) -> Frame:
        trades = []
        for _ in range(_elements(conn)):
            number = self.next_number()
            trades.append(
                {
                    "symbol": symbol,
                    "side": "buy" if number % 2 else "sell",
                    "price": 97000.1,
                    "qty": 0.01,
                    "ord_type": "market",
                    "trade_id": number,
                    "timestamp": f"2026-12-02T00:00:00.{number:06d}Z",
                }
            )
        return {"channel": "trade", "type": "update", "data": trades}

    async def keepalive(self, ws: ServerConnection, conn: ExchangeConnection) -> None:
        await self.beat(ws, conn, {"channel": "heartbeat"})


class DeribitFeed(ExchangeFeed):
    """Deribit v2 (``/ws/api/v2``, JSON-RPC 2.0): ``public/subscribe`` answered with the
    subscribed channels as ``result``, or an ``error`` object with code and message; after
    ``public/set_heartbeat`` the server sends ``heartbeat`` notifications, some of type
    ``test_request``, which the client must answer with a ``public/test`` call or be
    disconnected; data arrive as ``subscription`` notifications with ``params.data: [...]``."""

    path = "/ws/api/v2"
    instruments = ("BTC-PERPETUAL", "ETH-PERPETUAL")

    def answer(self, conn: ExchangeConnection, message: str) -> list[Frame]:
        request = _parse(message)
        if not isinstance(request, dict) or request.get("jsonrpc") != "2.0":
            conn.unexpected.append(message)
            return [self._error(None, -32600, "Invalid Request")]
        method, rpc_id = request.get("method"), request.get("id")
        params = request.get("params") or {}
        if method == "public/test":
            self.replied(conn, "test_request")
            return [{"jsonrpc": "2.0", "id": rpc_id, "result": {"version": "1.2.26"}}]
        if method == "public/set_heartbeat":
            if not isinstance(params.get("interval"), int) or params["interval"] < 10:
                return [self._error(rpc_id, -32602, "Invalid params")]
            conn.heartbeats = True
            return [{"jsonrpc": "2.0", "id": rpc_id, "result": "ok"}]
        if method != "public/subscribe":
            conn.unexpected.append(message)
            return [self._error(rpc_id, -32601, "Method not found")]
        channels = [str(channel) for channel in params.get("channels") or []]
        symbols = [channel.split(".")[1] if channel.count(".") == 2 else "" for channel in channels]
        bad = [c for c, s in zip(channels, symbols, strict=True) if not c.startswith("trades.")]
        if bad or self.unknown(symbols):
            self.refuse(conn, "Invalid params")
            return [self._error(rpc_id, -32602, "Invalid params")]
        self.accept(conn, symbols)
        return [{"jsonrpc": "2.0", "id": rpc_id, "result": channels}]

    @staticmethod
    def _error(rpc_id: object, code: int, message: str) -> Frame:
        return {"jsonrpc": "2.0", "id": rpc_id, "error": {"code": code, "message": message}}

    def data(self, conn: ExchangeConnection, symbol: str) -> Frame:
        trades = []
        for _ in range(_elements(conn)):
            number = self.next_number()
            trades.append(
                {
                    "trade_seq": number,
                    "trade_id": str(number),
                    "timestamp": _stamp(number),
                    "price": 97000.5,
                    "instrument_name": symbol,
                    "direction": "buy" if number % 2 else "sell",
                    "amount": 10.0,
                }
            )
        channel = f"trades.{symbol}.100ms"
        return {
            "jsonrpc": "2.0",
            "method": "subscription",
            "params": {"channel": channel, "data": trades},
        }

    async def keepalive(self, ws: ServerConnection, conn: ExchangeConnection) -> None:
        if not conn.heartbeats:
            return
        if conn.keepalives % 2:
            await self.beat(ws, conn, self._heartbeat("heartbeat"))
        else:
            await self.challenge(ws, conn, self._heartbeat("test_request"), "test_request")

    @staticmethod
    def _heartbeat(kind: str) -> Frame:
        return {"jsonrpc": "2.0", "method": "heartbeat", "params": {"type": kind}}


class BitfinexFeed(ExchangeFeed):
    """Bitfinex v2 public (``/ws/2``): an ``info`` event on connect; ``{"event":"subscribe",
    "channel":"trades","symbol":...}`` answered with ``subscribed`` and a ``chanId``, or an
    ``error`` event with ``msg`` and ``code``; data arrive as arrays headed by the chanId (a
    snapshot ``[id, [[...], ...]]``, then ``[id, "te", [...]]``); ``[id, "hb"]`` every 15 s,
    which needs no answer; info code 20051 asks clients to reconnect before a restart."""

    path = "/ws/2"
    instruments = ("tBTCUSD", "tETHUSD")
    channel_ids: ClassVar[dict[str, int]] = {"tBTCUSD": 17470, "tETHUSD": 17471}

    def greeting(self) -> list[Frame]:
        return [{"event": "info", "version": 2, "serverId": "local", "platform": {"status": 1}}]

    def farewell(self) -> list[Frame]:
        return [{"event": "info", "code": 20051, "msg": "Stop/Restart Websocket Server"}]

    def answer(self, conn: ExchangeConnection, message: str) -> list[Frame]:
        request = _parse(message)
        event = request.get("event") if isinstance(request, dict) else None
        if event == "ping":
            return [{"event": "pong", "ts": _stamp(self.number), "cid": request.get("cid")}]
        if event != "subscribe":
            conn.unexpected.append(message)
            return [{"event": "error", "msg": "unknown event", "code": 10000}]
        symbol = str(request.get("symbol"))
        if request.get("channel") != "trades" or self.unknown([symbol]):
            self.refuse(conn, "symbol: invalid")
            return [{"event": "error", "msg": "symbol: invalid", "code": 10300}]
        self.accept(conn, [symbol])
        return [
            {
                "event": "subscribed",
                "channel": "trades",
                "chanId": self.channel_ids[symbol],
                "symbol": symbol,
                "pair": symbol[1:],
            }
        ]

    def data(self, conn: ExchangeConnection, symbol: str) -> Frame:
        chan_id = self.channel_ids[symbol]
        if conn.data_sent == 0:
            return [chan_id, [self._trade(), self._trade()]]
        return [chan_id, "te", self._trade()]

    def _trade(self) -> list[Any]:
        number = self.next_number()
        return [number, _stamp(number), 0.01 if number % 2 else -0.01, 97000.5]

    async def keepalive(self, ws: ServerConnection, conn: ExchangeConnection) -> None:
        for symbol in conn.symbols:
            await self.beat(ws, conn, [self.channel_ids[symbol], "hb"])

"""Local feeds that speak the private-stream logins of OKX, Bybit and Deribit, and the token
flows of Binance (listenKey), KuCoin (bullet) and Kraken (GetWebSocketsToken).

Like the public feeds of :mod:`.exchange_feeds` (whose machinery they share: keepalive,
forced disconnects, the record of every data frame), but a client must log in before it may
subscribe, exactly as the exchange documents it: the feed recomputes the signature from the
account's secret and refuses a wrong one, a wrong key or passphrase, and a timestamp (or
expiry) outside its window (30 s by default, as OKX's), with the exchange's own error. Every
login's timestamp is kept (:attr:`ExchangeConnection.logins`), so a test can check that a
reconnect logged in anew.

The token feeds (:class:`TokenFeed`) serve a REST API and the WebSocket that takes its tokens
on one port: Binance's listenKey (created, kept alive, expiring after a short ``lifetime``
with the ``listenKeyExpired`` event), KuCoin's bullet (a token that also names the
endpoint and the ping interval, refused once older than its ``lifetime``; the private one
signed, its timestamp checked), and Kraken's GetWebSocketsToken (signed with an ever larger
nonce, its token used in the subscribe message).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Self

from aiohttp import WSMsgType, web

from .exchange_feeds import (
    BybitFeed,
    DeribitFeed,
    ExchangeConnection,
    Frame,
    OkxFeed,
    _parse,
    _stamp,
)


@dataclass(frozen=True)
class Account:
    """The credentials the feed accepts."""

    api_key: str
    secret: str
    passphrase: str = ""


def _hmac(secret: str, payload: str) -> bytes:
    return hmac.new(secret.encode(), payload.encode(), hashlib.sha256).digest()


def _number(value: object) -> float | None:
    try:
        return float(str(value))
    except ValueError:
        return None


class LoginChecks:
    """What a private feed checks a login against: the account, and how far from the
    server's clock a login's timestamp (or expiry) may be, in seconds."""

    def __init__(self, account: Account, *, window: float = 30.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.account = account
        self.window = window


class OkxPrivateFeed(LoginChecks, OkxFeed):
    """OKX v5 private (``/ws/v5/private``): ``{"op":"login","args":[{apiKey, passphrase,
    timestamp, sign}]}`` with sign = Base64(HMAC-SHA256(timestamp + "GET" +
    "/users/self/verify", secret)) and the timestamp in seconds, answered with
    ``{"event":"login","code":"0"}`` or ``{"event":"error","code":"60009","msg":"Login
    failed."}`` (``60006`` for an expired timestamp); the ``orders`` channel only after it."""

    path = "/ws/v5/private"

    def answer(self, conn: ExchangeConnection, message: str) -> list[Frame]:
        request = _parse(message)
        if isinstance(request, dict) and request.get("op") == "login":
            return [self._login(conn, request)]
        if message != "ping" and not conn.authenticated:
            conn.unexpected.append(message)
            return [self._error("60011", "Please log in")]
        if isinstance(request, dict) and request.get("op") == "subscribe":
            args = list(request.get("args") or [])
            if args != [{"channel": "orders", "instType": "SPOT"}]:
                self.refuse(conn, "Wrong URL or channel")
                return [self._error("60018", "Wrong URL or channel")]
            self.accept(conn, ["SPOT"])
            return [{"event": "subscribe", "arg": args[0], "connId": "1"}]
        return super().answer(conn, message)

    def _login(self, conn: ExchangeConnection, request: dict[str, Any]) -> Frame:
        arg = (request.get("args") or [{}])[0]
        stamp = str(arg.get("timestamp"))
        conn.logins.append(stamp)
        moment = _number(stamp)
        if moment is None or abs(time.time() - moment) > self.window:
            return self._error("60006", "Timestamp request expired")
        account = self.account
        sign = base64.b64encode(_hmac(account.secret, f"{stamp}GET/users/self/verify")).decode()
        given = (arg.get("apiKey"), arg.get("passphrase"), arg.get("sign"))
        if given != (account.api_key, account.passphrase, sign):
            return self._error("60009", "Login failed.")
        conn.authenticated = True
        return {"event": "login", "code": "0", "msg": "", "connId": "1"}

    @staticmethod
    def _error(code: str, message: str) -> Frame:
        return {"event": "error", "code": code, "msg": message, "connId": "1"}

    def data(self, conn: ExchangeConnection, symbol: str) -> Frame:
        number = self.next_number()
        order = {
            "instType": symbol,
            "instId": "BTC-USDT",
            "ordId": str(number),
            "px": f"97{number % 1000:03d}.1",
            "sz": "0.01",
            "side": "buy" if number % 2 else "sell",
            "state": "filled",
            "uTime": str(_stamp(number)),
        }
        return {"arg": {"channel": "orders", "instType": symbol, "uid": "77"}, "data": [order]}


class BybitPrivateFeed(LoginChecks, BybitFeed):
    """Bybit v5 private (``/v5/private``): ``{"op":"auth","args":[apiKey, expires,
    signature]}`` with signature = hex(HMAC-SHA256("GET/realtime" + expires, secret)) and
    expires in epoch milliseconds (in the future, at most ``window`` ahead), answered with
    ``{"success":true,"op":"auth"}`` or ``"success":false`` and ``ret_msg``; the ``order``
    topic only after it."""

    path = "/v5/private"

    def answer(self, conn: ExchangeConnection, message: str) -> list[Frame]:
        request = _parse(message)
        op = request.get("op") if isinstance(request, dict) else None
        if op == "auth":
            assert isinstance(request, dict)
            return [self._auth(conn, list(request.get("args") or []))]
        if op != "ping" and not conn.authenticated:
            conn.unexpected.append(message)
            return [self._answer(False, "Request not authorized", op)]
        if op == "subscribe":
            assert isinstance(request, dict)
            if request.get("args") != ["order"]:
                self.refuse(conn, "Invalid topic")
                return [self._answer(False, "Invalid topic", op)]
            self.accept(conn, ["order"])
            return [self._answer(True, "", op)]
        return super().answer(conn, message)

    def _auth(self, conn: ExchangeConnection, args: list[Any]) -> Frame:
        api_key, expires, signature = [*args, None, None, None][:3]
        conn.logins.append(str(expires))
        moment, now = _number(expires), time.time() * 1000
        if moment is None or moment <= now:
            return self._answer(False, "error:expires is expired", "auth")
        if moment > now + self.window * 1000:
            return self._answer(False, "error:expires is too far ahead", "auth")
        if api_key != self.account.api_key:
            return self._answer(False, "API key is invalid.", "auth")
        if signature != _hmac(self.account.secret, f"GET/realtime{expires}").hex():
            return self._answer(False, "error sign!", "auth")
        conn.authenticated = True
        return self._answer(True, "", "auth")

    @staticmethod
    def _answer(success: bool, message: str, op: object) -> Frame:
        return {"success": success, "ret_msg": message, "op": op, "conn_id": "c1"}

    def data(self, conn: ExchangeConnection, symbol: str) -> Frame:
        number = self.next_number()
        order = {
            "category": "spot",
            "symbol": "BTCUSDT",
            "orderId": str(number),
            "side": "Buy" if number % 2 else "Sell",
            "orderStatus": "Filled",
            "price": f"97{number % 1000:03d}.10",
            "qty": "0.01",
            "updatedTime": str(_stamp(number)),
        }
        return {
            "id": f"{number}-order",
            "topic": symbol,
            "creationTime": _stamp(number),
            "data": [order],
        }


class DeribitPrivateFeed(LoginChecks, DeribitFeed):
    """Deribit v2 private: ``public/auth`` with ``grant_type: client_signature``, its
    ``client_id``, ``timestamp`` (epoch ms, within ``window`` of the server's clock), ``nonce``,
    ``data`` and ``signature`` = hex(HMAC-SHA256(timestamp + "\\n" + nonce + "\\n" + data,
    client secret)), answered with an ``access_token`` or an ``error`` (``invalid_credentials``;
    ``invalid_timestamp`` for a stale one); ``private/subscribe`` to ``user.trades.*`` only
    after it, the account's trades as ``subscription`` notifications."""

    def answer(self, conn: ExchangeConnection, message: str) -> list[Frame]:
        request = _parse(message)
        method = request.get("method") if isinstance(request, dict) else None
        if method == "public/auth":
            assert isinstance(request, dict)
            return [self._auth(conn, request.get("id"), request.get("params") or {})]
        if method == "private/subscribe":
            assert isinstance(request, dict)
            return [self._subscribe(conn, request.get("id"), request.get("params") or {})]
        return super().answer(conn, message)

    def _auth(self, conn: ExchangeConnection, rpc_id: object, params: dict[str, Any]) -> Frame:
        stamp, nonce = str(params.get("timestamp")), str(params.get("nonce", ""))
        conn.logins.append(stamp)
        moment = _number(stamp)
        if moment is None or abs(time.time() * 1000 - moment) > self.window * 1000:
            return self._error(rpc_id, 13004, "invalid_timestamp")
        payload = f"{stamp}\n{nonce}\n{params.get('data', '')}"
        signature = _hmac(self.account.secret, payload).hex()
        given = (params.get("grant_type"), params.get("client_id"), params.get("signature"))
        if given != ("client_signature", self.account.api_key, signature):
            return self._error(rpc_id, 13004, "invalid_credentials")
        conn.authenticated = True
        token = {"access_token": secrets.token_urlsafe(16), "expires_in": 900, "scope": "trade"}
        return {"jsonrpc": "2.0", "id": rpc_id, "result": {**token, "token_type": "bearer"}}

    def _subscribe(self, conn: ExchangeConnection, rpc_id: object, params: dict[str, Any]) -> Frame:
        if not conn.authenticated:
            conn.unexpected.append("private/subscribe before public/auth")
            return self._error(rpc_id, 13009, "unauthorized")
        channels = [str(channel) for channel in params.get("channels") or []]
        parts = [channel.split(".") for channel in channels]
        symbols = [part[2] for part in parts if len(part) == 4 and part[:2] == ["user", "trades"]]
        if len(symbols) != len(channels) or self.unknown(symbols):
            self.refuse(conn, "Invalid params")
            return self._error(rpc_id, -32602, "Invalid params")
        self.accept(conn, symbols)
        return {"jsonrpc": "2.0", "id": rpc_id, "result": channels}

    def data(self, conn: ExchangeConnection, symbol: str) -> Frame:
        frame = super().data(conn, symbol)
        frame["params"]["channel"] = f"user.trades.{symbol}.raw"
        return frame


@dataclass
class TokenConnection:
    """What a token feed saw of one WebSocket connection."""

    token: str
    """The token it connected with."""
    messages: list[str] = field(default_factory=list)
    """Every message the client sent, as text."""
    data_sent: int = 0
    expired_sent: bool = False
    """The feed told the client its token expired (Binance's ``listenKeyExpired``)."""
    missed: str | None = None
    """Why the feed closed the connection for a ping that did not come."""


class TokenFeed:
    """A REST API that hands out tokens and the WebSocket that takes them, on one local port
    (aiohttp), the way an exchange documents them; the subclasses are the exchanges.

    Every data frame sent is kept (:attr:`data_frames`, in order), so a test can check that
    each reached Kafka; every token handed out too (:attr:`tokens`), so a test can check that
    none shows anywhere. The first ``failing_fetches`` token requests fail with 503.
    """

    def __init__(self, *, frames: int, frame_interval: float = 0.05) -> None:
        self.frames = frames
        """Data frames to send in all, over every connection; then the feed idles."""
        self.frame_interval = frame_interval
        self.data_frames: list[str] = []
        self.tokens: list[str] = []
        """Every token handed out, in order."""
        self.fetches = 0
        """Token requests answered (successful or not)."""
        self.connections: list[TokenConnection] = []
        self.refused_handshakes = 0
        self.failing_fetches = 0
        self._runner: web.AppRunner | None = None
        self._port = 0

    @property
    def base(self) -> str:
        """``http://127.0.0.1:port``: the REST API."""
        return f"http://127.0.0.1:{self._port}"

    @property
    def ws_base(self) -> str:
        return f"ws://127.0.0.1:{self._port}"

    def routes(self) -> list[web.RouteDef]:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        app = web.Application()
        app.add_routes(self.routes())
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self._port = int(self._runner.addresses[0][1])
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    def new_token(self, prefix: str) -> str:
        token = f"{prefix}{secrets.token_urlsafe(24)}"
        self.tokens.append(token)
        return token

    def failing(self) -> web.Response | None:
        """The answer of a token endpoint told to fail (503), counted down."""
        if self.failing_fetches <= 0:
            return None
        self.failing_fetches -= 1
        return web.json_response({"code": -1001, "msg": "Internal error"}, status=503)

    async def send_data(
        self,
        ws: web.WebSocketResponse,
        conn: TokenConnection,
        data: Callable[[int], Frame],
        *,
        frames_per_connection: int,
        disconnects: int,
    ) -> None:
        """Data frames (``data(number)``) until every one was sent; each of the first
        ``disconnects`` connections is closed after ``frames_per_connection``, as an exchange
        restarts its servers."""
        forced = len(self.connections) <= disconnects
        while not forced or conn.data_sent < frames_per_connection:
            await asyncio.sleep(self.frame_interval)
            text = self.next_frame(data(len(self.data_frames) + 1))
            if text is not None:
                await ws.send_str(text)
                conn.data_sent += 1
        await ws.close(code=1001, message=b"server restart")

    def next_frame(self, frame: Frame) -> str | None:
        """The text of the next data frame, or None when every frame was sent."""
        if len(self.data_frames) >= self.frames:
            return None
        text = json.dumps(frame, separators=(",", ":"))
        self.data_frames.append(text)
        return text


class BinanceUserDataFeed(TokenFeed):
    """Binance's user data stream: ``POST /api/v3/userDataStream`` with ``X-MBX-APIKEY``
    creates a listenKey (``{"listenKey": ...}``; an active one is handed out again),
    ``PUT`` with ``?listenKey=`` keeps it alive for another ``lifetime`` seconds, an unknown
    or expired one is ``-1125 This listenKey does not exist.``; ``/ws/<listenKey>`` streams
    ``executionReport`` events, and when the key expires sends ``listenKeyExpired`` and
    nothing more on that connection (a connect with an expired key is refused, 400)."""

    def __init__(self, api_key: str, *, lifetime: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.api_key = api_key
        self.lifetime = lifetime
        self.keep_alives = 0
        """Keep-alives accepted."""
        self.expired_keep_alives = 0
        self._expiry: dict[str, float] = {}

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/api/v3/userDataStream", self._create),
            web.put("/api/v3/userDataStream", self._keep_alive),
            web.get("/ws/{key}", self._stream),
        ]

    def _active(self, key: str) -> bool:
        return time.monotonic() < self._expiry.get(key, 0.0)

    def _refused(self, request: web.Request) -> web.Response | None:
        if request.headers.get("X-MBX-APIKEY") != self.api_key:
            body = {"code": -2015, "msg": "Invalid API-key, IP, or permissions for action."}
            return web.json_response(body, status=401)
        return self.failing()

    async def _create(self, request: web.Request) -> web.Response:
        self.fetches += 1
        refused = self._refused(request)
        if refused is not None:
            return refused
        active = [key for key in self._expiry if self._active(key)]
        key = active[0] if active else self.new_token("lk")
        self._expiry[key] = time.monotonic() + self.lifetime
        return web.json_response({"listenKey": key})

    async def _keep_alive(self, request: web.Request) -> web.Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        key = request.query.get("listenKey", "")
        if not self._active(key):
            self.expired_keep_alives += 1
            body = {"code": -1125, "msg": "This listenKey does not exist."}
            return web.json_response(body, status=400)
        self.keep_alives += 1
        self._expiry[key] = time.monotonic() + self.lifetime
        return web.json_response({})

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        key = request.match_info["key"]
        if not self._active(key):
            self.refused_handshakes += 1
            return web.json_response({"code": -1125, "msg": "Invalid listenKey"}, status=400)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        conn = TokenConnection(key)
        self.connections.append(conn)
        sender = asyncio.create_task(self._send(ws, conn))
        try:
            async for message in ws:
                if message.type is WSMsgType.TEXT:
                    conn.messages.append(message.data)
        finally:
            sender.cancel()
        return ws

    async def _send(self, ws: web.WebSocketResponse, conn: TokenConnection) -> None:
        while True:
            await asyncio.sleep(self.frame_interval)
            if not self._active(conn.token):
                event = {"e": "listenKeyExpired", "E": int(time.time() * 1000)}
                await ws.send_str(json.dumps({**event, "listenKey": conn.token}))
                conn.expired_sent = True
                return
            number = len(self.data_frames) + 1
            text = self.next_frame(
                {
                    "e": "executionReport",
                    # the event time is now: the example takes it as the record's timestamp,
                    # and the broker's retention deletes records stamped a week ago
                    "E": int(time.time() * 1000),
                    "s": "BTCUSDT",
                    "i": number,
                    "S": "BUY" if number % 2 else "SELL",
                    "X": "FILLED",
                    "p": f"97{number % 1000:03d}.10",
                    "q": "0.01000000",
                }
            )
            if text is not None:
                await ws.send_str(text)
                conn.data_sent += 1


class KucoinBulletFeed(TokenFeed):
    """KuCoin's bullet: ``POST /api/v1/bullet-public`` answers ``{"code":"200000","data":
    {"token", "instanceServers":[{"endpoint", "pingInterval", "pingTimeout", ...}]}}``; the
    endpoint takes ``?token=...&connectId=...`` (a token older than ``lifetime`` is refused,
    401), greets with ``welcome``, acknowledges a ``subscribe`` with ``ack``, answers
    ``ping`` with ``pong`` and closes a connection whose client sent no ping within
    ``pingInterval + pingTimeout``; it closes each of the first ``disconnects`` connections
    after ``frames_per_connection`` data frames, as KuCoin restarts its servers."""

    bullet_path = "/api/v1/bullet-public"
    topic = "/market/match:BTC-USDT"

    def __init__(
        self,
        *,
        lifetime: float,
        ping_interval_ms: int,
        ping_timeout_ms: int,
        frames_per_connection: int,
        disconnects: int,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.lifetime = lifetime
        self.ping_interval_ms = ping_interval_ms
        self.ping_timeout_ms = ping_timeout_ms
        self.frames_per_connection = frames_per_connection
        self.disconnects = disconnects
        self._issued: dict[str, float] = {}

    def routes(self) -> list[web.RouteDef]:
        return [web.post(self.bullet_path, self._bullet), web.get("/endpoint", self._stream)]

    def refused(self, request: web.Request) -> web.Response | None:
        """The answer to a bullet request the feed refuses (none: the public one is open)."""
        return None

    async def _bullet(self, request: web.Request) -> web.Response:
        self.fetches += 1
        refused = self.refused(request) or self.failing()
        if refused is not None:
            return refused
        token = self.new_token("bt")
        self._issued[token] = time.monotonic()
        server = {
            "endpoint": f"{self.ws_base}/endpoint",
            "encrypt": False,
            "protocol": "websocket",
            "pingInterval": self.ping_interval_ms,
            "pingTimeout": self.ping_timeout_ms,
        }
        return web.json_response(
            {"code": "200000", "data": {"token": token, "instanceServers": [server]}}
        )

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        token = request.query.get("token", "")
        issued = self._issued.get(token)
        if issued is None or time.monotonic() - issued > self.lifetime:
            self.refused_handshakes += 1
            return web.json_response({"code": "401", "msg": "token is invalid"}, status=401)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        conn = TokenConnection(token)
        self.connections.append(conn)
        connect_id = request.query.get("connectId", "")
        await ws.send_str(json.dumps({"id": connect_id, "type": "welcome"}))
        subscribed = asyncio.Event()
        pinged = asyncio.Event()
        tasks = [
            asyncio.create_task(self._send(ws, conn, subscribed)),
            asyncio.create_task(self._watch_pings(ws, conn, pinged)),
        ]
        try:
            async for message in ws:
                if message.type is not WSMsgType.TEXT:
                    continue
                conn.messages.append(message.data)
                request_ = _parse(message.data)
                kind = request_.get("type") if isinstance(request_, dict) else None
                if kind == "ping":
                    pinged.set()
                    await ws.send_str(json.dumps({"id": request_["id"], "type": "pong"}))
                elif kind == "subscribe" and request_.get("topic") == self.topic:
                    await ws.send_str(json.dumps({"id": request_["id"], "type": "ack"}))
                    subscribed.set()
                else:
                    error = {"id": "", "type": "error", "code": 404, "data": "topic is invalid"}
                    await ws.send_str(json.dumps(error))
        finally:
            for task in tasks:
                task.cancel()
        return ws

    async def _send(
        self, ws: web.WebSocketResponse, conn: TokenConnection, subscribed: asyncio.Event
    ) -> None:
        await subscribed.wait()
        await self.send_data(
            ws,
            conn,
            self.data,
            frames_per_connection=self.frames_per_connection,
            disconnects=self.disconnects,
        )

    async def _watch_pings(
        self, ws: web.WebSocketResponse, conn: TokenConnection, pinged: asyncio.Event
    ) -> None:
        deadline = (self.ping_interval_ms + self.ping_timeout_ms) / 1000
        while True:
            try:
                await asyncio.wait_for(pinged.wait(), deadline)
            except TimeoutError:
                conn.missed = f"no ping within {deadline:g} s"
                await ws.close(code=4000, message=b"ping timeout")
                return
            pinged.clear()

    def data(self, number: int) -> Frame:
        trade = {
            "sequence": str(number),
            "symbol": "BTC-USDT",
            "side": "buy" if number % 2 else "sell",
            "price": f"97{number % 1000:03d}.1",
            "size": "0.01",
            "tradeId": str(number),
            "time": str(_stamp(number) * 1_000_000),
        }
        return {"type": "message", "topic": self.topic, "subject": "trade.l3match", "data": trade}


class KucoinPrivateBulletFeed(KucoinBulletFeed):
    """KuCoin's private bullet: ``POST /api/v1/bullet-private`` signed as KuCoin documents
    for API keys of version 2: ``KC-API-KEY``, ``KC-API-TIMESTAMP`` (epoch ms, within
    ``window`` seconds of the server's clock), ``KC-API-SIGN`` = Base64(HMAC-SHA256(timestamp
    + "POST" + path + body, secret)), ``KC-API-PASSPHRASE`` = Base64(HMAC-SHA256(passphrase,
    secret)) and ``KC-API-KEY-VERSION: 2``; a refusal is HTTP 401 with KuCoin's code and
    words. The stream is the account's order changes (``/spotMarket/tradeOrders``)."""

    bullet_path = "/api/v1/bullet-private"
    topic = "/spotMarket/tradeOrders"

    def __init__(self, account: Account, *, window: float = 5.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.account = account
        self.window = window
        self.timestamps: list[str] = []
        """The ``KC-API-TIMESTAMP`` of every bullet request, in order."""

    def refused(self, request: web.Request) -> web.Response | None:
        headers, account = request.headers, self.account
        stamp = headers.get("KC-API-TIMESTAMP", "")
        self.timestamps.append(stamp)
        moment = _number(stamp)
        sign = base64.b64encode(_hmac(account.secret, f"{stamp}POST{self.bullet_path}")).decode()
        passphrase = base64.b64encode(_hmac(account.secret, account.passphrase)).decode()
        if headers.get("KC-API-KEY") != account.api_key:
            return self._refusal("400003", "KC-API-KEY not exists")
        if moment is None or abs(time.time() * 1000 - moment) > self.window * 1000:
            return self._refusal(
                "400002",
                "KC-API-TIMESTAMP Invalid -- Time differs from server time by more than 5 seconds",
            )
        if headers.get("KC-API-SIGN") != sign or headers.get("KC-API-KEY-VERSION") != "2":
            return self._refusal("400005", "Invalid KC-API-SIGN")
        if headers.get("KC-API-PASSPHRASE") != passphrase:
            return self._refusal("400004", "Invalid KC-API-PASSPHRASE")
        return None

    @staticmethod
    def _refusal(code: str, message: str) -> web.Response:
        return web.json_response({"code": code, "msg": message}, status=401)

    def data(self, number: int) -> Frame:
        order = {
            "symbol": "BTC-USDT",
            "orderType": "limit",
            "side": "buy" if number % 2 else "sell",
            "orderId": f"ord{number}",
            "type": "filled",
            "price": f"97{number % 1000:03d}.1",
            "size": "0.01",
            "ts": _stamp(number) * 1_000_000,
        }
        return {
            "type": "message",
            "topic": self.topic,
            "subject": "orderChange",
            "channelType": "private",
            "data": order,
        }


class KrakenTokenFeed(TokenFeed):
    """Kraken's authenticated WebSocket v2: ``POST /0/private/GetWebSocketsToken`` with
    ``API-Key`` and ``API-Sign`` = Base64(HMAC-SHA512(path + SHA-256(nonce + body),
    Base64-decoded secret)) and the body ``nonce=...`` (an integer larger than every nonce
    before it) answers ``{"error":[],"result":{"token","expires"}}``, a refusal HTTP 200 with
    ``{"error":["EAPI:Invalid key"]}`` (``Invalid signature``, ``Invalid nonce``).

    ``/v2`` greets with a status message; ``subscribe`` to ``executions`` with a token issued
    less than ``lifetime`` ago (Kraken: 15 minutes) is acknowledged, one older is refused
    with ``EAPI:Invalid token``; the account's executions follow, and each of the first
    ``disconnects`` connections is closed after ``frames_per_connection`` of them. The answer
    tells the client ``expires`` seconds (less than ``lifetime``, to leave it a margin)."""

    path = "/0/private/GetWebSocketsToken"

    def __init__(
        self,
        account: Account,
        *,
        lifetime: float,
        expires: float,
        frames_per_connection: int,
        disconnects: int,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.account = account
        self.lifetime = lifetime
        self.expires = expires
        self.frames_per_connection = frames_per_connection
        self.disconnects = disconnects
        self.nonces: list[int] = []
        """Every accepted nonce, in order."""
        self.refused_subscriptions = 0
        self._issued: dict[str, float] = {}

    def routes(self) -> list[web.RouteDef]:
        return [web.post(self.path, self._token), web.get("/v2", self._stream)]

    async def _token(self, request: web.Request) -> web.Response:
        self.fetches += 1
        body = await request.read()
        form = dict(pair.split("=", 1) for pair in body.decode().split("&") if "=" in pair)
        nonce = form.get("nonce", "")
        secret = base64.b64decode(self.account.secret)
        digest = hashlib.sha256((nonce + body.decode()).encode()).digest()
        mac = hmac.new(secret, self.path.encode() + digest, hashlib.sha512).digest()
        error = None
        if request.headers.get("API-Key") != self.account.api_key:
            error = "EAPI:Invalid key"
        elif request.headers.get("API-Sign") != base64.b64encode(mac).decode():
            error = "EAPI:Invalid signature"
        elif not nonce.isdigit() or (self.nonces and int(nonce) <= self.nonces[-1]):
            error = "EAPI:Invalid nonce"
        if error is not None:
            return web.json_response({"error": [error]})
        self.nonces.append(int(nonce))
        failing = self.failing()
        if failing is not None:
            return failing
        token = self.new_token("kt")
        self._issued[token] = time.monotonic()
        return web.json_response({"error": [], "result": {"token": token, "expires": self.expires}})

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        status = {"api_version": "v2", "connection_id": 1, "system": "online", "version": "2.0.9"}
        await ws.send_str(json.dumps({"channel": "status", "type": "update", "data": [status]}))
        sender: asyncio.Task[None] | None = None
        conn: TokenConnection | None = None
        try:
            async for message in ws:
                if message.type is not WSMsgType.TEXT:
                    continue
                request_ = _parse(message.data)
                params = request_.get("params", {}) if isinstance(request_, dict) else {}
                token = str(params.get("token", ""))
                if conn is None:
                    conn = TokenConnection(token)
                    self.connections.append(conn)
                conn.messages.append(message.data)
                answer = {"method": "subscribe", "req_id": request_.get("req_id")}
                issued = self._issued.get(token)
                if params.get("channel") != "executions" or sender is not None:
                    answer.update(success=False, error="EGeneral:Invalid arguments")
                elif issued is None or time.monotonic() - issued > self.lifetime:
                    self.refused_subscriptions += 1
                    answer.update(success=False, error="EAPI:Invalid token")
                else:
                    answer.update(success=True, result={"channel": "executions"})
                    sender = asyncio.create_task(
                        self.send_data(
                            ws,
                            conn,
                            self.data,
                            frames_per_connection=self.frames_per_connection,
                            disconnects=self.disconnects,
                        )
                    )
                await ws.send_str(json.dumps(answer))
        finally:
            if sender is not None:
                sender.cancel()
        return ws

    def data(self, number: int) -> Frame:
        execution = {
            "order_id": f"O{number:06d}",
            "exec_id": f"E{number:06d}",
            "exec_type": "trade",
            "symbol": "BTC/USD",
            "side": "buy" if number % 2 else "sell",
            "last_qty": 0.01,
            "last_price": 97000 + number % 1000,
            "timestamp": f"2026-12-02T00:00:{number % 60:02d}.000000Z",
        }
        return {"channel": "executions", "type": "update", "data": [execution], "sequence": number}

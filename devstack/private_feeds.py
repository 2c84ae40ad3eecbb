"""Local feeds that speak the private-stream logins of OKX and Bybit.

Like the public feeds of :mod:`.exchange_feeds` (whose machinery they share: keepalive,
forced disconnects, the record of every data frame), but a client must log in before it may
subscribe, exactly as the exchange documents it: the feed recomputes the signature from the
account's secret and refuses a wrong one, a wrong key or passphrase, and a timestamp (or
expiry) outside its window (30 s by default, as OKX's), with the exchange's own error. Every
login's timestamp is kept (:attr:`ExchangeConnection.logins`), so a test can check that a
reconnect logged in anew.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass
from typing import Any

from .exchange_feeds import BybitFeed, ExchangeConnection, Frame, OkxFeed, _parse, _stamp


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


class OkxPrivateFeed(OkxFeed):
    """OKX v5 private (``/ws/v5/private``): ``{"op":"login","args":[{apiKey, passphrase,
    timestamp, sign}]}`` with sign = Base64(HMAC-SHA256(timestamp + "GET" +
    "/users/self/verify", secret)) and the timestamp in seconds, answered with
    ``{"event":"login","code":"0"}`` or ``{"event":"error","code":"60009","msg":"Login
    failed."}`` (``60006`` for an expired timestamp); the ``orders`` channel only after it."""

    path = "/ws/v5/private"

    def __init__(self, account: Account, *, window: float = 30.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.account = account
        self.window = window

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


class BybitPrivateFeed(BybitFeed):
    """Bybit v5 private (``/v5/private``): ``{"op":"auth","args":[apiKey, expires,
    signature]}`` with signature = hex(HMAC-SHA256("GET/realtime" + expires, secret)) and
    expires in epoch milliseconds (in the future, at most ``window`` ahead), answered with
    ``{"success":true,"op":"auth"}`` or ``"success":false`` and ``ret_msg``; the ``order``
    topic only after it."""

    path = "/v5/private"

    def __init__(self, account: Account, *, window: float = 30.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.account = account
        self.window = window

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

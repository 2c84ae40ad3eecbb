"""A demo exchange feed: trades as a real exchange sends them, after a subscription handshake.

Clients must send ``{"op":"subscribe","channel":"trades"}`` first; the feed confirms with
``{"type":"subscribed",...}`` and then streams trades of a few symbols whose prices follow a
random walk, with a per-connection ``seq`` so gaps would be visible.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

SUBSCRIBE = {"op": "subscribe", "channel": "trades"}
SYMBOLS = {"BTC-USD": 97_000.0, "ETH-USD": 3_600.0, "SOL-USD": 240.0}


class TradeFeed:
    """Serves ``ws://HOST:PORT/trades`` at ``rate`` trades per second per client."""

    def __init__(self, host: str = "127.0.0.1", port: int = 8765, rate: float = 20.0) -> None:
        self.host = host
        self.port = port
        self.rate = rate
        self._server: Server | None = None
        self._random = random.Random(7)
        self._prices = dict(SYMBOLS)

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}/trades"

    async def start(self) -> TradeFeed:
        self._server = await serve(self._handle, self.host, self.port)
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def trade(self, seq: int) -> str:
        symbol = self._random.choice(list(self._prices))
        price = self._prices[symbol] * (1 + self._random.gauss(0, 0.0005))
        self._prices[symbol] = price
        return json.dumps(
            {
                "type": "trade",
                "symbol": symbol,
                "price": round(price, 2),
                "size": round(self._random.expovariate(4.0), 5),
                "side": self._random.choice(("buy", "sell")),
                "ts": int(time.time() * 1000),
                "seq": seq,
            },
            separators=(",", ":"),
        )

    async def _handle(self, ws: ServerConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            request = json.loads(await asyncio.wait_for(ws.recv(), 30))
            if request != SUBSCRIBE:
                await ws.close(1008, f"expected subscription {json.dumps(SUBSCRIBE)}")
                return
            await ws.send(json.dumps({"type": "subscribed", "channel": "trades"}))
            seq = 0
            while True:
                seq += 1
                await ws.send(self.trade(seq))
                await asyncio.sleep(self._random.expovariate(self.rate))

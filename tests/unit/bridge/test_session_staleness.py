"""The staleness watchdog (``connection.staleAfterSeconds``) counts data frames only: a feed
that goes on sending heartbeats, pongs or acknowledgements but no data is stale."""

from __future__ import annotations

import asyncio

from websockets.exceptions import ConnectionClosedOK

from ws2kafka.bridge.service import Bridge
from ws2kafka.devstack.harness import RecordingSink, ScriptedConnection, bridge_spec, run_until

HEARTBEAT = '{"channel":"heartbeat"}'


class HeartbeatsOnly(ScriptedConnection):
    """A connection whose feed sends a heartbeat every 20 ms and never any data (Kraken's,
    once the subscribed market went quiet or the subscription was silently dropped)."""

    def __init__(self) -> None:
        super().__init__([])
        self.ended = asyncio.Event()

    def abort(self) -> None:
        self.ended.set()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self.ended.set()

    async def recv(self) -> str | bytes:
        try:
            await asyncio.wait_for(self.ended.wait(), 0.02)
        except TimeoutError:
            return HEARTBEAT
        raise ConnectionClosedOK(None, None)


async def test_heartbeats_that_a_rule_takes_out_do_not_keep_a_dataless_feed_fresh() -> None:
    """Regression: every frame used to reset the watchdog, so with a heartbeat rule a feed
    that sent only heartbeats was never found stale (nor unready)."""
    rules = [{"name": "heartbeat", "match": [{"pointer": "/channel", "equals": "heartbeat"}]}]
    spec = bridge_spec(
        "127.0.0.1:1",
        "ws://127.0.0.1:1/x",
        "t",
        connection={"staleAfterSeconds": 0.3},
        messages={"rules": rules},
    )

    async def open_heartbeats(*_: object) -> HeartbeatsOnly:
        return HeartbeatsOnly()

    sink = RecordingSink()
    bridge = Bridge(spec, name="stale", opener=open_heartbeats, sink_factory=sink.attach)
    summary = await run_until(
        bridge, lambda: bridge.stats.errors.get("StaleData", 0) >= 1, "StaleData", timeout=10
    )
    assert summary.control == summary.received > 0
    assert summary.delivered == 0

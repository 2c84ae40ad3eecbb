"""Token providers through a whole bridge, without Kafka: the local Binance and KuCoin feeds
(REST + WebSocket on loopback, ``devstack/private_feeds.py``) and a recording sink. The
keep-alive timer, the expiry rule, a refused handshake and the secrets at DEBUG."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from ws2kafka.bridge.config import WebSocketSourceSpec, parse_spec
from ws2kafka.bridge.login import LoginState
from ws2kafka.bridge.metrics import BridgeCollector
from ws2kafka.bridge.service import Bridge
from ws2kafka.devstack.harness import RecordingReporter, RecordingSink, run_until
from ws2kafka.devstack.private_feeds import BinanceUserDataFeed, KucoinBulletFeed

API_KEY = "flow-api-key-3c9e5a7d"


def binance(feed: BinanceUserDataFeed, client: str, **token: Any) -> WebSocketSourceSpec:
    header = {"name": "X-MBX-APIKEY", "valueFrom": {"value": API_KEY}}
    keep_alive = {
        "intervalSeconds": 0.2,
        "request": {
            "method": "PUT",
            "url": f"{feed.base}/api/v3/userDataStream",
            "query": [{"name": "listenKey", "value": "{listenKey.token}"}],
            "headers": [header],
        },
    }
    provider = {
        "name": "listenKey",
        "request": {"url": f"{feed.base}/api/v3/userDataStream", "headers": [header]},
        "token": "/listenKey",
        "messagePointer": "/msg",
        "lifetimeSeconds": 0.6,
        "refreshMarginSeconds": 0,
        "keepAlive": keep_alive,
        **token,
    }
    rule = {
        "name": "expired",
        "match": [{"pointer": "/e", "equals": "listenKeyExpired"}],
        "expiresToken": "listenKey",
    }
    return parse_spec(
        {
            "url": f"{feed.ws_base}/ws/{{listenKey.token}}",
            "tokens": [{k: v for k, v in provider.items() if v is not None}],
            "messages": {"rules": [rule]},
            "connection": {"client": client},
            "reconnect": {"initialDelaySeconds": 0.05, "maxDelaySeconds": 0.2},
            "kafka": {"bootstrapServers": "unused:9092", "topic": "t"},
        }
    )


def delivered(sink: RecordingSink) -> list[bytes]:
    return [record.value for batch in sink.batches for record in batch]


def shown_anywhere(
    caplog: pytest.LogCaptureFixture, bridge: Bridge, reporter: RecordingReporter
) -> str:
    feeds = ("aiohttp.access", "aiohttp.server", "aiohttp.web")
    lines = [r.getMessage() for r in caplog.records if not r.name.startswith(feeds)]
    return "\n".join([*lines, json.dumps(reporter.statuses), repr(bridge.stats)])


@pytest.mark.parametrize("client", ["picows", "websockets"])
async def test_keep_alives_keep_one_connection_and_nothing_secret_shows(
    client: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with BinanceUserDataFeed(API_KEY, lifetime=0.6, frames=30, frame_interval=0.04) as feed:
        sink, reporter = RecordingSink(), RecordingReporter()
        bridge = Bridge(
            binance(feed, client), name="b", reporter=reporter, sink_factory=sink.attach
        )
        await run_until(bridge, lambda: bridge.stats.delivered == feed.frames, "delivered", 20)
    assert len(feed.connections) == 1
    assert feed.keep_alives >= 2
    assert delivered(sink) == [frame.encode() for frame in feed.data_frames]
    kept_alive = bridge.stats.token_requests[("listenKey", "keepAlive", "ok")]
    assert feed.keep_alives - 1 <= kept_alive <= feed.keep_alives  # the stop may cut one short
    text = shown_anywhere(caplog, bridge, reporter)
    assert "token listenKey fetched" in text
    assert [secret for secret in [API_KEY, *feed.tokens] if secret in text] == []
    metrics = {m.name: m for m in BridgeCollector(lambda: [("ns/b", bridge.stats)]).collect()}
    labels = [s.labels for s in metrics["ws2kafka_token_requests"].samples]
    assert {"source": "ns/b", "token": "listenKey", "request": "fetch", "outcome": "ok"} in labels


async def test_the_expiry_event_ends_the_connection_and_a_new_key_is_fetched() -> None:
    async with BinanceUserDataFeed(API_KEY, lifetime=0.6, frames=30, frame_interval=0.04) as feed:
        sink, reporter = RecordingSink(), RecordingReporter()
        spec = binance(feed, "picows", keepAlive=None)
        bridge = Bridge(spec, name="b", reporter=reporter, sink_factory=sink.attach)
        await run_until(bridge, lambda: bridge.stats.delivered == feed.frames, "delivered", 20)
    assert len(feed.connections) >= 2
    assert feed.connections[0].expired_sent
    assert bridge.stats.token_expiries["listenKey"] == len(feed.connections) - 1
    assert delivered(sink) == [frame.encode() for frame in feed.data_frames]
    reasons = [s["authentication"]["state"] for s in reporter.statuses if s["authentication"]]
    assert LoginState.TOKEN_EXPIRED in reasons


async def test_a_refused_handshake_with_a_reused_token_fetches_anew_at_once() -> None:
    async with KucoinBulletFeed(
        lifetime=0.3,
        ping_interval_ms=5000,
        ping_timeout_ms=5000,
        frames_per_connection=5,
        disconnects=1,
        frames=10,
        frame_interval=0.1,
    ) as feed:
        spec = parse_spec(
            {
                "url": "{bullet.endpoint}?token={bullet.token}",
                "tokens": [
                    {
                        "name": "bullet",
                        "request": {"url": f"{feed.base}/api/v1/bullet-public"},
                        "token": "/data/token",
                        "endpoint": "/data/instanceServers/0/endpoint",
                    }
                ],
                "subscribe": ['{"id":1,"type":"subscribe","topic":"/market/match:BTC-USDT"}'],
                "messages": {"rules": [{"name": "c", "match": [{"pointer": "/id"}]}]},
                "reconnect": {"initialDelaySeconds": 0.05, "maxDelaySeconds": 0.2},
                "kafka": {"bootstrapServers": "unused:9092", "topic": "t"},
            }
        )
        sink = RecordingSink()
        bridge = Bridge(spec, name="k", sink_factory=sink.attach)
        await run_until(bridge, lambda: bridge.stats.delivered == feed.frames, "delivered", 20)
    # no lifetime in the spec: the token is reused until the feed refuses it (401)
    assert feed.refused_handshakes == 1
    assert bridge.stats.errors["TokenExpired"] == 1
    assert len(feed.tokens) == 2
    assert delivered(sink) == [frame.encode() for frame in feed.data_frames]

"""The bridge end to end: local WebSocket feeds -> real Kafka broker, exact counts."""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from ws2kafka.bridge.kafka_health import KafkaReason
from ws2kafka.bridge.service import Bridge, ExitCode
from ws2kafka.bridge.stats import ConnectionState
from ws2kafka.devstack.feeds import SequenceFeed, silent_server
from ws2kafka.devstack.harness import (
    bridge_spec,
    headers_of,
    new_topic,
    run_until,
    seqs,
    value_of,
)
from ws2kafka.devstack.kafka import KafkaBroker
from ws2kafka.devstack.waiting import until

pytestmark = pytest.mark.kafka


async def test_every_frame_reaches_kafka_once_in_order_with_headers(
    kafka: KafkaBroker, client: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="ws2kafka")
    topic = new_topic(kafka)
    async with SequenceFeed(count=500) as feed:
        spec = bridge_spec(kafka, feed.url, topic, connection={"client": client})
        bridge = Bridge(spec, name="seq")
        summary = await run_until(bridge, lambda: bridge.stats.delivered >= 500, "500 records")
    assert summary.exit_code == ExitCode.OK
    assert (summary.received, summary.delivered, summary.undelivered) == (500, 500, 0)
    messages = kafka.consume_all(topic, expected=500)
    assert [json.loads(value_of(m))["seq"] for m in messages] == list(range(1, 501))
    headers = headers_of(messages[9])
    assert headers["ws2kafka.source"] == b"seq"
    assert headers["ws2kafka.seq"] == b"10"
    assert headers["ws2kafka.type"] == b"text"
    received_ms = int(headers["ws2kafka.received"]) // 1000
    assert messages[9].timestamp()[1] == received_ms  # receive time, not produce time
    # the config field selected the client: the handshake was logged by that client only
    clients = {r.name for r in caplog.records if r.name.endswith(".client")}
    assert clients == {f"ws2kafka.{client}.client"}


async def test_the_kafka_side_is_known_from_what_librdkafka_reports(kafka: KafkaBroker) -> None:
    """A real producer: a reachable broker shows as Producing (its statistics count the
    broker up), a closed port as BrokersUnreachable with the records that wait."""
    topic = new_topic(kafka)
    async with SequenceFeed(rate=200) as feed:
        healthy = Bridge(bridge_spec(kafka, feed.url, topic), name="healthy")

        def producing() -> bool:
            verdict = healthy.kafka_verdict()
            return verdict.healthy and bool(verdict.brokers_up) and healthy.stats.delivered > 10

        await run_until(healthy, producing, "Producing with a broker up", timeout=30)
        nowhere = Bridge(
            bridge_spec("127.0.0.1:1", feed.url, topic, drainTimeoutSeconds=0.5), name="nowhere"
        )

        def unreachable() -> bool:
            verdict = nowhere.kafka_verdict()
            return (
                verdict.reason is KafkaReason.BROKERS_UNREACHABLE and verdict.backlog.records > 20
            )

        summary = await run_until(nowhere, unreachable, "BrokersUnreachable", timeout=30)
    verdict = nowhere.kafka_verdict()
    assert verdict.backlog.records == summary.undelivered > 0
    assert verdict.last_error is not None
    assert summary.exit_code == ExitCode.UNDELIVERED


async def test_binary_frames_are_produced_unchanged(kafka: KafkaBroker, client: str) -> None:
    topic = new_topic(kafka)
    payloads = [
        bytes(range(256)),
        gzip.compress(b'{"seq": 2}'),
        b"\x00",
        "é€".encode(),
        b"x" * 70_000,  # fragmented by the server's writes, one frame all the same
    ]

    async def handler(ws: ServerConnection) -> None:
        for payload in payloads:
            await ws.send(payload)
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0) as server:
        url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        raw = Bridge(bridge_spec(kafka, url, topic, connection={"client": client}), name="raw")
        await run_until(raw, lambda: raw.stats.delivered >= 5, "5 binary records")
    messages = kafka.consume_all(topic, expected=5)
    assert [value_of(m) for m in messages] == payloads
    assert all(headers_of(m)["ws2kafka.type"] == b"binary" for m in messages)


async def test_gzip_inflation_and_rejected_frames_are_counted(kafka: KafkaBroker) -> None:
    topic = new_topic(kafka)

    async def handler(ws: ServerConnection) -> None:
        await ws.send(gzip.compress(b'{"seq": 1}'))
        await ws.send(b"not gzip")
        await ws.send(gzip.compress(b'{"seq": 3}'))
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0) as server:
        url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        spec = bridge_spec(kafka, url, topic, connection={"inflate": "gzip"})
        bridge = Bridge(spec, name="gz")
        summary = await run_until(bridge, lambda: bridge.stats.delivered >= 2, "2 records")
    assert (summary.received, summary.delivered, summary.rejected) == (3, 2, 1)
    assert seqs(kafka, topic, 2) == [1, 3]


async def test_subscriptions_are_resent_in_order_after_every_reconnect(
    kafka: KafkaBroker, client: str
) -> None:
    topic = new_topic(kafka)
    subscribe = ['{"op":"subscribe","ch":"a"}', '{"op":"subscribe","ch":"b"}']
    async with SequenceFeed(wait_for_subscribe=True, close_after=50, close_code=1001) as feed:
        spec = bridge_spec(
            kafka, feed.url, topic, subscribe=subscribe, connection={"client": client}
        )
        bridge = Bridge(spec, name="resub")
        summary = await run_until(bridge, lambda: bridge.stats.delivered >= 150, "3 connections")
    assert len(feed.connections) >= 3
    for conn in feed.connections[:-1]:
        assert conn.messages == subscribe  # in order, never duplicated
    # the stop may land while the last handshake is under way: that connection may have
    # been abandoned before (or while) subscribing, and then is not counted as a reconnect
    last = feed.connections[-1].messages
    assert last == subscribe[: len(last)]
    assert summary.reconnects in (len(feed.connections) - 1, len(feed.connections) - 2)
    assert bridge.stats.close_codes.get(1001, 0) >= 2
    # every frame the bridge received is in Kafka exactly once: a gap-free prefix of the feed
    assert seqs(kafka, topic, summary.received) == list(range(1, summary.received + 1))


async def test_graceful_stop_under_load_loses_nothing(kafka: KafkaBroker, client: str) -> None:
    topic = new_topic(kafka)
    async with SequenceFeed(pad=200) as feed:  # unbounded, as fast as possible
        spec = bridge_spec(kafka, feed.url, topic, connection={"client": client})
        bridge = Bridge(spec, name="stop")
        summary = await run_until(bridge, lambda: bridge.stats.received >= 20_000, "load")
    assert summary.exit_code == ExitCode.OK
    assert summary.undelivered == 0
    assert summary.received == summary.delivered
    assert seqs(kafka, topic, summary.received) == list(range(1, summary.received + 1))


async def test_handshake_headers_bearer_token_and_basic_auth(
    kafka: KafkaBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    topic = new_topic(kafka)
    monkeypatch.setenv("FEED_TOKEN", "s3cr3t-token")
    async with SequenceFeed(count=1) as feed:
        headers = [
            {"name": "X-Custom", "value": "a,b:c, d"},
            {"name": "User-Agent", "value": "t/1"},
        ]
        spec = bridge_spec(
            kafka, feed.url, topic, headers=headers, auth={"bearerToken": {"env": "FEED_TOKEN"}}
        )
        bridge = Bridge(spec, name="auth")
        await run_until(bridge, lambda: bridge.stats.delivered >= 1, "1 record")
        sent = feed.connections[0].headers
        assert sent["X-Custom"] == "a,b:c, d"
        assert sent["Authorization"] == "Bearer s3cr3t-token"
        basic = bridge_spec(
            kafka, feed.url, topic, auth={"basic": {"username": "u", "password": {"value": "p:w"}}}
        )
        bridge = Bridge(basic, name="basic")
        await run_until(bridge, lambda: bridge.stats.delivered >= 1, "1 record")
        expected = "Basic " + base64.b64encode(b"u:p:w").decode()
        assert feed.connections[1].headers["Authorization"] == expected


def rejecting(status: int, retry_after: str | None = None) -> Callable[..., Awaitable[Any]]:
    """A handshake hook answering every upgrade with an HTTP error."""

    def process_request(connection: ServerConnection, request: Request) -> Response:
        headers = Headers({"Retry-After": retry_after} if retry_after else {})
        return Response(status, "rejected", headers, b"no\n")

    return process_request  # type: ignore[return-value]


async def test_401_is_an_authentication_failure_and_max_attempts_gives_up(
    kafka: KafkaBroker, client: str
) -> None:
    topic = new_topic(kafka)
    async with serve(
        lambda ws: ws.wait_closed(), "127.0.0.1", 0, process_request=rejecting(401)
    ) as server:
        url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        spec = bridge_spec(
            kafka,
            url,
            topic,
            reconnect={"initialDelaySeconds": 0.01, "maxDelaySeconds": 0.05, "maxAttempts": 3},
            connection={"client": client},
        )
        bridge = Bridge(spec, name="denied")
        summary = await asyncio.wait_for(bridge.run(), 30)
    assert summary.exit_code == ExitCode.GAVE_UP
    assert bridge.stats.state is ConnectionState.GAVE_UP
    assert bridge.stats.auth_failures == 3
    assert bridge.stats.errors == {"AuthenticationFailed": 3}
    assert "AuthenticationFailed" in (bridge.stats.last_error or "")


# 520: Cloudflare answers with 520-530, which http.HTTPStatus does not list
@pytest.mark.parametrize("status", [429, 503, 520])
async def test_retry_after_is_honoured(kafka: KafkaBroker, status: int) -> None:
    topic = new_topic(kafka)
    async with serve(
        lambda ws: ws.wait_closed(), "127.0.0.1", 0, process_request=rejecting(status, "1")
    ) as server:
        url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        spec = bridge_spec(
            kafka,
            url,
            topic,
            reconnect={"initialDelaySeconds": 0.01, "maxDelaySeconds": 5, "maxAttempts": 2},
        )
        bridge = Bridge(spec, name="limited")
        started = time.monotonic()
        summary = await asyncio.wait_for(bridge.run(), 30)
    assert summary.exit_code == ExitCode.GAVE_UP
    assert bridge.stats.errors == {"HandshakeFailed": 2}
    assert f"HTTP {status}" in (bridge.stats.last_error or "")
    assert time.monotonic() - started >= 1.0  # its Retry-After was honoured


async def test_stale_feed_is_dropped_and_reconnected(kafka: KafkaBroker) -> None:
    topic = new_topic(kafka)
    async with SequenceFeed(count=5) as feed:  # 5 frames, then silence
        spec = bridge_spec(kafka, feed.url, topic, connection={"staleAfterSeconds": 0.5})
        bridge = Bridge(spec, name="stale")
        summary = await run_until(bridge, lambda: len(feed.connections) >= 2, "a reconnect")
    assert bridge.stats.errors.get("StaleData", 0) >= 1
    assert summary.received == summary.delivered >= 5


async def test_half_open_connection_is_detected_by_ping_timeout(
    kafka: KafkaBroker, client: str
) -> None:
    topic = new_topic(kafka)

    release = asyncio.Event()

    async def silent(ws: ServerConnection) -> None:
        await ws.send('{"seq": 1}')
        ws.transport.pause_reading()  # never reads our pings again: a half-open peer
        await release.wait()
        ws.transport.abort()  # it cannot read a close frame either

    async with serve(silent, "127.0.0.1", 0) as server:
        url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        spec = bridge_spec(
            kafka,
            url,
            topic,
            connection={"client": client, "pingIntervalSeconds": 0.2, "pingTimeoutSeconds": 0.5},
        )
        bridge = Bridge(spec, name="halfopen")
        task = asyncio.create_task(bridge.run())
        started = time.monotonic()
        try:
            await until(lambda: "PingTimeout" in bridge.stats.errors, 10, "ping timeout")
            detected_after = time.monotonic() - started
        finally:
            bridge.stop()
            release.set()
        summary = await asyncio.wait_for(task, 30)
    assert detected_after < 2  # one ping interval plus the pong timeout, not a TCP timeout
    assert (bridge.stats.errors, bridge.stats.close_codes) == ({"PingTimeout": 1}, {1006: 1})
    assert summary.received == summary.delivered >= 1


async def test_application_heartbeat_is_sent(kafka: KafkaBroker) -> None:
    topic = new_topic(kafka)
    async with SequenceFeed(count=1) as feed:
        spec = bridge_spec(
            kafka,
            feed.url,
            topic,
            connection={"heartbeat": {"message": "ping", "intervalSeconds": 0.1}},
        )
        bridge = Bridge(spec, name="hb")
        await run_until(
            bridge,
            lambda: bool(feed.connections) and feed.connections[0].messages.count("ping") >= 3,
            "3 heartbeats",
        )


async def test_key_from_json_pointer(kafka: KafkaBroker) -> None:
    topic = new_topic(kafka)
    async with SequenceFeed(count=3) as feed:
        spec = bridge_spec(
            kafka, feed.url, topic, kafka={"key": {"source": "jsonPointer", "pointer": "/seq"}}
        )
        bridge = Bridge(spec, name="keyed")
        await run_until(bridge, lambda: bridge.stats.delivered >= 3, "3 records")
    assert [m.key() for m in kafka.consume_all(topic, expected=3)] == [b"1", b"2", b"3"]


async def test_connect_timeout_counts_a_silent_handshake(kafka: KafkaBroker) -> None:
    """A server that accepts TCP but never answers the upgrade must not hang the bridge."""
    async with silent_server() as port:
        url = f"ws://127.0.0.1:{port}"
        spec = bridge_spec(
            kafka,
            url,
            new_topic(kafka),
            connection={"connectTimeoutSeconds": 0.3},
            reconnect={"initialDelaySeconds": 0.01, "maxDelaySeconds": 0.02, "maxAttempts": 3},
        )
        started = time.monotonic()
        bridge = Bridge(spec, name="mute")
        summary = await asyncio.wait_for(bridge.run(), 30)
    assert summary.exit_code == ExitCode.GAVE_UP
    assert bridge.stats.connect_failures == 3
    assert bridge.stats.errors == {"ConnectTimeout": 3}
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("code", [1000, 1001, 1011, 4000, 4999])
async def test_server_close_codes_mid_stream_lose_nothing(kafka: KafkaBroker, code: int) -> None:
    """Whatever code the server closes with, every frame it sent reaches Kafka exactly once."""
    topic = new_topic(kafka)
    # frames flow only after the subscription, i.e. on connections the bridge took up
    async with SequenceFeed(close_after=40, close_code=code, wait_for_subscribe=True) as feed:
        spec = bridge_spec(kafka, feed.url, topic, subscribe=['{"op":"sub"}'])
        bridge = Bridge(spec, name=f"close-{code}")
        summary = await run_until(
            bridge, lambda: bridge.stats.close_codes.get(code, 0) >= 2, "two closes"
        )
    assert bridge.stats.close_codes[code] >= 2
    assert summary.received == feed.sent  # the close handshake lets nothing in flight slip
    assert summary.delivered == summary.received
    assert seqs(kafka, topic, summary.received) == list(range(1, summary.received + 1))

"""The main bridge behaviours with the fallback client (``connection.client: websockets``).

picows is the default client, which every other bridge test runs with; these keep the
websockets reference implementation tested for those who select it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from ws2kafka.bridge.service import Bridge, ExitCode
from ws2kafka.bridge.stats import ConnectionState
from ws2kafka.devstack.feeds import SequenceFeed
from ws2kafka.devstack.harness import bridge_spec, headers_of, new_topic, run_until, seqs, value_of
from ws2kafka.devstack.kafka import KafkaBroker
from ws2kafka.devstack.waiting import until

pytestmark = pytest.mark.kafka

#: ``connection`` of a spec selecting the websockets client.
WEBSOCKETS = {"client": "websockets"}


async def test_text_frames_arrive_exactly_once_in_order(
    kafka: KafkaBroker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="ws2kafka")
    topic = new_topic(kafka)
    async with SequenceFeed(count=500) as feed:
        spec = bridge_spec(kafka, feed.url, topic, connection=WEBSOCKETS)
        bridge = Bridge(spec, name="seq")
        summary = await run_until(bridge, lambda: bridge.stats.delivered >= 500, "500 records")
    assert summary.exit_code == ExitCode.OK
    assert (summary.received, summary.delivered, summary.undelivered) == (500, 500, 0)
    messages = kafka.consume_all(topic, expected=500)
    assert [json.loads(value_of(m))["seq"] for m in messages] == list(range(1, 501))
    assert headers_of(messages[0])["ws2kafka.type"] == b"text"
    # the config field selected websockets: the handshake was logged by its client only
    clients = {r.name for r in caplog.records if r.name.endswith(".client")}
    assert clients == {"ws2kafka.websockets.client"}


async def test_binary_frames_are_produced_unchanged(kafka: KafkaBroker) -> None:
    topic = new_topic(kafka)
    payloads = [bytes(range(256)), b"\x00", "é€".encode(), b"x" * 70_000]

    async def handler(ws: ServerConnection) -> None:
        for payload in payloads:
            await ws.send(payload)
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0) as server:
        url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        bridge = Bridge(bridge_spec(kafka, url, topic, connection=WEBSOCKETS), name="raw")
        await run_until(bridge, lambda: bridge.stats.delivered >= 4, "4 binary records")
    messages = kafka.consume_all(topic, expected=4)
    assert [value_of(m) for m in messages] == payloads
    assert all(headers_of(m)["ws2kafka.type"] == b"binary" for m in messages)


async def test_subscriptions_are_resent_after_every_reconnect(kafka: KafkaBroker) -> None:
    topic = new_topic(kafka)
    subscribe = ['{"op":"subscribe","ch":"a"}', '{"op":"subscribe","ch":"b"}']
    async with SequenceFeed(wait_for_subscribe=True, close_after=50, close_code=1001) as feed:
        spec = bridge_spec(kafka, feed.url, topic, subscribe=subscribe, connection=WEBSOCKETS)
        bridge = Bridge(spec, name="resub")
        summary = await run_until(bridge, lambda: bridge.stats.delivered >= 150, "3 connections")
    assert len(feed.connections) >= 3
    assert all(conn.messages == subscribe for conn in feed.connections)
    assert summary.reconnects == len(feed.connections) - 1
    assert bridge.stats.close_codes.get(1001, 0) >= 2
    assert seqs(kafka, topic, summary.received) == list(range(1, summary.received + 1))


async def test_graceful_stop_under_load_loses_nothing(kafka: KafkaBroker) -> None:
    topic = new_topic(kafka)
    async with SequenceFeed(pad=200) as feed:
        bridge = Bridge(bridge_spec(kafka, feed.url, topic, connection=WEBSOCKETS), name="stop")
        summary = await run_until(bridge, lambda: bridge.stats.received >= 20_000, "load")
    assert summary.exit_code == ExitCode.OK
    assert summary.undelivered == 0
    assert summary.received == summary.delivered
    assert seqs(kafka, topic, summary.received) == list(range(1, summary.received + 1))


async def test_half_open_connection_is_detected_by_ping_timeout(kafka: KafkaBroker) -> None:
    topic = new_topic(kafka)
    release = asyncio.Event()

    async def silent(ws: ServerConnection) -> None:
        await ws.send('{"seq": 1}')
        ws.transport.pause_reading()  # never reads our pings again: a half-open peer
        await release.wait()
        ws.transport.abort()

    async with serve(silent, "127.0.0.1", 0) as server:
        url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        connection = {**WEBSOCKETS, "pingIntervalSeconds": 0.2, "pingTimeoutSeconds": 0.5}
        spec = bridge_spec(kafka, url, topic, connection=connection)
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
    assert detected_after < 2
    assert (bridge.stats.errors, bridge.stats.close_codes) == ({"PingTimeout": 1}, {1006: 1})
    assert summary.received == summary.delivered >= 1


async def test_401_is_an_authentication_failure_and_max_attempts_gives_up(
    kafka: KafkaBroker,
) -> None:
    topic = new_topic(kafka)

    def reject(_: ServerConnection, request: Request) -> Response:
        return Response(401, "Unauthorized", Headers([("Content-Length", "0")]), b"")

    async with serve(lambda ws: ws.wait_closed(), "127.0.0.1", 0, process_request=reject) as server:
        url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        reconnect = {"initialDelaySeconds": 0.01, "maxDelaySeconds": 0.05, "maxAttempts": 3}
        spec = bridge_spec(kafka, url, topic, reconnect=reconnect, connection=WEBSOCKETS)
        bridge = Bridge(spec, name="denied")
        summary = await asyncio.wait_for(bridge.run(), 30)
    assert summary.exit_code == ExitCode.GAVE_UP
    assert bridge.stats.state is ConnectionState.GAVE_UP
    assert bridge.stats.errors == {"AuthenticationFailed": 3}


async def test_a_frame_above_max_frame_bytes_closes_with_1009_and_reconnects(
    kafka: KafkaBroker,
) -> None:
    topic = new_topic(kafka)

    async def handler(ws: ServerConnection) -> None:
        await ws.send(b"x" * 2048)
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0) as server:
        url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        spec = bridge_spec(kafka, url, topic, connection={**WEBSOCKETS, "maxFrameBytes": 1024})
        bridge = Bridge(spec, name="big")
        await run_until(bridge, lambda: bridge.stats.close_codes.get(1009, 0) >= 2, "2 closes")
    assert bridge.stats.received == 0

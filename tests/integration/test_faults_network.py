"""The bridge under network faults, made by Toxiproxy between real sockets: latency, a thin
pipe, a reset peer, a black hole, a slow close and a connection cut after N bytes, between the
bridge and the feed and between the bridge and Kafka; and a reconnect storm.

Every scenario reconciles exact counts: what the bridge received == records in Kafka (+ the
drops it counted, none here), no ``seq`` twice, and within one WebSocket connection no hole.
Frames lost in the network while a connection died never reached the bridge: they are the gap
between two connections, whose ``seq`` ranges the assertions pin down.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import json
import os
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer

from ws2kafka.bridge.service import Bridge, ExitCode, Summary
from ws2kafka.devstack.feeds import FeedConnection, SequenceFeed
from ws2kafka.devstack.harness import bridge_spec, headers_of, new_topic, record_count, value_of
from ws2kafka.devstack.kafka import KafkaBroker
from ws2kafka.devstack.processes import free_port
from ws2kafka.devstack.toxiproxy import Proxy, Toxiproxy
from ws2kafka.devstack.waiting import until

pytestmark = pytest.mark.kafka

#: Seconds of the reconnect storm (the issue asks for a minute; CI runs a shorter one).
STORM_SECONDS = float(os.environ.get("WS2KAFKA_STORM_SECONDS", "60"))
#: librdkafka gives up on a silent broker connection and retries sooner than its defaults.
FAST_KAFKA = {
    "reconnect.backoff.max.ms": "500",
    "socket.timeout.ms": "3000",
    "request.timeout.ms": "3000",
}


@contextlib.asynccontextmanager
async def proxied_feed(
    toxiproxy: Toxiproxy, **feed: Any
) -> AsyncIterator[tuple[SequenceFeed, Proxy, str]]:
    """A SequenceFeed behind a fresh proxy: yields the feed, the proxy and the URL to use."""
    async with SequenceFeed(**feed) as server:
        upstream = server.url.removeprefix("ws://").split("/", 1)[0]
        proxy = toxiproxy.create_proxy(f"feed-{uuid.uuid4().hex[:8]}", upstream)
        try:
            yield server, proxy, f"ws://{proxy.listen}/feed"
        finally:
            await asyncio.to_thread(proxy.delete)


async def add_toxic(proxy: Proxy, kind: str, **attributes: Any) -> str:
    """Add a toxic off the event loop: the in-process bridge keeps reading meanwhile."""
    return await asyncio.to_thread(lambda: proxy.add_toxic(kind, **attributes))


async def remove_toxic(proxy: Proxy, name: str) -> None:
    await asyncio.to_thread(proxy.remove_toxic, name)


def read_records(kafka: KafkaBroker, topic: str) -> list[tuple[int, str]]:
    """(seq, connection id) of every record of ``topic``, in offset order; also proves the
    topic holds no record beyond them."""
    count = record_count(kafka, topic)
    messages = kafka.consume_all(topic, expected=count) if count else []
    assert len(messages) == count
    return [
        (json.loads(value_of(m))["seq"], headers_of(m)["ws2kafka.connection"].decode())
        for m in messages
    ]


def reconcile(kafka: KafkaBroker, topic: str, summary: Summary, feed: SequenceFeed) -> list[int]:
    """The exact-count checks every scenario shares; returns the seqs in Kafka."""
    assert summary.exit_code == ExitCode.OK
    assert (summary.failed, summary.dropped, summary.rejected, summary.undelivered) == (0, 0, 0, 0)
    records = read_records(kafka, topic)
    seqs = [seq for seq, _ in records]
    # received == records in Kafka + counted drops (none), each record exactly once
    assert summary.received == summary.delivered == len(records)
    assert len(set(seqs)) == len(seqs), "a frame was written twice"
    assert seqs == sorted(seqs), "frames out of order"
    assert not seqs or (seqs[0] >= 1 and seqs[-1] <= feed.sent)
    # exactly-once within a connection: its frames form one unbroken range of seq
    by_connection: dict[str, list[int]] = {}
    for seq, connection in records:
        by_connection.setdefault(connection, []).append(seq)
    for connection, numbers in by_connection.items():
        assert numbers == list(range(numbers[0], numbers[0] + len(numbers))), (
            f"a hole inside connection {connection}"
        )
    return seqs


async def run_bridge(bridge: Bridge) -> asyncio.Task[Summary]:
    return asyncio.create_task(bridge.run())


async def finish(bridge: Bridge, task: asyncio.Task[Summary]) -> Summary:
    bridge.stop()
    return await asyncio.wait_for(task, 60)


# -- between the bridge and the feed -----------------------------------------------------------


async def test_latency_delays_but_delivers_every_frame_once_in_order(
    kafka: KafkaBroker, toxiproxy: Toxiproxy
) -> None:
    topic = new_topic(kafka)
    async with proxied_feed(toxiproxy, count=300, rate=300) as (feed, proxy, url):
        await add_toxic(proxy, "latency", latency=150, jitter=50)
        await add_toxic(proxy, "latency", stream="upstream", latency=150)
        # pings every 0.5 s with a 1 s timeout: 300-400 ms round trips are slow, not dead
        spec = bridge_spec(
            kafka, url, topic, connection={"pingIntervalSeconds": 0.5, "pingTimeoutSeconds": 1}
        )
        bridge = Bridge(spec, name="latency")
        started = time.monotonic()
        task = await run_bridge(bridge)
        await until(lambda: bridge.stats.delivered == 300, 30, "300 records")
        took = time.monotonic() - started
        summary = await finish(bridge, task)
    assert reconcile(kafka, topic, summary, feed) == list(range(1, 301))
    assert (bridge.stats.connects, bridge.stats.errors) == (1, {})
    assert took >= 0.6  # the handshake alone crossed the proxy twice each way


async def test_bandwidth_limit_slows_but_loses_nothing(
    kafka: KafkaBroker, toxiproxy: Toxiproxy
) -> None:
    topic = new_topic(kafka)
    frames, pad, rate_kb = 100, 1000, 40  # ~102 KB through a 40 KB/s pipe: ~2.5 s
    async with proxied_feed(toxiproxy, count=frames, pad=pad) as (feed, proxy, url):
        await add_toxic(proxy, "bandwidth", rate=rate_kb)
        spec = bridge_spec(kafka, url, topic, connection={"compression": False})
        bridge = Bridge(spec, name="bandwidth")
        started = time.monotonic()
        task = await run_bridge(bridge)
        await until(lambda: bridge.stats.delivered == frames, 30, f"{frames} records")
        took = time.monotonic() - started
        summary = await finish(bridge, task)
    assert reconcile(kafka, topic, summary, feed) == list(range(1, frames + 1))
    assert (bridge.stats.connects, bridge.stats.errors) == (1, {})
    assert took >= frames * pad / (rate_kb * 1000) * 0.7  # the pipe really was thin


async def test_reset_peer_mid_stream_reconnects_and_writes_each_received_frame_once(
    kafka: KafkaBroker, toxiproxy: Toxiproxy
) -> None:
    topic = new_topic(kafka)
    async with proxied_feed(toxiproxy, rate=500) as (feed, proxy, url):
        bridge = Bridge(bridge_spec(kafka, url, topic), name="reset")
        stats = bridge.stats
        task = await run_bridge(bridge)
        await until(lambda: stats.received >= 200, 20, "200 frames")
        toxic = await add_toxic(proxy, "reset_peer", timeout=0)
        await until(lambda: stats.errors, 10, "the connection reset")
        await remove_toxic(proxy, toxic)
        at_reconnect = stats.received
        await until(
            lambda: stats.connects >= 2 and stats.received >= at_reconnect + 200,
            20,
            "200 frames on a new connection",
        )
        feed.send_up_to(feed.sent)
        summary = await finish(bridge, task)
    seqs = reconcile(kafka, topic, summary, feed)
    assert summary.reconnects >= 1
    assert stats.close_codes.get(1006, 0) >= 1  # a reset: no close frame
    assert seqs[0] == 1
    # what went missing went missing between connections: at most one hole per reconnect
    holes = [(a, b) for a, b in itertools.pairwise(seqs) if b != a + 1]
    assert len(holes) <= summary.reconnects


async def test_black_hole_is_detected_within_ping_interval_plus_timeout(
    kafka: KafkaBroker, toxiproxy: Toxiproxy
) -> None:
    topic = new_topic(kafka)
    interval, timeout = 0.5, 1.0
    async with proxied_feed(toxiproxy, rate=200) as (feed, proxy, url):
        spec = bridge_spec(
            kafka,
            url,
            topic,
            connection={
                "pingIntervalSeconds": interval,
                "pingTimeoutSeconds": timeout,
                "connectTimeoutSeconds": 2,
            },
        )
        bridge = Bridge(spec, name="blackhole")
        stats = bridge.stats
        task = await run_bridge(bridge)
        await until(lambda: stats.received >= 100, 20, "100 frames")
        # the half-open connection: nothing arrives any more, pongs included, and no FIN/RST
        toxic = await add_toxic(proxy, "timeout", timeout=0)
        holed_at = time.monotonic()
        await until(lambda: stats.errors.get("PingTimeout"), 10, "the half-open connection dropped")
        detected_after = time.monotonic() - holed_at
        received_in_hole = stats.received
        await remove_toxic(proxy, toxic)
        await until(
            lambda: stats.connects >= 2 and stats.received >= received_in_hole + 100,
            20,
            "100 frames after the black hole",
        )
        feed.send_up_to(feed.sent)
        summary = await finish(bridge, task)
    assert timeout * 0.9 <= detected_after <= interval + timeout + 0.5
    assert stats.close_codes.get(1006) == 1
    reconcile(kafka, topic, summary, feed)


async def test_slow_close_delays_reconnects_but_loses_nothing(
    kafka: KafkaBroker, toxiproxy: Toxiproxy
) -> None:
    topic = new_topic(kafka)
    async with proxied_feed(toxiproxy, close_after=100) as (feed, proxy, url):
        feed.send_up_to(300)
        await add_toxic(proxy, "slow_close", delay=1000)
        bridge = Bridge(bridge_spec(kafka, url, topic), name="slowclose")
        task = await run_bridge(bridge)
        await until(
            lambda: bridge.stats.delivered == 300 and bridge.stats.close_codes.get(1000) == 3,
            30,
            "300 records over 3 connections, each closed",
        )
        summary = await finish(bridge, task)
    # a clean close (1000), however slow the TCP teardown: every frame, nothing twice
    assert reconcile(kafka, topic, summary, feed) == list(range(1, 301))
    assert [c.sent for c in feed.connections[:3]] == [100, 100, 100]
    assert bridge.stats.close_codes.get(1000) == 3


async def test_limit_data_cuts_each_connection_after_n_bytes_and_the_bridge_reconnects(
    kafka: KafkaBroker, toxiproxy: Toxiproxy
) -> None:
    topic = new_topic(kafka)
    limit, pad = 12_000, 100
    async with proxied_feed(toxiproxy, pad=pad, rate=1000) as (feed, proxy, url):
        frame_bytes = len(feed.frame(1))
        toxic = await add_toxic(proxy, "limit_data", bytes=limit)
        spec = bridge_spec(kafka, url, topic, connection={"compression": False})
        bridge = Bridge(spec, name="limit")
        stats = bridge.stats
        task = await run_bridge(bridge)
        await until(lambda: stats.connects >= 4, 30, "3 connections cut")
        await remove_toxic(proxy, toxic)
        at_removal = stats.received
        await until(
            lambda: stats.received >= at_removal + limit // frame_bytes + 100,
            20,
            "more than a cut connection's worth of frames on one connection",
        )
        feed.send_up_to(feed.sent)
        summary = await finish(bridge, task)
    reconcile(kafka, topic, summary, feed)
    per_connection: dict[str, int] = {}
    for _, connection in read_records(kafka, topic):
        per_connection[connection] = per_connection.get(connection, 0) + 1
    counts = list(per_connection.values())
    cut = counts[:3]  # the connections that ran under the toxic
    assert all(1 <= n <= limit // frame_bytes for n in cut), counts
    assert max(counts) > limit // frame_bytes  # the connection after the removal runs on
    assert stats.close_codes.get(1006, 0) >= 3


# -- between the bridge and Kafka ----------------------------------------------------------------


@pytest.fixture(scope="module")
def proxied_kafka(
    toxiproxy: Toxiproxy, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[KafkaBroker, Proxy]]:
    """A second broker whose advertised listener is a proxy: after bootstrap, every client
    connection (the bridge's and the test's readers) goes through the proxy."""
    port = free_port()
    proxy = toxiproxy.create_proxy(f"kafka-{uuid.uuid4().hex[:8]}", f"127.0.0.1:{port}")
    try:
        workdir: Path = tmp_path_factory.mktemp("kafka-proxied")
        with KafkaBroker.start(workdir, port=port, advertised_port=proxy.port) as broker:
            yield broker, proxy
    finally:
        proxy.delete()


def broker_addresses(broker: KafkaBroker) -> set[str]:
    """Where clients are sent after bootstrap, from the broker's metadata."""
    consumer = Consumer({"bootstrap.servers": broker.bootstrap_servers, "group.id": "meta"})
    try:
        metadata = consumer.list_topics(timeout=10)
    finally:
        consumer.close()
    return {f"{b.host}:{b.port}" for b in metadata.brokers.values()}


async def test_kafka_latency_and_black_hole_deliver_every_frame_exactly_once(
    proxied_kafka: tuple[KafkaBroker, Proxy],
) -> None:
    broker, proxy = proxied_kafka
    assert broker_addresses(broker) == {proxy.listen}
    topic = new_topic(broker)
    async with SequenceFeed(rate=300) as feed:
        spec = bridge_spec(proxy.listen, feed.url, topic, kafka={"properties": FAST_KAFKA})
        bridge = Bridge(spec, name="kafkafaults")
        stats = bridge.stats
        task = await run_bridge(bridge)
        try:
            await until(lambda: stats.delivered >= 200, 20, "200 records")
            # latency: slower acknowledgements, the data path goes on
            down = await add_toxic(proxy, "latency", latency=500)
            up = await add_toxic(proxy, "latency", stream="upstream", latency=200)
            before = stats.delivered
            await asyncio.sleep(3)
            assert stats.delivered > before
            await remove_toxic(proxy, down)
            await remove_toxic(proxy, up)
            # black hole: requests and answers vanish, no FIN, no RST; the producer times out,
            # reconnects and retries with the same idempotent sequence numbers
            down = await add_toxic(proxy, "timeout", timeout=0)
            up = await add_toxic(proxy, "timeout", stream="upstream", timeout=0)
            await asyncio.sleep(1)
            stalled = stats.delivered
            await asyncio.sleep(4)
            assert stats.delivered == stalled, "acknowledgements through a black hole"
            assert stats.received > stalled
            await remove_toxic(proxy, down)
            await remove_toxic(proxy, up)
            feed.send_up_to(feed.sent + 300)
            await until(
                lambda: feed.sent == stats.received == stats.delivered, 40, "everything delivered"
            )
        finally:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(toxiproxy_reset, proxy)
        summary = await finish(bridge, task)
    # one WebSocket connection all along: nothing lost on the way in, nothing doubled on the way out
    assert reconcile(broker, topic, summary, feed) == list(range(1, feed.sent + 1))
    assert (stats.connects, stats.errors) == (1, {})


KAFKA_TOXICS = {
    "bandwidth": {"rate": 16},  # KB/s, both ways
    "reset_peer": {"timeout": 500},  # every connection reset after 0.5 s
    "slow_close": {"delay": 1000},
    "limit_data": {"bytes": 20_000},  # each connection cut after 20 kB
}


@pytest.mark.parametrize("kind", list(KAFKA_TOXICS))
async def test_kafka_side_toxics_deliver_every_frame_exactly_once(
    proxied_kafka: tuple[KafkaBroker, Proxy], kind: str
) -> None:
    """Between the bridge and Kafka: slow, reset, slowly closed and cut connections. The
    idempotent producer retries what was in flight; the buffer holds the rest."""
    broker, proxy = proxied_kafka
    topic = new_topic(broker)
    async with SequenceFeed(rate=300) as feed:
        spec = bridge_spec(proxy.listen, feed.url, topic, kafka={"properties": FAST_KAFKA})
        bridge = Bridge(spec, name=f"kafka-{kind}")
        stats = bridge.stats
        task = await run_bridge(bridge)
        try:
            await until(lambda: stats.delivered >= 200, 20, "200 records")
            down = await add_toxic(proxy, kind, **KAFKA_TOXICS[kind])
            up = await add_toxic(proxy, kind, stream="upstream", **KAFKA_TOXICS[kind])
            await asyncio.sleep(3)
            await remove_toxic(proxy, down)
            await remove_toxic(proxy, up)
            feed.send_up_to(feed.sent + 300)
            await until(
                lambda: feed.sent == stats.received == stats.delivered, 60, "everything delivered"
            )
        finally:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(toxiproxy_reset, proxy)
        summary = await finish(bridge, task)
    assert reconcile(broker, topic, summary, feed) == list(range(1, feed.sent + 1))
    assert stats.connects == 1  # the WebSocket side never noticed


def toxiproxy_reset(proxy: Proxy) -> None:
    for toxic in proxy.toxics():
        proxy.remove_toxic(toxic["name"])


# -- reconnect storm -----------------------------------------------------------------------------


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


@dataclass
class Storm:
    """What a storm left behind: the bridge's summary, the feed's view, resource samples."""

    summary: Summary
    connections: list[FeedConnection]
    baseline: tuple[int, int, int]
    """Open fds, asyncio tasks and RSS bytes once the storm is under way."""
    samples: list[tuple[int, int]]
    """Open fds and asyncio tasks, every half second of the storm."""
    rss_growth: int


async def run_storm(
    kafka: KafkaBroker, feed: SequenceFeed, topic: str, subscribe: list[str], seconds: float
) -> Storm:
    """Run a bridge through a storm; the Bridge (and its librdkafka handle) dies with this
    frame, so the caller can check that everything it opened was closed."""
    spec = bridge_spec(
        kafka,
        feed.url,
        topic,
        subscribe=subscribe,
        reconnect={"initialDelaySeconds": 0.1, "maxDelaySeconds": 0.5},
    )
    bridge = Bridge(spec, name="storm")
    task = await run_bridge(bridge)
    await until(lambda: bridge.stats.connects >= 5, 20, "5 connections")
    gc.collect()
    baseline = (open_fds(), len(asyncio.all_tasks()), rss_bytes())
    samples: list[tuple[int, int]] = []
    storm_end = time.monotonic() + seconds
    while time.monotonic() < storm_end:
        await asyncio.sleep(0.5)
        samples.append((open_fds(), len(asyncio.all_tasks())))
    gc.collect()
    rss_growth = rss_bytes() - baseline[2]
    summary = await finish(bridge, task)
    return Storm(summary, list(feed.connections), baseline, samples, rss_growth)


@pytest.mark.parametrize("storm_seconds", [STORM_SECONDS])
async def test_reconnect_storm_subscribes_once_per_connection_and_leaks_nothing(
    kafka: KafkaBroker, storm_seconds: float
) -> None:
    topic = new_topic(kafka)
    subscribe = ['{"op":"subscribe","channel":"trades"}', '{"op":"subscribe","channel":"book"}']
    gc.collect()
    fds_before, tasks_before = open_fds(), len(asyncio.all_tasks())
    # the server drops every connection after 50 frames (1001), the bridge reconnects at once
    async with SequenceFeed(close_after=50, close_code=1001, wait_for_subscribe=True) as feed:
        storm = await run_storm(kafka, feed, topic, subscribe, storm_seconds)
    gc.collect()
    await until(lambda: open_fds() <= fds_before, 10, "every socket of the storm closed")
    assert len(asyncio.all_tasks()) == tasks_before
    connections, summary = storm.connections, storm.summary
    assert len(connections) >= storm_seconds
    # (the last handshake may complete on the feed's side just as the bridge stops)
    assert len(connections) - 2 <= summary.reconnects <= len(connections) - 1
    # every connection got the configured subscription, once, in order
    assert all(c.messages == subscribe for c in connections[:-1])
    assert connections[-1].messages in (subscribe, [])
    # a clean close loses nothing: every frame the feed sent is in Kafka once
    assert reconcile(kafka, topic, summary, feed) == list(range(1, feed.sent + 1))
    # bounded resources: a connection in flight costs a few fds and tasks, but a leak would
    # raise the floor connection after connection; the last samples' floor is the baseline
    base_fds, base_tasks, _ = storm.baseline
    fds = [sample[0] for sample in storm.samples]
    tasks = [sample[1] for sample in storm.samples]
    assert min(fds[-6:]) <= base_fds + 2, storm.samples
    assert min(tasks[-6:]) <= base_tasks + 2, storm.samples
    assert max(fds) <= base_fds + 8, storm.samples
    assert max(tasks) <= base_tasks + 10, storm.samples
    assert storm.rss_growth < 20 * 1024 * 1024

"""The bridge against a replicated cluster when a broker fails: a leader killed mid-stream, a
rolling restart, a broker cut off by the network, and the ISR below ``min.insync.replicas``.

A real bridge streams a numbered load feed (``devstack.loadfeed.PacedFeed``, in a thread) into
a topic of three partitions, replication factor 3 and ``min.insync.replicas=2``, on three KRaft
nodes (``devstack.kafka_cluster``). Each test reconciles the feed's numbers against what the
cluster holds: every number sent is in the topic exactly once, and within each partition the
numbers increase (order kept per partition), so nothing is lost and nothing is duplicated.

Rates: the machine (two cores) also runs the three JVMs, their replication, Toxiproxy and the
feed, so the leader kill runs at 20k msg/s for six seconds, the rolling restart (three node
restarts in turn, minutes on a loaded machine) at 2k msg/s and the other scenarios at 4k.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.metrics_core import Metric

from ws2kafka.bridge.kafka_health import KafkaReason
from ws2kafka.bridge.metrics import BridgeCollector
from ws2kafka.bridge.service import Bridge, ExitCode, Summary
from ws2kafka.bridge.stats import BridgeStats, ConnectionState
from ws2kafka.devstack.harness import bridge_spec
from ws2kafka.devstack.kafka_cluster import MIN_INSYNC_REPLICAS, KafkaCluster
from ws2kafka.devstack.loadfeed import PacedFeed, sequence_of
from ws2kafka.devstack.waiting import until

pytestmark = pytest.mark.kafka

#: librdkafka finds a moved leader and a returned broker sooner than with its defaults.
FAST_KAFKA = {"reconnect.backoff.max.ms": "500", "topic.metadata.refresh.interval.ms": "5000"}


@pytest.fixture
def cluster(kafka_cluster: KafkaCluster) -> Iterator[KafkaCluster]:
    """The session's cluster, back to three healthy nodes after the test, whatever it did."""
    yield kafka_cluster
    kafka_cluster.restore()


def new_cluster_topic(cluster: KafkaCluster) -> str:
    topic = f"failover-{uuid.uuid4().hex[:10]}"
    cluster.create_topic(topic, partitions=3)
    return topic


def start_bridge(cluster: KafkaCluster, feed: PacedFeed, topic: str, **fields: Any) -> Bridge:
    spec = bridge_spec(
        cluster.bootstrap_servers,
        feed.url,
        topic,
        # the failover is on the Kafka side: no WebSocket pings to time out meanwhile
        connection={"pingIntervalSeconds": 0},
        kafka={"properties": FAST_KAFKA},
        **fields,
    )
    return Bridge(spec, name="cluster")


async def stream(bridge: Bridge) -> asyncio.Task[Summary]:
    return asyncio.create_task(bridge.run())


async def finish(bridge: Bridge, task: asyncio.Task[Summary], feed: PacedFeed) -> Summary:
    """Wait until the feed sent everything released and all of it is acknowledged, then stop
    the bridge."""
    stats = bridge.stats

    def done() -> bool:
        return feed.sent == feed.released == stats.received == stats.delivered

    try:
        await until(
            lambda: done() or task.done(),
            120,
            "every frame sent acknowledged",
            interval=0.1,
        )
    finally:
        bridge.stop()
    return await asyncio.wait_for(task, 60)


def reconcile(cluster: KafkaCluster, topic: str, summary: Summary, feed: PacedFeed) -> None:
    """Exactly once, in order per partition: the checks every scenario shares."""
    assert summary.exit_code == ExitCode.OK
    assert (summary.failed, summary.dropped, summary.undelivered) == (0, 0, 0)
    assert summary.received == summary.delivered == feed.sent
    assert feed.connections == 1, "the WebSocket side reconnected"
    by_partition = {
        partition: [sequence_of(value) for value in values]
        for partition, values in cluster.records(topic).items()
    }
    for partition, numbers in by_partition.items():
        assert all(a < b for a, b in itertools.pairwise(numbers)), (
            f"partition {partition}: out of order or duplicated"
        )
    numbers = sorted(n for values in by_partition.values() for n in values)
    assert len(numbers) == feed.sent, f"{len(numbers)} records in Kafka, {feed.sent} sent"
    assert numbers == list(range(1, feed.sent + 1)), "a number is missing or twice"


async def leader_other_than(cluster: KafkaCluster, topic: str, victim: int) -> int:
    """Wait for partition 0 of ``topic`` to be led by another node than ``victim``; the
    metadata calls run off the event loop, which keeps running the bridge."""
    deadline = time.monotonic() + 60
    while (leader := await asyncio.to_thread(cluster.leader, topic, 0)) == victim:
        assert time.monotonic() < deadline, f"node {victim} still leads {topic}[0] after 60 s"
        await asyncio.sleep(0.5)
    return leader


def samples(stats: BridgeStats) -> dict[str, float]:
    """The bridge's metrics, each summed over its labels."""
    metrics: list[Metric] = list(BridgeCollector(lambda: [("s", stats)]).collect())
    sums: dict[str, float] = {}
    for sample in (sample for metric in metrics for sample in metric.samples):
        sums[sample.name] = sums.get(sample.name, 0.0) + sample.value
    return sums


async def test_the_partition_leader_killed_mid_stream_loses_and_duplicates_nothing(
    cluster: KafkaCluster,
) -> None:
    """SIGKILL of partition 0's leader at 20k msg/s: its partitions move to the replicas in
    sync, and the idempotent producer retries what the dead leader never acknowledged."""
    topic = new_cluster_topic(cluster)
    total, kill_at = 120_000, 30_000
    with PacedFeed(rate=20_000) as feed:
        bridge = start_bridge(cluster, feed, topic)
        task = await stream(bridge)
        feed.release(total)
        await until(lambda: bridge.stats.delivered >= kill_at, 30, f"{kill_at} acknowledged")
        victim = await asyncio.to_thread(cluster.leader, topic, 0)
        await asyncio.to_thread(cluster.kill, victim)
        await leader_other_than(cluster, topic, victim)
        summary = await finish(bridge, task, feed)
    reconcile(cluster, topic, summary, feed)
    assert feed.sent == total


@pytest.mark.timeout(600)  # three restarts in turn: on a loaded machine each takes a minute
async def test_a_rolling_restart_under_load_loses_and_duplicates_nothing(
    cluster: KafkaCluster,
) -> None:
    """Controlled shutdown and restart of every node in turn, each back in sync before the
    next, while the feed streams at 2k msg/s."""
    topic = new_cluster_topic(cluster)
    leaders_seen: set[int] = set()

    def roll() -> None:
        for node in cluster.nodes:
            leaders_seen.add(cluster.leader(topic, 0))
            cluster.stop(node)
            # while the node is down another one leads (a restarted preferred leader may
            # take the lead back before the next look)
            leaders_seen.add(cluster.leader(topic, 0))
            cluster.restart(node)

    with PacedFeed(rate=2000) as feed:
        bridge = start_bridge(cluster, feed, topic)
        task = await stream(bridge)
        feed.release(2000)
        await until(lambda: bridge.stats.delivered >= 1000, 30, "1000 acknowledged")
        rolling = asyncio.ensure_future(asyncio.to_thread(roll))
        while not rolling.done():
            feed.release(feed.sent + 1000)  # at most half a second ahead of the feed
            await asyncio.sleep(0.25)
        await rolling
        summary = await finish(bridge, task, feed)
    reconcile(cluster, topic, summary, feed)
    assert len(leaders_seen) >= 2, "partition 0's leadership never moved"


async def test_a_leader_cut_off_by_the_network_is_replaced_and_nothing_is_lost(
    cluster: KafkaCluster,
) -> None:
    """Toxiproxy cuts partition 0's leader off from clients and from the other nodes: it can
    no longer heartbeat, the controller fences it and the replicas in sync take over. When it
    is back, it truncates whatever it appended alone and catches up."""
    topic = new_cluster_topic(cluster)
    with PacedFeed(rate=4000) as feed:
        bridge = start_bridge(cluster, feed, topic)
        stats = bridge.stats
        task = await stream(bridge)
        feed.release(8000)
        await until(lambda: stats.delivered >= 4000, 30, "4000 acknowledged")
        victim = await asyncio.to_thread(cluster.leader, topic, 0)
        await asyncio.to_thread(cluster.isolate, victim)
        try:
            feed.release(40_000)
            new_leader = await leader_other_than(cluster, topic, victim)
            assert victim not in await asyncio.to_thread(cluster.isr, topic, 0)
            delivered = stats.delivered
            await until(
                lambda: stats.delivered > delivered + 4000, 60, "records via the new leader"
            )
        finally:
            await asyncio.to_thread(cluster.heal, victim)
        await asyncio.to_thread(cluster.wait_in_sync)
        summary = await finish(bridge, task, feed)
    reconcile(cluster, topic, summary, feed)
    assert new_leader in cluster.nodes


async def test_with_one_broker_left_the_bridge_blocks_within_its_buffer_then_delivers(
    cluster: KafkaCluster,
) -> None:
    """Two nodes shut down: the ISR falls below ``min.insync.replicas``, no record can be
    acknowledged, and under ``overflow: block`` the bridge buffers up to its limit, stops
    reading (TCP pushes back on the feed) and keeps its connection. When the nodes return
    everything is delivered once."""
    topic = new_cluster_topic(cluster)
    limit = 5000
    with PacedFeed(rate=4000) as feed:
        bridge = start_bridge(cluster, feed, topic, buffer={"maxMessages": limit})
        stats = bridge.stats
        task = await stream(bridge)
        feed.release(4000)
        await until(lambda: stats.delivered == 4000, 30, "4000 acknowledged")
        survivor = await asyncio.to_thread(cluster.leader, topic, 0)
        others = [node for node in cluster.nodes if node != survivor]
        for node in others:
            await asyncio.to_thread(cluster.stop, node)
        assert len(await asyncio.to_thread(cluster.isr, topic, 0)) < MIN_INSYNC_REPLICAS
        produced = stats.delivered
        feed.release(40_000)
        await until(lambda: bridge.paused(), 30, "reading paused by a full buffer")
        await asyncio.sleep(2)  # a while at the limit: nothing acknowledged, nothing read
        assert stats.delivered == produced
        assert stats.held == limit
        assert feed.sent < 40_000, "TCP did not push back on the feed"
        metrics = samples(stats)
        assert metrics["ws2kafka_records_produced_total"] == produced
        assert metrics["ws2kafka_buffer_records"] == limit
        assert metrics["ws2kafka_frames_dropped_total"] == 0
        assert stats.state is ConnectionState.CONNECTED
        # the status says why nothing is produced: the buffer is full (BufferFilling), then
        # after 30 s without an acknowledgement, DeliveryStalled
        verdict = bridge.kafka_verdict()
        stalled = (KafkaReason.BUFFER_FILLING, KafkaReason.DELIVERY_STALLED)
        assert verdict.reason in stalled, verdict
        assert "records wait in the buffer (100% full" in verdict.message
        for node in others:
            await asyncio.to_thread(cluster.nodes[node].restart)
        await asyncio.to_thread(cluster.wait_in_sync)
        summary = await finish(bridge, task, feed)
    reconcile(cluster, topic, summary, feed)
    assert feed.sent == 40_000

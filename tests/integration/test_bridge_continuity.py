"""Continuity: gaps between connections are recorded (control record, metrics, status, log),
sequence gaps are detected, the close-code policy re-reads secrets on 1008, and a
make-before-break rotation loses and duplicates nothing. Real Kafka, real loopback sockets,
a feed that numbers one global stream, exact counts."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pytest
from confluent_kafka import Message
from prometheus_client.core import Metric

from ws2kafka.bridge.metrics import BridgeCollector
from ws2kafka.bridge.service import Bridge, ExitCode, Summary
from ws2kafka.bridge.stats import BridgeStats
from ws2kafka.devstack.feeds import BroadcastFeed
from ws2kafka.devstack.harness import (
    RecordingReporter,
    bridge_spec,
    headers_of,
    new_topic,
    record_count,
    value_of,
)
from ws2kafka.devstack.kafka import KafkaBroker
from ws2kafka.devstack.waiting import until

pytestmark = pytest.mark.kafka

SUBSCRIBE = '{"op":"subscribe","channel":"trades"}'


def samples(stats: BridgeStats) -> dict[str, float]:
    metrics: list[Metric] = list(BridgeCollector(lambda: [("s", stats)]).collect())
    return {sample.name: sample.value for metric in metrics for sample in metric.samples}


def split(messages: list[Message]) -> tuple[list[Message], list[Message]]:
    """(data records, gap control records)."""
    control = [m for m in messages if headers_of(m).get("ws2kafka.control") == b"gap"]
    return [m for m in messages if m not in control], control


def seq_of(message: Message) -> int:
    seq: int = json.loads(value_of(message))["seq"]
    return seq


async def rotate_after(bridge: Bridge, *, frames: int, rotations: int) -> None:
    """Once ``frames`` were received, rotate, and wait for the rotation to complete."""
    stats = bridge.stats
    await until(lambda: stats.received >= frames, 20, f"{frames} frames")
    bridge.rotate()
    await until(lambda: stats.rotations == rotations, 20, f"rotation {rotations}")


async def stop(bridge: Bridge, task: asyncio.Task[Summary]) -> Summary:
    bridge.stop()
    return await asyncio.wait_for(task, 60)


async def test_a_gap_is_recorded_and_everything_published_is_accounted_for(
    kafka: KafkaBroker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ws2kafka")
    topic = new_topic(kafka)
    reporter = RecordingReporter()
    async with BroadcastFeed() as feed:
        spec = bridge_spec(
            kafka,
            feed.url,
            topic,
            subscribe=[SUBSCRIBE],
            sequence={"pointer": "/seq"},
            gaps={"record": True},
            reconnect={"initialDelaySeconds": 0.05, "maxDelaySeconds": 5},
        )
        bridge = Bridge(spec, name="gapped", reporter=reporter)
        stats = bridge.stats
        task = asyncio.create_task(bridge.run())
        try:
            await until(lambda: feed.live == 1, 10, "the bridge subscribed")
            await feed.publish(100)
            await until(lambda: stats.delivered == 100, 20, "100 records")
            feed.refuse(503, retry_after="1")
            await feed.close(0, 1011, "overloaded")
            await until(lambda: feed.live == 0 and feed.refused >= 1, 10, "a refused attempt")
            await feed.publish(50)  # nobody is connected: missed
            feed.accept()
            await until(lambda: feed.live == 1, 10, "the bridge back")
            await feed.publish(100)
            await until(
                lambda: stats.delivered == 200 and stats.gap_records == 1, 20, "200 + gap record"
            )
        finally:
            summary = await stop(bridge, task)
    assert summary.exit_code == ExitCode.OK
    assert (summary.received, summary.delivered, summary.dropped) == (200, 200, 0)

    messages = kafka.consume_all(topic, expected=201)
    data, control = split(messages)
    assert [seq_of(m) for m in data] == list(range(1, 101)) + list(range(151, 251))
    assert len(control) == 1
    assert messages[100] is control[0]  # between the old connection's records and the new's
    gap = json.loads(value_of(control[0]))
    old_id = headers_of(data[0])["ws2kafka.connection"].decode()
    new_id = headers_of(data[100])["ws2kafka.connection"].decode()
    assert old_id != new_id
    assert {k: gap[k] for k in ("type", "source", "oldConnectionId", "newConnectionId")} == {
        "type": "gap",
        "source": "gapped",
        "oldConnectionId": old_id,
        "newConnectionId": new_id,
    }
    assert (gap["closeCode"], gap["closeReason"], gap["error"]) == (
        1011,
        "closed with 1011 overloaded",
        "ConnectionClosedError",
    )
    assert gap["framesOnOldConnection"] == 100
    assert gap["failedAttempts"] == stats.connect_failures == feed.refused >= 1
    assert gap["durationSeconds"] >= 1.0  # 503 Retry-After: 1 was honoured
    assert headers_of(control[0])["ws2kafka.source"] == b"gapped"

    # reconciliation: published == in Kafka + dropped + inside the reported gap
    assert feed.published == 250 == len(data) + summary.dropped + stats.sequence_missing
    assert sum(conn.sent for conn in feed.connections) == len(data) + summary.dropped
    assert (stats.gaps, stats.sequence_gaps, stats.sequence_regressions) == (1, 1, 0)
    assert stats.last_sequence_gap is not None
    assert stats.last_sequence_gap.to_status() | {"at": None} == {
        "partition": None,
        "kind": "gap",
        "expected": 101,
        "received": 151,
        "missing": 50,
        "connectionId": new_id,
        "at": None,
    }

    metrics = samples(stats)
    assert metrics["ws2kafka_gaps_total"] == 1
    assert metrics["ws2kafka_gap_seconds_total"] == metrics["ws2kafka_last_gap_seconds"] >= 1.0
    assert metrics["ws2kafka_sequence_gaps_total"] == 1
    assert metrics["ws2kafka_sequence_missing_total"] == 50
    assert metrics["ws2kafka_sequence_regressions_total"] == 0

    status = reporter.snapshots[-1].to_gap_status()
    assert status["lastGap"] == {k: gap[k] for k in gap if k != "type"}
    assert isinstance(status["lastSequenceGap"], dict)
    assert status["lastSequenceGap"]["missing"] == 50

    lines = [r.getMessage() for r in caplog.records]
    gap_lines = [line for line in lines if line.startswith("gapped: gap of ")]
    assert len(gap_lines) == 1
    assert f"between connection {old_id} (ConnectionClosedError: closed with 1011" in gap_lines[0]
    sequence_lines = [line for line in lines if "sequence gaps in the last" in line]
    assert len(sequence_lines) == 1
    assert sequence_lines[0].startswith("gapped: 1 sequence gaps in the last")
    assert "expected 101, got 151 (50 missing: 101..150" in sequence_lines[0]


async def test_1008_rereads_a_rotated_token_file_and_the_gap_goes_to_the_control_topic(
    kafka: KafkaBroker, tmp_path: Path
) -> None:
    topic, control_topic = new_topic(kafka), new_topic(kafka)
    token = tmp_path / "token"
    token.write_text("first-token\n")
    async with BroadcastFeed() as feed:
        spec = bridge_spec(
            kafka,
            feed.url,
            topic,
            subscribe=[SUBSCRIBE],
            auth={"bearerToken": {"file": str(token)}},
            gaps={"record": True, "topic": control_topic},
        )
        bridge = Bridge(spec, name="reauth")
        stats = bridge.stats
        task = asyncio.create_task(bridge.run())
        try:
            await until(lambda: feed.live == 1, 10, "the bridge subscribed")
            await feed.publish(10)
            await until(lambda: stats.delivered == 10, 20, "10 records")
            token.write_text("second-token\n")  # rotated while connected
            await feed.close(0, 1008, "token expired")
            await until(lambda: feed.live == 1 and len(feed.connections) == 2, 10, "reconnected")
            await feed.publish(10)
            await until(
                lambda: stats.delivered == 20 and stats.gap_records == 1, 20, "20 + gap record"
            )
        finally:
            summary = await stop(bridge, task)
    assert (summary.exit_code, summary.received, summary.delivered) == (ExitCode.OK, 20, 20)
    authorizations = [conn.headers["Authorization"] for conn in feed.connections]
    assert authorizations == ["Bearer first-token", "Bearer second-token"]
    assert [conn.messages for conn in feed.connections] == [[SUBSCRIBE], [SUBSCRIBE]]
    data = kafka.consume_all(topic, expected=20)
    assert [seq_of(m) for m in data] == list(range(1, 21))
    assert record_count(kafka, topic) == 20  # no control record in the data topic
    (control,) = kafka.consume_all(control_topic, expected=1)
    gap = json.loads(value_of(control))
    assert (gap["closeCode"], gap["closeReason"]) == (1008, "closed with 1008 token expired")
    assert (gap["framesOnOldConnection"], gap["failedAttempts"]) == (10, 0)
    assert headers_of(control)["ws2kafka.control"] == b"gap"


async def test_a_rotated_secret_file_is_taken_up_by_a_rotation_without_losing_a_frame(
    kafka: KafkaBroker, tmp_path: Path
) -> None:
    """A Secret rotated while connected (a bridge pod's file, updated by the kubelet): the
    bridge opens a new connection with it before it closes the old one, no gap."""
    topic = new_topic(kafka)
    token = tmp_path / "token"
    token.write_text("first-token\n")
    total = 600
    async with BroadcastFeed() as feed:
        spec = bridge_spec(
            kafka,
            feed.url,
            topic,
            subscribe=[SUBSCRIBE],
            auth={"bearerToken": {"file": str(token)}},
            rotation={"dedupe": {"pointer": "/seq", "windowSize": 1000}},
        )
        bridge = Bridge(spec, name="rekeyed", secret_check_interval=0.1)
        stats = bridge.stats
        task = asyncio.create_task(bridge.run())
        try:
            await until(lambda: feed.live == 1, 10, "the bridge subscribed")
            publisher = asyncio.create_task(feed.publish(total, rate=1000))
            await until(lambda: stats.delivered >= 100, 20, "100 records")
            token.write_text("second-token\n")
            await until(lambda: stats.rotations == 1, 20, "the rotation")
            await publisher
            await until(lambda: stats.delivered == total, 30, f"{total} records")
        finally:
            summary = await stop(bridge, task)
    assert summary.exit_code == ExitCode.OK
    authorizations = [conn.headers["Authorization"] for conn in feed.connections]
    assert authorizations == ["Bearer first-token", "Bearer second-token"]
    assert [conn.close_code for conn in feed.connections[:1]] == [1000]
    assert [seq_of(m) for m in kafka.consume_all(topic, expected=total)] == list(
        range(1, total + 1)
    )
    assert record_count(kafka, topic) == total
    assert (stats.gaps, stats.reconnects, stats.rotation_failures) == (0, 0, 0)


@pytest.mark.parametrize("trigger", ["rotate()", "intervalSeconds"])
async def test_rotation_under_load_keeps_every_frame_exactly_once_in_order(
    kafka: KafkaBroker, trigger: str
) -> None:
    topic = new_topic(kafka)
    total = 4000
    rotation: dict[str, object] = {"dedupe": {"pointer": "/seq", "windowSize": 1000}}
    if trigger == "intervalSeconds":
        rotation["intervalSeconds"] = 0.8
    async with BroadcastFeed() as feed:
        spec = bridge_spec(
            kafka,
            feed.url,
            topic,
            subscribe=[SUBSCRIBE],
            sequence={"pointer": "/seq"},
            gaps={"record": True},
            rotation=rotation,
        )
        bridge = Bridge(spec, name="rotating")
        stats = bridge.stats
        task = asyncio.create_task(bridge.run())
        try:
            await until(lambda: feed.live == 1, 10, "the bridge subscribed")
            publisher = asyncio.create_task(feed.publish(total, rate=2000))
            if trigger == "rotate()":
                for done in (1, 2):
                    await rotate_after(bridge, frames=800 * done, rotations=done)
            await publisher
            await until(lambda: stats.rotations >= 2, 20, "two rotations")
            await until(lambda: stats.delivered == total, 30, f"{total} records")
        finally:
            summary = await stop(bridge, task)
    assert summary.exit_code == ExitCode.OK
    messages = kafka.consume_all(topic, expected=total)
    assert [seq_of(m) for m in messages] == list(range(1, total + 1))
    assert record_count(kafka, topic) == total  # no duplicate, no gap record
    assert (stats.gaps, stats.sequence_gaps, stats.sequence_regressions) == (0, 0, 0)
    assert (stats.reconnects, stats.rotation_failures, stats.connect_failures) == (0, 0, 0)
    # each rotation overlaps by at least the new connection's first frame
    assert stats.dedupe_skipped >= stats.rotations
    assert summary.received == summary.delivered + summary.deduplicated
    assert summary.deduplicated == stats.dedupe_skipped
    # every connection subscribed once; each replaced one was closed with 1000 (a rotation
    # that was still waiting for data when the bridge stopped delivered nothing)
    used = [conn for conn in feed.connections if conn.sent]
    assert len(used) == stats.rotations + 1
    assert all(conn.messages == [SUBSCRIBE] for conn in feed.connections)
    assert [conn.close_code for conn in used[:-1]] == [1000] * stats.rotations
    assert feed.published == summary.delivered + summary.dropped + stats.sequence_missing
    assert samples(stats)["ws2kafka_dedupe_skipped_total"] == stats.dedupe_skipped

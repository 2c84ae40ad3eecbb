"""Many streams over several connections, against a feed that enforces an exchange's caps
(streams per connection, connections per second with 429 + Retry-After) and a real broker:
every stream's frames reach Kafka exactly once, one connection lost is recovered alone and its
gap record names that connection's streams."""

from __future__ import annotations

import json
import logging
from collections import Counter
from typing import Any

import pytest

from ws2kafka.bridge.service import Bridge
from ws2kafka.bridge.stats import ConnectionState
from ws2kafka.devstack.harness import bridge_spec, new_topic, run_until, value_of
from ws2kafka.devstack.kafka import KafkaBroker
from ws2kafka.devstack.stream_feed import CappedStreamFeed

pytestmark = pytest.mark.kafka

STREAMS = [f"s{index:04d}" for index in range(2000)]
PER_STREAM = 5
TEMPLATE = '{"method":"SUBSCRIBE","params":{streams},"id":{n}}'


def spec(kafka: KafkaBroker, url: str, topic: str, **fields: Any) -> Any:
    return bridge_spec(
        kafka,
        url,
        topic,
        streams={
            "names": STREAMS,
            "maxPerConnection": 200,
            "subscribeTemplate": TEMPLATE,
            "maxPerMessage": 100,
        },
        subscription={"success": [{"pointer": "/result", "isNull": True}]},
        messages={"rules": [{"name": "ack", "match": [{"pointer": "/result", "isNull": True}]}]},
        kafka={"key": {"source": "jsonPointer", "pointer": "/stream"}},
        buffer={"maxMessages": 20_000},
        **fields,
    )


def exactly_once(kafka: KafkaBroker, topic: str) -> None:
    """Every (stream, seq) in the topic once, and nothing else."""
    messages = kafka.consume_all(topic, expected=len(STREAMS) * PER_STREAM, timeout=60)
    seen = Counter(
        (frame["stream"], frame["seq"]) for frame in map(json.loads, map(value_of, messages))
    )
    expected = {(stream, seq) for stream in STREAMS for seq in range(1, PER_STREAM + 1)}
    assert set(seen) == expected
    assert max(seen.values()) == 1, "a frame twice"


async def test_capped_connections_under_the_connect_rate_carry_every_stream_once(
    kafka: KafkaBroker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="ws2kafka")
    topic, gap_topic = new_topic(kafka), new_topic(kafka)
    async with CappedStreamFeed(
        max_per_connection=200, connects=4, per_seconds=1, per_stream=PER_STREAM
    ) as feed:
        bridge = Bridge(
            spec(
                kafka,
                feed.url,
                topic,
                connectRate={"connects": 2, "perSeconds": 1},
                gaps={"record": True, "topic": gap_topic},
            ),
            name="capped",
        )
        total = len(STREAMS) * PER_STREAM

        def all_delivered_then_one_dropped() -> bool:
            stats = bridge.stats
            if stats.delivered < total or stats.state is not ConnectionState.CONNECTED:
                return False
            if feed.accepted == 10:
                feed.drop("s0500")  # the connection of streams 400..599
                return False
            return stats.reconnects == 1 and bridge.connections()["connected"] == 10

        summary = await run_until(
            bridge, all_delivered_then_one_dropped, "every frame, one drop, recovered", 90
        )
    assert len(bridge.links) == 10
    assert feed.capped == 0, "no connection carried more than the cap"
    assert feed.refused_429 == 0, "the connect rate kept under the server's limit"
    assert feed.accepted == 11, "only the dropped connection came back"
    assert bridge.stats.gaps == 1
    assert summary.balanced, summary
    assert bridge.stats.subscription_failures == 0
    exactly_once(kafka, topic)
    dropped_gap_names_only_its_streams(kafka, gap_topic, bridge)
    (line,) = [r.getMessage() for r in caplog.records if "gap of " in r.getMessage()]
    first_ten = ", ".join(STREAMS[400:410])
    assert f"on connection 2 (streams {first_ten} and 190 more) between connection" in line


def dropped_gap_names_only_its_streams(kafka: KafkaBroker, topic: str, bridge: Bridge) -> None:
    """The one gap record is connection 2's, with all of its 200 streams and no others;
    ``status.lastGap`` names the first ten of them."""
    (record,) = kafka.consume_all(topic, expected=1)
    assert ("ws2kafka.control", b"gap") in (record.headers() or [])
    gap = json.loads(value_of(record))
    assert (gap["type"], gap["source"], gap["connectionIndex"]) == ("gap", "capped", 2)
    assert gap["streams"] == STREAMS[400:600]
    assert gap["streamCount"] == 200
    last_gap = bridge.stats.last_gap
    assert last_gap is not None
    status = last_gap.to_status()
    assert (status["connectionIndex"], status["streams"]) == (2, STREAMS[400:410])
    assert {k: v for k, v in gap.items() if k not in ("type", "streams")} == {
        k: v for k, v in status.items() if k != "streams"
    }


async def test_a_429_holds_every_connection_back_and_they_all_get_through(
    kafka: KafkaBroker,
) -> None:
    """No connectRate: ten connections at once against a limit of four per second. The
    refused ones wait the server's Retry-After, all of them, and then get through."""
    topic = new_topic(kafka)
    async with CappedStreamFeed(
        max_per_connection=200, connects=4, per_seconds=1, per_stream=PER_STREAM, retry_after=1
    ) as feed:
        bridge = Bridge(spec(kafka, feed.url, topic), name="rushed")
        total = len(STREAMS) * PER_STREAM
        summary = await run_until(
            bridge, lambda: bridge.stats.delivered == total, "every frame", 90
        )
    assert feed.refused_429 > 0, "the rush was refused"
    assert bridge.connections()["connected"] == 10
    assert feed.capped == 0
    assert summary.balanced, summary
    exactly_once(kafka, topic)

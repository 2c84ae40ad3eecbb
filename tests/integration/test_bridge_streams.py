"""Many streams over several connections, against a feed that enforces an exchange's caps
(streams per connection, connections per second with 429 + Retry-After) and a real broker:
every stream's frames reach Kafka exactly once, one connection lost is recovered alone and its
gap record names that connection's streams; adding and removing streams while running
re-subscribes only the connections whose share changed, and loses nothing."""

from __future__ import annotations

import json
import logging
from collections import Counter
from typing import Any

import pytest

from ws2kafka.bridge.service import Bridge
from ws2kafka.bridge.stats import ConnectionState
from ws2kafka.devstack.harness import bridge_spec, new_topic, record_count, run_until, value_of
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


async def test_adding_and_removing_streams_re_subscribes_only_the_connections_they_change(
    kafka: KafkaBroker,
) -> None:
    """Three connections of 20 streams, paced frames. Adding 25 streams opens two new
    connections (the full ones are not touched); removing five streams of connection 0 and
    all five of connection 4 replaces 0 make-before-break and closes 4, the others untouched.
    Every frame the feed sent is in the topic once, the replaced and closed connections'
    included."""
    first = [f"s{index:02d}" for index in range(60)]
    added = [f"n{index:02d}" for index in range(25)]
    last = first[5:] + added[:20]
    topic = new_topic(kafka)

    def with_names(names: list[str]) -> Any:
        return bridge_spec(
            kafka,
            feed.url,
            topic,
            streams={"names": names, "maxPerConnection": 20, "subscribeTemplate": TEMPLATE},
            subscription={"success": [{"pointer": "/result", "isNull": True}]},
            messages={
                "rules": [{"name": "ack", "match": [{"pointer": "/result", "isNull": True}]}]
            },
            kafka={"key": {"source": "jsonPointer", "pointer": "/stream"}},
        )

    async with CappedStreamFeed(
        max_per_connection=20, connects=10, per_seconds=1, per_stream=150, pace=0.02
    ) as feed:
        bridge = Bridge(with_names(first), name="reshared")
        steps: list[str] = []

        def connected(count: int) -> bool:
            return (
                bridge.stats.state is ConnectionState.CONNECTED
                and bridge.connections()["connected"] == count
            )

        def change_while_streaming() -> bool:
            if not steps and connected(3) and bridge.stats.delivered > 600:
                assert bridge.reshare(with_names(first + added))
                steps.append("added")
            elif steps == ["added"] and feed.accepted == 5 and connected(5):
                assert bridge.reshare(with_names(last))
                steps.append("removed")
            elif steps == ["added", "removed"] and feed.accepted == 6 and len(feed.live) == 4:
                steps.append("replaced")
            sent = feed.sent
            finished = all(sent.get(stream) == 150 for stream in last)
            return len(steps) == 3 and finished and bridge.stats.delivered == sum(sent.values())

        summary = await run_until(bridge, change_while_streaming, "two changes, streamed", 90)
    assert feed.subscriptions[:3] == [first[:20], first[20:40], first[40:]]
    assert feed.subscriptions[3:5] == [added[:20], added[20:]], "two new, the full untouched"
    assert feed.subscriptions[5:] == [first[5:20]], "only connection 0 was replaced"
    assert feed.refused_429 == 0
    assert [link.share.index for link in bridge.links] == [0, 1, 2, 3]
    assert (bridge.stats.reconnects, bridge.stats.gaps, bridge.stats.rotations) == (0, 0, 1)
    assert summary.balanced, summary
    sent = feed.sent
    assert 0 < sent["s00"] < 150, "a removed stream stopped midway"
    messages = kafka.consume_all(topic, expected=sum(sent.values()), timeout=60)
    seen = Counter(
        (frame["stream"], frame["seq"]) for frame in map(json.loads, map(value_of, messages))
    )
    assert set(seen) == {(s, seq) for s, count in sent.items() for seq in range(1, count + 1)}
    assert max(seen.values()) == 1, "a frame twice"
    assert record_count(kafka, topic) == sum(sent.values())

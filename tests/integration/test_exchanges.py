"""The exchange examples are tests: each ``examples/*.yaml`` of an exchange runs, unchanged
but for its URL, broker, topics and scaled-down timings, against a local feed that speaks
that exchange's documented protocol (``devstack/exchange_feeds.py``), into the real broker.

For each: every data frame reaches Kafka exactly once, in order (split and routed where the
example says so); no acknowledgement, ping, pong, heartbeat or notice reaches a data topic;
the notices the example keeps are in its control topic; the replies and heartbeats the
exchange demands came in time (the feed closes the connection otherwise, and counts what it
got); the forced disconnect is survived. And a subscription the exchange refuses shows as
``SubscriptionRejected`` with the exchange's own words, in the stats and in the status.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from ws2kafka.bridge.config import WebSocketSourceSpec, parse_spec
from ws2kafka.bridge.framing import HEADER_RULE, lookup
from ws2kafka.bridge.service import Bridge, ExitCode
from ws2kafka.bridge.subscription import SubscriptionState
from ws2kafka.devstack.exchange_feeds import (
    BinanceFeed,
    BitfinexFeed,
    BybitFeed,
    CoinbaseFeed,
    DeribitFeed,
    ExchangeFeed,
    HtxFeed,
    KrakenFeed,
    OkxFeed,
)
from ws2kafka.devstack.harness import (
    RecordingReporter,
    headers_of,
    new_topic,
    record_count,
    run_to_end,
    run_until,
    value_of,
)
from ws2kafka.devstack.kafka import KafkaBroker

pytestmark = pytest.mark.kafka

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

#: Keepalive obligations the last connection must meet before the bridge is stopped: with a
#: ping or heartbeat every 0.1 s, 12 of them outlast the feed's 1 s deadline.
KEEPALIVES = 12

#: The client heartbeat interval the examples' 20 s is scaled down to (the feeds' deadline: 1 s).
HEARTBEAT_SECONDS = 0.1


@dataclass(frozen=True)
class Exchange:
    """One example and the feed that imitates its exchange."""

    example: str
    feed: type[ExchangeFeed]
    rules: frozenset[str]
    """The example's rules (and the subscription's answers) that must have matched."""
    bad: tuple[str, str]
    """A replacement in the subscribe messages that asks for an instrument the exchange does
    not know."""
    routed_by: str | None = None
    """The field of a record whose value names its routed topic (``<topic>.<value>``)."""
    replies: bool = False
    """The example answers the server's application pings."""

    @property
    def name(self) -> str:
        return self.example.removesuffix(".yaml")


EXCHANGES = [
    Exchange(
        "binance-trades.yaml",
        BinanceFeed,
        frozenset({"subscription"}),
        ("btcusdt@trade", "nosuchpair@trade"),
    ),
    Exchange(
        "coinbase-level2.yaml",
        CoinbaseFeed,
        frozenset({"subscription", "heartbeat"}),
        ("BTC-USD", "BTC-XYZ"),
    ),
    Exchange(
        "okx-trades.yaml",
        OkxFeed,
        frozenset({"subscription", "pong", "notice"}),
        ("ETH-USDT", "NOPE-USDT"),
        routed_by="instId",
    ),
    Exchange(
        "htx-trades.yaml",
        HtxFeed,
        frozenset({"subscription", "ping"}),
        ("btcusdt", "nosuchpair"),
        replies=True,
    ),
    Exchange(
        "bybit-trades.yaml",
        BybitFeed,
        frozenset({"subscription", "pong"}),
        ("ETHUSDT", "NOPEUSDT"),
    ),
    Exchange(
        "kraken-trades.yaml",
        KrakenFeed,
        frozenset({"subscription", "heartbeat", "status"}),
        ("ETH/USD", "XBT/EUR"),
    ),
    Exchange(
        "deribit-trades.yaml",
        DeribitFeed,
        frozenset({"subscription", "test-request", "heartbeat", "test-result", "heartbeat-set"}),
        ("BTC-PERPETUAL", "NOPE-PERPETUAL"),
        replies=True,
    ),
    Exchange(
        "bitfinex-trades.yaml",
        BitfinexFeed,
        frozenset({"subscription", "heartbeat", "info"}),
        ("tBTCUSD", "tNOPE"),
    ),
]


def example_spec(
    exchange: Exchange,
    url: str,
    kafka: KafkaBroker,
    topic: str,
    *,
    client: str = "picows",
    refused: bool = False,
    careless: bool = False,
) -> WebSocketSourceSpec:
    """The example's spec, pointed at the local feed and broker: its topics renamed after
    ``topic`` (routing template and pattern included), reconnects fast, its client heartbeat
    scaled down, ``connection.client`` set. ``refused``: it subscribes to an instrument the
    exchange does not know, and gives up when refused (so the rejection is the bridge's last
    word). ``careless``: without its client heartbeat and the rules that reply to pings."""
    document = yaml.safe_load((EXAMPLES / exchange.example).read_text())
    spec: dict[str, Any] = document["spec"]
    connection = spec.setdefault("connection", {})
    connection["client"] = client
    if careless:
        connection.pop("heartbeat", None)
        rules = spec["messages"]["rules"]
        spec["messages"]["rules"] = [rule for rule in rules if "reply" not in rule]
    if refused:
        old, new = exchange.bad
        subscribe = [message.replace(old, new) for message in spec["subscribe"]]
        assert subscribe != spec["subscribe"], exchange.bad
        spec["subscribe"] = subscribe
        spec["subscription"]["onFailure"] = "giveUp"
    kafka_spec = spec["kafka"]
    original = kafka_spec["topic"]
    kafka_spec.update(bootstrapServers=kafka.bootstrap_servers, topic=topic)
    routing = kafka_spec.get("routing")
    if routing is not None:
        routing["template"] = routing["template"].replace(original, topic)
        routing["allowed"] = routing["allowed"].replace(original, topic)
    messages = spec.get("messages", {})
    if "controlTopic" in messages:
        messages["controlTopic"] = f"{topic}-control"
    heartbeat = connection.get("heartbeat")
    if heartbeat is not None:
        heartbeat["intervalSeconds"] = HEARTBEAT_SECONDS
    spec.update(
        url=url,
        reconnect={"initialDelaySeconds": 0.05, "maxDelaySeconds": 0.2},
        drainTimeoutSeconds=20,
    )
    return parse_spec(spec)


def expected_records(spec: WebSocketSourceSpec, frames: list[str]) -> list[bytes]:
    """What the data topics must hold for these data frames: each frame, or with
    ``kafka.split`` each element of its array as compact JSON."""
    if spec.kafka.split is None:
        return [frame.encode() for frame in frames]
    records: list[bytes] = []
    for frame in frames:
        elements = lookup(json.loads(frame), spec.kafka.split.pointer)
        assert isinstance(elements, list), frame
        records.extend(
            json.dumps(element, separators=(",", ":"), ensure_ascii=False).encode()
            for element in elements
        )
    return records


def by_topic(exchange: Exchange, topic: str, records: list[bytes]) -> dict[str, list[bytes]]:
    """The records each data topic must hold, in order: all in ``topic``, or routed."""
    topics: dict[str, list[bytes]] = {}
    for record in records:
        name = topic
        if exchange.routed_by is not None:
            name = f"{topic}.{json.loads(record)[exchange.routed_by]}"
        topics.setdefault(name, []).append(record)
    return topics


@pytest.mark.parametrize("exchange", EXCHANGES, ids=[exchange.name for exchange in EXCHANGES])
async def test_the_example_streams_every_data_frame_once_and_keeps_the_connection(
    kafka: KafkaBroker, exchange: Exchange, client: str
) -> None:
    topic = new_topic(kafka)
    async with exchange.feed() as feed:
        spec = example_spec(exchange, feed.url, kafka, topic, client=client)
        bridge = Bridge(spec, name=exchange.name)

        def streamed_and_kept_alive() -> bool:
            conns = feed.connections
            return (
                len(conns) > feed.disconnects
                and conns[-1].data_sent == feed.frames_per_connection
                and conns[-1].keepalives >= KEEPALIVES
                and bridge.stats.delivered >= len(expected_records(spec, feed.data_frames))
            )

        summary = await run_until(
            bridge, streamed_and_kept_alive, "every frame delivered, kept alive", timeout=40
        )

    # the feed's side: subscribed on every connection, every obligation met in time
    assert len(feed.connections) == feed.disconnects + 1
    for conn in feed.connections:
        assert conn.subscribed.is_set()
        assert conn.rejected is None
        assert conn.unexpected == []
        assert conn.missed is None, conn.missed
        assert conn.keepalives >= 1
    assert [conn.forced for conn in feed.connections] == [True] * feed.disconnects + [False]
    assert (summary.exit_code, summary.reconnects) == (ExitCode.OK, feed.disconnects)
    assert summary.balanced
    # the bridge's side: the rules matched what the exchange sent, replies went out
    assert {rule for rule, _ in bridge.stats.rule_matches} == exchange.rules
    assert bridge.stats.subscription == SubscriptionState.SUBSCRIBED
    if exchange.replies:
        assert all(conn.answered >= 1 for conn in feed.connections)
        assert bridge.stats.replies_sent >= sum(conn.answered for conn in feed.connections)
    # Kafka: every data frame exactly once and in order, in the topic it belongs to
    expected = by_topic(exchange, topic, expected_records(spec, feed.data_frames))
    assert len(expected) == (2 if exchange.routed_by else 1)
    for name, records in expected.items():
        assert [value_of(m) for m in kafka.consume_all(name, expected=len(records))] == records
        assert record_count(kafka, name) == len(records)
    if exchange.routed_by is not None:
        assert record_count(kafka, topic) == 0
        assert bridge.stats.routed_topics == set(expected)
    # the notices the example keeps, in its control topic with the rule that took them
    control_topic = spec.messages.control_topic
    if control_topic is None:
        assert feed.notices == []
    else:
        kept = kafka.consume_all(control_topic, expected=len(feed.notices))
        assert [value_of(m).decode() for m in kept] == feed.notices
        rules = {rule.name for rule in spec.messages.rules}
        assert all(headers_of(m)[HEADER_RULE].decode() in rules for m in kept)
        assert record_count(kafka, control_topic) == len(feed.notices)


@pytest.mark.parametrize("exchange", EXCHANGES, ids=[exchange.name for exchange in EXCHANGES])
async def test_a_refused_subscription_shows_as_rejected_in_the_servers_words(
    kafka: KafkaBroker, exchange: Exchange
) -> None:
    topic = new_topic(kafka)
    async with exchange.feed() as feed:
        spec = example_spec(exchange, feed.url, kafka, topic, refused=True)
        reporter = RecordingReporter()
        bridge = Bridge(spec, name=exchange.name, reporter=reporter)
        summary = await run_to_end(bridge, timeout=30)
    [conn] = feed.connections
    assert conn.rejected is not None
    assert not conn.subscribed.is_set()
    assert summary.exit_code == ExitCode.GAVE_UP
    assert bridge.stats.subscription == SubscriptionState.REJECTED
    assert bridge.stats.subscription_message == conn.rejected
    assert bridge.stats.subscription_failures == 1
    rejected = {"state": "SubscriptionRejected", "message": conn.rejected}
    assert reporter.statuses[-1]["subscription"] == {**rejected, "lastFailure": rejected}
    assert (summary.received, summary.delivered) == (summary.control, 0)
    assert record_count(kafka, topic) == 0


#: The exchanges that drop a client which does not keep its side: the application pings it
#: must answer (HTX, Deribit) or the heartbeat it must send (OKX, Bybit).
DEMANDING = [
    exchange
    for exchange in EXCHANGES
    if exchange.replies or exchange.name in {"okx-trades", "bybit-trades"}
]


@pytest.mark.parametrize("exchange", DEMANDING, ids=[exchange.name for exchange in DEMANDING])
async def test_without_its_replies_and_heartbeat_the_exchange_drops_the_connection(
    kafka: KafkaBroker, exchange: Exchange
) -> None:
    """The other side of the first test: the feeds do enforce their deadlines, so a
    connection they kept open proves the replies and heartbeats came in time."""
    topic = new_topic(kafka)
    async with exchange.feed(disconnects=0) as feed:
        spec = example_spec(exchange, feed.url, kafka, topic, careless=True)
        bridge = Bridge(spec, name=exchange.name)
        await run_until(  # closed by the feed, before the bridge's own stop closes it
            bridge,
            lambda: bool(feed.connections) and feed.connections[0].close_code is not None,
            "the feed drops the connection",
        )
    missed = feed.connections[0].missed
    assert missed is not None
    assert missed.startswith("no answer to ping" if exchange.replies else "no client heartbeat")
    assert feed.connections[0].close_code == 4000
    assert bridge.stats.replies_sent == 0

"""What the WebSocket handshake and frames may bring: size and encoding violations close the
connection with the right code and the bridge goes on; subprotocols and compression are
negotiated as configured."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import pytest
from websockets.asyncio.server import ServerConnection

from ws2kafka.bridge.service import Bridge, ExitCode
from ws2kafka.devstack.feeds import (
    HOSTILE_FRAME_LIMIT,
    VIOLATIONS,
    HostileFeed,
    SequenceFeed,
)
from ws2kafka.devstack.harness import (
    bridge_spec,
    new_topic,
    record_count,
    run_until,
    seqs,
    value_of,
)
from ws2kafka.devstack.kafka import KafkaBroker

pytestmark = pytest.mark.kafka


@pytest.mark.parametrize(
    ("violation", "close_code"),
    list(VIOLATIONS.values()),
    ids=list(VIOLATIONS),
)
async def test_a_bad_frame_closes_with_its_code_and_the_bridge_reconnects(
    kafka: KafkaBroker,
    violation: Callable[[ServerConnection], Awaitable[None]],
    close_code: int,
    client: str,
) -> None:
    topic = new_topic(kafka)
    async with HostileFeed(violation, every=False) as feed:
        connection = {"client": client, "maxFrameBytes": HOSTILE_FRAME_LIMIT}
        spec = bridge_spec(kafka, feed.url, topic, connection=connection)
        bridge = Bridge(spec, name="badframe")
        summary = await run_until(bridge, lambda: bridge.stats.delivered >= 4, "4 records")
    assert feed.served[0].close_code == close_code  # what the server was told
    assert bridge.stats.close_codes == {close_code: 1}
    assert bridge.stats.errors == {"ConnectionClosedError": 1}
    assert (summary.exit_code, summary.reconnects) == (ExitCode.OK, 1)
    assert (summary.received, summary.delivered, summary.rejected) == (4, 4, 0)
    assert seqs(kafka, topic, 4) == [1, 2, 3, 4]
    assert record_count(kafka, topic) == 4


async def test_subprotocols_are_offered_and_the_negotiated_one_accepted(
    kafka: KafkaBroker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ws2kafka")
    topic = new_topic(kafka)
    async with SequenceFeed(count=3, subprotocols=["v2.feed"]) as feed:
        spec = bridge_spec(
            kafka, feed.url, topic, connection={"subprotocols": ["v1.feed", "v2.feed"]}
        )
        bridge = Bridge(spec, name="subproto")
        await run_until(bridge, lambda: bridge.stats.delivered >= 3, "3 records")
    conn = feed.connections[0]
    assert conn.headers["Sec-WebSocket-Protocol"] == "v1.feed, v2.feed"
    assert conn.subprotocol == "v2.feed"
    assert seqs(kafka, topic, 3) == [1, 2, 3]
    assert any(
        r.getMessage().startswith("subproto: connected to")
        and r.getMessage().endswith("subprotocol v2.feed)")
        for r in caplog.records
    )


@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
@pytest.mark.parametrize("compression", [True, False], ids=["deflate", "plain"])
async def test_a_fragmented_message_becomes_one_record_as_sent(
    kafka: KafkaBroker, client: str, compression: bool, binary: bool
) -> None:
    """Continuation frames (each compressed on its own under permessage-deflate) are
    assembled into the message before the bridge sees it, with both clients."""
    topic = new_topic(kafka)
    async with SequenceFeed(count=20, pad=300, fragments=4, binary=binary) as feed:
        spec = bridge_spec(
            kafka, feed.url, topic, connection={"compression": compression, "client": client}
        )
        bridge = Bridge(spec, name="fragments")
        summary = await run_until(bridge, lambda: bridge.stats.delivered >= 20, "20 records")
    assert summary.rejected == 0
    messages = kafka.consume_all(topic, expected=20)
    sent = [feed.frame(n) for n in range(1, 21)]
    assert [value_of(m) for m in messages] == [
        f if isinstance(f, bytes) else f.encode() for f in sent
    ]


@pytest.mark.parametrize("compression", [True, False])
async def test_permessage_deflate_is_negotiated_only_when_compression_is_on(
    kafka: KafkaBroker, compression: bool
) -> None:
    topic = new_topic(kafka)
    async with SequenceFeed(count=3, pad=500) as feed:
        spec = bridge_spec(kafka, feed.url, topic, connection={"compression": compression})
        bridge = Bridge(spec, name="deflate")
        await run_until(bridge, lambda: bridge.stats.delivered >= 3, "3 records")
    conn = feed.connections[0]
    if compression:
        assert "permessage-deflate" in conn.headers["Sec-WebSocket-Extensions"]
        assert (conn.extensions or "").startswith("permessage-deflate")
    else:
        assert "Sec-WebSocket-Extensions" not in conn.headers
        assert conn.extensions is None
    assert seqs(kafka, topic, 3) == [1, 2, 3]
    # the payload is produced as sent, whatever the wire carried
    assert bridge.stats.received_bytes == sum(len(feed.frame(n)) for n in (1, 2, 3))

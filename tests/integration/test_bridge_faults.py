"""The bridge under faults: Kafka outages, no Kafka at all, stops at awkward moments, records
Kafka refuses, and the summary and status reports that tell an operator about it."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from ws2kafka.bridge.reporting import StatusSnapshot
from ws2kafka.bridge.service import Bridge, ExitCode
from ws2kafka.bridge.stats import ConnectionState
from ws2kafka.devstack.feeds import SequenceFeed
from ws2kafka.devstack.harness import (
    RecordingReporter,
    bridge_spec,
    new_topic,
    record_count,
    run_until,
    seqs,
)
from ws2kafka.devstack.kafka import KafkaBroker
from ws2kafka.devstack.processes import free_port
from ws2kafka.devstack.waiting import until

#: librdkafka retries a lost broker with backoff up to 10 s by default; tests wait less.
FAST_RECONNECT = {"reconnect.backoff.max.ms": "500"}


def drop_lines(caplog: pytest.LogCaptureFixture, name: str) -> list[int]:
    """The counts of the ``frames dropped`` rate lines that bridge ``name`` logged."""
    pattern = re.compile(rf"^{name}: (\d+) frames dropped in the last")
    matches = (pattern.match(record.getMessage()) for record in caplog.records)
    return [int(match.group(1)) for match in matches if match]


@pytest.mark.kafka
@pytest.mark.parametrize("outage", ["stop", "kill"])
async def test_kafka_outage_under_block_pauses_reading_then_delivers_every_frame_once(
    kafka: KafkaBroker, outage: str
) -> None:
    """The broker shut down, or killed with SIGKILL, mid-stream, then restarted."""
    topic = new_topic(kafka)
    async with SequenceFeed(pad=100, ping_every=0.1) as feed:
        feed.send_up_to(5000)
        spec = bridge_spec(
            kafka,
            feed.url,
            topic,
            buffer={"maxMessages": 2000},
            connection={"pingIntervalSeconds": 0.2, "pingTimeoutSeconds": 1},
            kafka={"properties": FAST_RECONNECT},
        )
        bridge = Bridge(spec, name="outage")
        stats = bridge.stats
        task = asyncio.create_task(bridge.run())
        try:
            await until(lambda: stats.delivered == 5000, 20, "5000 records before the outage")
            await asyncio.to_thread(getattr(kafka, outage))
            try:
                feed.send_up_to(12_000)
                await until(lambda: bridge.paused() and feed.sent == 12_000, 20, "a full buffer")
                assert (stats.received, stats.held, stats.delivered) == (7000, 2000, 5000)
                pongs_in_outage = feed.connections[0].pongs
            finally:
                await asyncio.to_thread(kafka.restart)
            # the 5000 frames that waited in TCP are read now, and pongs flow again
            await until(
                lambda: stats.delivered == 12_000 and feed.connections[0].pongs > pongs_in_outage,
                20,
                "every frame delivered and a pong after the outage",
            )
        finally:
            bridge.stop()
        summary = await asyncio.wait_for(task, 60)
    assert summary.exit_code == ExitCode.OK
    assert (summary.received, summary.delivered, summary.undelivered) == (12_000, 12_000, 0)
    # one WebSocket connection all along: the pause dropped nothing and no ping timed out
    assert (len(feed.connections), stats.reconnects, stats.errors) == (1, 0, {})
    assert seqs(kafka, topic, 12_000) == list(range(1, 12_001))
    assert record_count(kafka, topic) == 12_000


@pytest.mark.kafka
async def test_kafka_outage_under_drop_policies_counts_and_logs_every_drop(
    kafka: KafkaBroker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ws2kafka")
    sent, buffered = 3000, 500
    window = buffered // 10  # the part of a dropOldest buffer that sits inside the producer
    topics = {policy: new_topic(kafka) for policy in ("dropNewest", "dropOldest")}
    await asyncio.to_thread(kafka.stop)
    restarted = False
    try:
        async with SequenceFeed(count=sent) as newest, SequenceFeed(count=sent) as oldest:
            bridges = {
                policy: Bridge(
                    bridge_spec(
                        kafka,
                        feed.url,
                        topics[policy],
                        buffer={"maxMessages": buffered, "overflow": policy},
                        kafka={"properties": FAST_RECONNECT},
                    ),
                    name=policy,
                )
                for policy, feed in (("dropNewest", newest), ("dropOldest", oldest))
            }
            tasks = [asyncio.create_task(bridge.run()) for bridge in bridges.values()]
            try:
                await until(
                    lambda: all(b.stats.received == sent for b in bridges.values()),
                    20,
                    "every frame read while Kafka is away",
                )
                for bridge in bridges.values():
                    assert (bridge.stats.held, bridge.stats.delivered) == (buffered, 0)
                    assert bridge.stats.state is ConnectionState.CONNECTED
                assert bridges["dropNewest"].stats.dropped_newest == sent - buffered
                assert bridges["dropOldest"].stats.dropped_oldest == sent - buffered
                await asyncio.to_thread(kafka.restart)
                restarted = True
                await until(
                    lambda: all(b.stats.delivered == buffered for b in bridges.values()),
                    20,
                    "the buffers delivered",
                )
            finally:
                for bridge in bridges.values():
                    bridge.stop()
                summaries = await asyncio.wait_for(asyncio.gather(*tasks), 30)
    finally:
        if not restarted:
            await asyncio.to_thread(kafka.restart)
    for summary in summaries:
        assert summary.exit_code == ExitCode.OK
        assert (summary.received, summary.delivered, summary.dropped) == (3000, 500, 2500)
        assert summary.undelivered == 0
    # dropNewest keeps the oldest frames; dropOldest the window already inside the producer,
    # then the newest ones
    assert seqs(kafka, topics["dropNewest"], buffered) == list(range(1, buffered + 1))
    kept_newest = list(range(sent - (buffered - window) + 1, sent + 1))
    assert seqs(kafka, topics["dropOldest"], buffered) == list(range(1, window + 1)) + kept_newest
    assert [record_count(kafka, topic) for topic in topics.values()] == [buffered, buffered]
    # a rate, not a line per drop: 2500 drops in one line (a second only if 10 s passed)
    for policy in bridges:
        counts = drop_lines(caplog, policy)
        assert sum(counts) == sent - buffered
        assert 1 <= len(counts) <= 2


@pytest.mark.parametrize(
    ("overflow", "frames", "buffered"),
    [("block", 200, 1000), ("dropOldest", 3000, 3000)],
)
async def test_without_kafka_pongs_flow_state_stays_connected_and_the_drain_is_bounded(
    overflow: str, frames: int, buffered: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ws2kafka")
    nowhere = f"127.0.0.1:{free_port()}"  # no broker: every connection is refused
    async with SequenceFeed(count=frames, ping_every=0.05) as feed:
        spec = bridge_spec(
            nowhere,
            feed.url,
            "absent",
            buffer={"maxMessages": buffered, "overflow": overflow},
            drainTimeoutSeconds=1,
        )
        bridge = Bridge(spec, name="nokafka")
        task = asyncio.create_task(bridge.run())
        try:
            await until(
                lambda: bridge.stats.received == frames and feed.connections[0].pongs >= 10,
                20,
                "all frames read and 10 pongs",
            )
            assert bridge.stats.state is ConnectionState.CONNECTED
            assert (bridge.stats.connects, bridge.stats.errors) == (1, {})
            assert (bridge.stats.held, bridge.stats.delivered) == (frames, 0)
        finally:
            stopped_at = time.monotonic()
            bridge.stop()
            summary = await asyncio.wait_for(task, 30)
    drain_took = time.monotonic() - stopped_at
    assert summary.exit_code == ExitCode.UNDELIVERED
    assert (summary.received, summary.delivered, summary.undelivered) == (frames, 0, frames)
    assert 1.0 <= drain_took < 3.0  # drainTimeoutSeconds, not "until Kafka comes back"
    finals = [r.getMessage() for r in caplog.records if "final summary" in r.getMessage()]
    assert finals == [
        f"nokafka: final summary: received={frames} produced=0 failed=0 dropped=0 rejected=0 "
        f"undelivered={frames} reconnects=0"
    ]
    # librdkafka's own log goes through Python logging
    assert any(
        r.name == "ws2kafka.librdkafka" and "Connection refused" in r.getMessage()
        for r in caplog.records
    )


async def test_stop_while_block_pauses_reading_without_kafka_counts_all_it_read() -> None:
    nowhere = f"127.0.0.1:{free_port()}"
    async with SequenceFeed(count=3000) as feed:
        spec = bridge_spec(
            nowhere, feed.url, "absent", buffer={"maxMessages": 1000}, drainTimeoutSeconds=0.5
        )
        bridge = Bridge(spec, name="pausedstop")
        task = asyncio.create_task(bridge.run())
        await until(lambda: bridge.paused() and feed.sent == 3000, 20, "reading paused")
        assert (bridge.stats.received, bridge.stats.held) == (1000, 1000)
        bridge.stop()
        summary = await asyncio.wait_for(task, 20)
    # the stop wakes the paused reader; it reads what the feed had sent up to its close frame
    assert (summary.exit_code, summary.received, summary.undelivered) == (
        ExitCode.UNDELIVERED,
        3000,
        3000,
    )
    assert feed.connections[0].close_code == 1001


async def test_stop_during_the_handshake_returns_at_once() -> None:
    gate = asyncio.Event()
    requests: list[str] = []

    async def held(connection: ServerConnection, request: Request) -> None:
        requests.append(request.path)
        await gate.wait()

    async with serve(lambda ws: ws.wait_closed(), "127.0.0.1", 0, process_request=held) as server:
        url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/slow"
        spec = bridge_spec(
            f"127.0.0.1:{free_port()}", url, "absent", connection={"connectTimeoutSeconds": 60}
        )
        bridge = Bridge(spec, name="handshake")
        task = asyncio.create_task(bridge.run())
        await until(lambda: requests == ["/slow"], 10, "the upgrade request")
        stopped_at = time.monotonic()
        bridge.stop()
        summary = await asyncio.wait_for(task, 10)
        stop_took = time.monotonic() - stopped_at
        gate.set()  # the server answers now: nobody may be listening any more
    assert stop_took < 1.0
    assert summary.exit_code == ExitCode.OK
    assert (bridge.stats.connects, bridge.stats.received) == (0, 0)
    assert bridge.stats.state is ConnectionState.STOPPED


@pytest.mark.kafka
async def test_a_record_larger_than_kafka_accepts_is_refused_and_counted(
    kafka: KafkaBroker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ws2kafka")
    topic = new_topic(kafka)
    # within maxFrameBytes (1 MiB), above librdkafka's message.max.bytes (1,000,000)
    big = json.dumps({"seq": 2, "pad": "x" * 1_040_000})

    async def handler(ws: ServerConnection) -> None:
        for frame in ('{"seq": 1}', big, '{"seq": 3}'):
            await ws.send(frame)
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0) as server:
        url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        bridge = Bridge(bridge_spec(kafka, url, topic), name="big")
        summary = await run_until(bridge, lambda: bridge.stats.delivered >= 2, "2 records")
    assert summary.exit_code == ExitCode.OK
    assert (summary.received, summary.delivered, summary.rejected) == (3, 2, 1)
    assert (bridge.stats.refused, summary.undelivered) == (1, 0)
    assert seqs(kafka, topic, 2) == [1, 3]
    refusals = [r.getMessage() for r in caplog.records if "frames rejected" in r.getMessage()]
    assert len(refusals) == 1
    assert refusals[0].startswith("big: 1 frames rejected")
    assert f"Kafka refused a record of {len(big)} bytes" in refusals[0]


@pytest.mark.kafka
async def test_a_librdkafka_queue_smaller_than_the_buffer_loses_nothing(
    kafka: KafkaBroker,
) -> None:
    topic = new_topic(kafka)
    async with SequenceFeed(count=5000) as feed:
        spec = bridge_spec(
            kafka,
            feed.url,
            topic,
            buffer={"maxMessages": 1000},
            kafka={"properties": {"queue.buffering.max.messages": "50"}},
        )
        bridge = Bridge(spec, name="smallqueue")
        summary = await run_until(bridge, lambda: bridge.stats.delivered >= 5000, "5000 records")
    assert summary.exit_code == ExitCode.OK
    assert (summary.received, summary.delivered, summary.undelivered) == (5000, 5000, 0)
    assert seqs(kafka, topic, 5000) == list(range(1, 5001))
    assert record_count(kafka, topic) == 5000


def idle_summary(name: str, state: str) -> str:
    """The summary line of a bridge that never received a frame (Kafka is away here)."""
    return (
        rf"{name}: state={state} kafka=(KafkaConnecting|BrokersUnreachable) received=0 "
        r"\(\+0\) produced=0 failed=0 dropped=0 buffered=0 reconnects=0 last frame never"
    )


def summary_lines(caplog: pytest.LogCaptureFixture, name: str, state: str) -> list[str]:
    prefix = f"{name}: state={state} "
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith(prefix)]


async def test_the_summary_line_is_written_in_backoff_and_while_idle(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="ws2kafka")
    nowhere = f"127.0.0.1:{free_port()}"

    def busy(connection: ServerConnection, request: Request) -> Response:
        return Response(429, "slow down", Headers({"Retry-After": "30"}), b"")

    async with serve(lambda ws: ws.wait_closed(), "127.0.0.1", 0, process_request=busy) as server:
        url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        spec = bridge_spec(nowhere, url, "absent", reconnect={"maxDelaySeconds": 60})
        waiting = Bridge(spec, name="waiting", summary_interval=0.1)
        await run_until(
            waiting,
            lambda: len(summary_lines(caplog, "waiting", "Backoff")) >= 2,
            "2 summary lines in Backoff",
        )
    assert waiting.stats.connect_failures == 1  # Retry-After: 30 s of Backoff, no new attempt
    for line in summary_lines(caplog, "waiting", "Backoff"):
        assert re.fullmatch(idle_summary("waiting", "Backoff"), line), line

    async with SequenceFeed(count=0) as silent:  # connected, no data
        idle = Bridge(bridge_spec(nowhere, silent.url, "absent"), name="idle", summary_interval=0.1)
        await run_until(
            idle,
            lambda: len(summary_lines(caplog, "idle", "Connected")) >= 2,
            "2 summary lines while connected",
        )
    for line in summary_lines(caplog, "idle", "Connected"):
        assert re.fullmatch(idle_summary("idle", "Connected"), line), line


def numbered(n: int) -> str:
    return json.dumps({"seq": n})


@pytest.mark.kafka
async def test_state_reporter_gets_each_change_at_once_and_counters_at_its_interval(
    kafka: KafkaBroker,
) -> None:
    topic = new_topic(kafka)
    reporter = RecordingReporter(interval=1.0)
    connections = 0

    async def handler(ws: ServerConnection) -> None:
        nonlocal connections
        connections += 1
        first = 1 + 20 * (connections - 1)
        for seq in range(first, first + 20):
            await ws.send(numbered(seq))
        if connections == 1:
            await ws.close(1001, "maintenance")  # the first connection ends: Backoff
        await ws.wait_closed()

    def routine_reports() -> list[StatusSnapshot]:
        second_connect = [s for s in reporter.snapshots if s.state is ConnectionState.CONNECTED]
        return [s for s in second_connect if s.messages_produced == 40]

    async with serve(handler, "127.0.0.1", 0) as server:
        url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        bridge = Bridge(bridge_spec(kafka, url, topic), name="reported", reporter=reporter)
        summary = await run_until(
            bridge, lambda: len(routine_reports()) >= 2, "2 routine reports", timeout=20
        )
    snapshots = reporter.snapshots
    changes = [s for i, s in enumerate(snapshots) if i == 0 or s.state != snapshots[i - 1].state]
    states = [s.state.value for s in changes]
    assert states[:5] == ["Connecting", "Connected", "Backoff", "Connecting", "Connected"]
    assert states[-1] == "Stopped"
    for change in changes:  # reported as it happened, not at the next interval
        assert change.reported_at - change.since < reporter.interval / 2
    assert "ConnectionClosedOK: closed with 1001 maintenance" in (changes[2].last_error or "")
    first, second = routine_reports()[:2]
    assert second.reported_at - first.reported_at >= reporter.interval * 0.9
    assert (second.messages_received, second.reconnects, second.since) == (
        40,
        1,
        changes[4].since,  # no state change in between: a routine report
    )
    final = snapshots[-1]
    assert (final.messages_received, final.messages_produced) == (40, 40)
    assert summary.exit_code == ExitCode.OK
    assert seqs(kafka, topic, 40) == list(range(1, 41))


@pytest.mark.kafka
async def test_a_failing_state_reporter_does_not_stop_the_data_path(
    kafka: KafkaBroker, caplog: pytest.LogCaptureFixture
) -> None:
    topic = new_topic(kafka)
    reporter = RecordingReporter(interval=0.05, fail=True)
    async with SequenceFeed(count=300, rate=1000) as feed:
        bridge = Bridge(bridge_spec(kafka, feed.url, topic), name="unreported", reporter=reporter)
        summary = await run_until(bridge, lambda: bridge.stats.delivered >= 300, "300 records")
    assert (summary.exit_code, summary.received, summary.delivered) == (ExitCode.OK, 300, 300)
    assert seqs(kafka, topic, 300) == list(range(1, 301))
    failures = [r for r in caplog.records if r.getMessage() == "unreported: status report failed"]
    assert len(failures) == len(reporter.snapshots) >= 3  # every report was tried, and failed

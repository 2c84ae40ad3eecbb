"""The pipeline without librdkafka: fatal producer errors, the backlog's age, accounting."""

from __future__ import annotations

import asyncio
import time

import pytest
from confluent_kafka import KafkaError, KafkaException
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ws2kafka.bridge.framing import Record
from ws2kafka.bridge.kafka_health import KafkaReason
from ws2kafka.bridge.pipeline import MARK_SECONDS
from ws2kafka.bridge.service import Bridge, ExitCode
from ws2kafka.bridge.stats import ConnectionState
from ws2kafka.devstack.harness import (
    RecordingSink,
    ScriptedConnection,
    bridge_spec,
    dropping_feed,
    run_to_end,
)
from ws2kafka.devstack.waiting import until

FRAMES: list[str | bytes] = [f'{{"seq":{n}}}' for n in range(1, 51)]


def bridge_with(
    sink: RecordingSink, frames: list[str | bytes] = FRAMES, **fields: object
) -> Bridge:
    spec = bridge_spec("127.0.0.1:1", "ws://127.0.0.1:1/x", "t", drainTimeoutSeconds=30, **fields)
    return Bridge(
        spec, name="p", opener=ScriptedConnection(frames).opener(), sink_factory=sink.attach
    )


async def test_a_fatal_producer_error_stops_the_bridge_at_once_and_counts_what_is_left() -> None:
    """librdkafka's fatal error reached nothing before: the drain then waited its whole
    timeout for deliveries that could never come. Now the bridge stops at once (not after
    the 30 s drain), counts the held records as undelivered and exits 4 (restart it)."""
    sink = RecordingSink(holding=True)
    bridge = bridge_with(sink)

    async def fail_when_all_handed() -> None:
        await until(lambda: sum(map(len, sink.batches)) == len(FRAMES), 10, "all handed over")
        sink.fatal("Inconsistent state: idempotence lost")

    started = time.monotonic()
    summary, _ = await asyncio.gather(bridge.run(), fail_when_all_handed())
    assert time.monotonic() - started < 10
    assert summary.exit_code == ExitCode.PRODUCER_FATAL
    assert (summary.received, summary.delivered, summary.undelivered) == (50, 0, 50)
    assert bridge.stats.last_error == "ProducerFatal: Inconsistent state: idempotence lost"
    assert bridge.kafka_verdict().reason is KafkaReason.PRODUCER_FATAL
    assert bridge.stats.state is ConnectionState.STOPPED
    assert sink.closed


async def test_a_fatal_error_raised_by_produce_is_not_lost_in_a_loop_callback() -> None:
    """produce() raising a fatal KafkaException from the settle callback used to go to
    asyncio's exception handler only, while the drain waited its timeout."""
    sink = RecordingSink()
    calls = 0
    original = sink.produce

    def produce(records: list[Record]) -> int:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise KafkaException(KafkaError(KafkaError._FATAL, "fenced", fatal=True))
        return original(records)

    sink.produce = produce  # type: ignore[method-assign]
    frames: list[str | bytes] = [f'{{"seq":{n}}}' for n in range(1, 2001)]
    summary = await run_to_end(bridge_with(sink, frames), timeout=15)
    assert summary.exit_code == ExitCode.PRODUCER_FATAL
    assert summary.received == summary.delivered + summary.undelivered
    assert summary.undelivered > 0


async def test_the_backlog_knows_the_age_of_the_oldest_unacknowledged_record() -> None:
    sink = RecordingSink(holding=True)
    bridge = bridge_with(sink)
    task = asyncio.create_task(bridge.run())
    await until(lambda: bridge.stats.held == len(FRAMES), 10, "all held")
    await asyncio.sleep(MARK_SECONDS * 4)
    backlog = bridge._pipeline.backlog()
    assert backlog.records == len(FRAMES)
    assert MARK_SECONDS * 3 <= backlog.oldest_seconds < 10
    sink.release()
    await until(lambda: bridge.stats.held == 0, 10, "all delivered")
    assert bridge._pipeline.backlog().oldest_seconds == 0.0
    bridge.stop()
    summary = await task
    assert (summary.delivered, summary.undelivered, summary.exit_code) == (50, 0, ExitCode.OK)


@pytest.mark.parametrize("fail", [False, True])
async def test_every_frame_is_accounted_for(fail: bool) -> None:
    sink = RecordingSink(fail=fail)
    bridge = bridge_with(sink)
    task = asyncio.create_task(bridge.run())
    await until(lambda: bridge.stats.settled == len(FRAMES), 10, "all settled")
    bridge.stop()
    summary = await task
    assert (summary.delivered, summary.failed) == ((0, 50) if fail else (50, 0))
    verdict = bridge.kafka_verdict()
    assert verdict.reason is (KafkaReason.DELIVERY_FAILING if fail else KafkaReason.PRODUCING)


class ScriptedSink(RecordingSink):
    """Each handed batch meets the next outcome of a script: delivered, failed, kept for
    ever (undelivered at the drain), taken only in part (librdkafka's queue full), or a
    fatal producer error."""

    def __init__(self, outcomes: list[str]) -> None:
        super().__init__(holding=True)
        self._outcomes = outcomes
        self._turn = 0

    def produce(self, records: list[Record]) -> int:
        outcome = self._outcomes[self._turn % len(self._outcomes)]
        self._turn += 1
        if outcome == "fatal":
            raise KafkaException(KafkaError(KafkaError._FATAL, "scripted", fatal=True))
        taken = records[: max(1, len(records) // 2)] if outcome == "partial" else records
        super().produce(taken)
        if outcome in ("deliver", "partial", "fail"):
            self.fail = outcome == "fail"
            assert self._loop is not None
            self._loop.call_soon(self.release)
        return len(taken)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    frames=st.integers(min_value=0, max_value=300),
    hostile_every=st.integers(min_value=0, max_value=7),
    outcomes=st.lists(
        st.sampled_from(["deliver", "deliver", "partial", "fail", "keep", "fatal"]),
        min_size=1,
        max_size=6,
    ),
    overflow=st.sampled_from(["block", "dropOldest", "dropNewest"]),
    max_messages=st.integers(min_value=1, max_value=64),
    stop_after=st.integers(min_value=0, max_value=300),
    drop_every=st.integers(min_value=0, max_value=60),
    callback=st.booleans(),
)
async def test_every_frame_is_accounted_for_whatever_happens(
    frames: int,
    hostile_every: int,
    outcomes: list[str],
    overflow: str,
    max_messages: int,
    stop_after: int,
    drop_every: int,
    callback: bool,
) -> None:
    """Random frames (some hostile), producer outcomes, overflow policies, connections that
    drop every few frames (the next one goes on), both ways of reading (``recv()``, and the
    callback picows uses) and stop times: while running and at the end, received ==
    delivered + failed + dropped + rejected + (held while running | undelivered at the
    end)."""
    script: list[str | bytes] = [
        b'{"T":Infinity,"seq":"\xc2\xb2"}' if hostile_every and n % hostile_every == 0 else f"{n}"
        for n in range(1, frames + 1)
    ]
    sink = ScriptedSink(outcomes)
    spec = bridge_spec(
        "127.0.0.1:1",
        "ws://127.0.0.1:1/x",
        "t",
        drainTimeoutSeconds=0.2,
        buffer={"maxMessages": max_messages, "overflow": overflow},
        kafka={"timestamp": {"source": "jsonPointer", "pointer": "/T"}},
        sequence={"pointer": "/seq"},
        reconnect={"initialDelaySeconds": 0.001, "maxDelaySeconds": 0.001},
    )
    opener = dropping_feed(script, drop_every=drop_every, callback=callback)
    bridge = Bridge(spec, name="p", opener=opener, sink_factory=sink.attach)
    stats = bridge.stats
    task = asyncio.create_task(bridge.run())

    def balanced() -> bool:
        return stats.received == (
            stats.delivered + stats.failed + stats.dropped + stats.rejected + stats.held
        )

    deadline = time.monotonic() + 5
    while (
        not task.done() and stats.received < min(stop_after, frames) and time.monotonic() < deadline
    ):
        assert balanced()
        await asyncio.sleep(0)
    bridge.stop()
    summary = await asyncio.wait_for(task, 10)
    assert summary.balanced, summary
    if bridge.kafka_verdict().reason is KafkaReason.PRODUCER_FATAL:
        expected_exit = ExitCode.PRODUCER_FATAL
    else:
        expected_exit = ExitCode.UNDELIVERED if summary.undelivered else ExitCode.OK
    assert summary.exit_code == expected_exit

"""ws2kafka hot path: the bridge's CPU per frame, without sockets, against produce() alone.

Run from the repository root: ``.venv/bin/python bench/hot_path.py [--output FILE]``.

The whole-system numbers (``bench/run.py``) say how fast the bridge is; this says where its
time goes. A real ``Bridge`` reads pre-made 200 B text frames from an in-memory connection
that hands them over in bursts (as a socket read delivers many frames at once) and produces
them with a real confluent-kafka producer whose broker is unreachable, so ``produce()`` only
queues, as it does on a healthy broker. The baseline, measured in the same run, is that
producer's ``produce()`` of the same records: what any bridge must pay. The difference is the
bridge's own Python work per frame; ``bridge_own`` measures it directly, with a producer that
acknowledges everything at once (``AcknowledgingSink``). Then its parts, one by one
(``timeit``). Costs are the loop thread's CPU time (``time.thread_time``), medians over
``--repeats`` runs, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

from websockets.exceptions import ConnectionClosedOK

from ws2kafka.bridge.config import WebSocketSourceSpec
from ws2kafka.bridge.flow import FlowControl
from ws2kafka.bridge.framing import Record, RecordBuilder, parse_json
from ws2kafka.bridge.intake import Intake
from ws2kafka.bridge.kafka_health import KafkaHealth
from ws2kafka.bridge.messages import MessageRules
from ws2kafka.bridge.pipeline import Pipeline
from ws2kafka.bridge.sequence import FrameChecks
from ws2kafka.bridge.service import Bridge
from ws2kafka.bridge.sink import KafkaSink
from ws2kafka.bridge.source import FrameConsumer, SourceConnection
from ws2kafka.bridge.stats import BridgeStats, LatencyHistogram
from ws2kafka.devstack.harness import bridge_spec
from ws2kafka.devstack.machine import describe, emit
from ws2kafka.devstack.waiting import until

#: A closed port: producing only queues, and nothing is ever delivered.
NO_BROKER = "127.0.0.1:1"
FRAME = ('{"seq":1,"price":"42012.50","qty":"0.015","side":"buy","pad":"' + "x" * 200)[:198] + '"}'


def numbered(seq: int) -> str:
    """FRAME with sequence number ``seq`` (what the sequence check expects of a real feed)."""
    return FRAME.replace('"seq":1,', f'"seq":{seq},', 1)


#: Frames a burst hands over without suspending (a 256 KiB socket read holds ~1,200).
BURST = 200


class Bursts:
    """An in-memory connection: ``frames`` frames, ``BURST`` at a time, then closed: copies of
    FRAME, or (``numbered``) frames numbered 1, 2, 3..., made before the clock starts, read by
    ``recv()`` per frame (the websockets client's way)."""

    subprotocol = None

    def __init__(self, frames: int, *, numbered_frames: bool = False) -> None:
        self._left = frames
        self._frames = [numbered(seq) for seq in range(frames, 0, -1)] if numbered_frames else []
        self.first_recv = 0.0

    @property
    def transport(self) -> Any:
        return self

    def abort(self) -> None:
        """Nothing to abort."""

    async def recv(self) -> str:
        if not self.first_recv:
            self.first_recv = time.thread_time()
        if self._left == 0:
            raise ConnectionClosedOK(None, None)
        self._left -= 1
        if self._left % BURST == 0:
            await asyncio.sleep(0)  # the end of a burst: the loop runs its callbacks
        return self._frames.pop() if self._frames else FRAME

    async def send(self, message: str) -> None:
        """No subscriptions here."""

    async def ping(self) -> Any:
        raise NotImplementedError

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Closed already."""


class CallbackBursts(Bursts):
    """The same frames handed over as picows hands them (``CallbackReading``), as bytes."""

    def __init__(self, frames: int, *, numbered_frames: bool = False) -> None:
        super().__init__(frames, numbered_frames=numbered_frames)
        self._payloads = [frame.encode() for frame in reversed(self._frames)]

    async def read_into(self, consumer: FrameConsumer, wait_for_room: Callable[[], Any]) -> None:
        """Each frame handed to the consumer as bytes, a burst at a time, then the loop runs
        its callbacks (a bridge from before the callback path only calls ``recv()``)."""
        payloads, plain = self._payloads, FRAME.encode()
        self.first_recv = time.thread_time()
        for start in range(0, self._left, BURST):
            for index in range(start, min(start + BURST, self._left)):
                if consumer(payloads[index] if payloads else plain, False):
                    await wait_for_room()
            await asyncio.sleep(0)
        self._left = 0
        raise ConnectionClosedOK(None, None)


#: Features that read the frame's JSON: a key and a sequence check (one parse per frame).
JSON_FIELDS: dict[str, Any] = {
    "kafka": {"key": {"source": "jsonPointer", "pointer": "/side"}},
    "sequence": {"pointer": "/seq"},
}
#: The same, plus the message rules an exchange needs (none of them matches a data frame,
#: as in a real feed: every rule is tried on every frame).
WITH_RULES: dict[str, Any] = {
    **JSON_FIELDS,
    "messages": {
        "controlTopic": "hot-control",
        "rules": [
            {
                "name": "ping",
                "match": [{"pointer": "/ping"}],
                "kind": "ping",
                "reply": '{"pong":{/ping}}',
            },
            {"name": "pong", "match": [{"text": "pong"}], "kind": "pong"},
            {
                "name": "ack",
                "match": [{"pointer": "/result", "isNull": True}, {"pointer": "/id"}],
                "kind": "acknowledgement",
            },
            {
                "name": "event",
                "match": [{"pointer": "/event", "oneOf": ["heartbeat", "systemStatus"]}],
                "kind": "heartbeat",
                "route": "control",
            },
        ],
    },
}
#: What each measured variant configures.
VARIANTS: dict[str, dict[str, Any]] = {
    "plain": {},
    "plainRecv": {},
    "jsonFields": JSON_FIELDS,
    "rules": WITH_RULES,
}


def spec(frames: int, features: dict[str, Any] | None = None) -> Any:
    """A bridge whose buffer and producer queue hold every frame: nothing waits for Kafka."""
    return bridge_spec(
        NO_BROKER,
        "ws://127.0.0.1:1",
        "hot",
        buffer={"maxMessages": frames + 1, "maxBytes": 1 << 33},
        drainTimeoutSeconds=0.1,
        reconnect={"maxAttempts": 1},
        **(features or {}),
    )


def record_builder(the_spec: Any) -> RecordBuilder:
    """The builder of a bridge's connection, as the bridge makes it."""
    return RecordBuilder(
        the_spec.kafka, source="hot", connection_id="c0", inflate=the_spec.connection.inflate
    )


async def bridge_per_frame(
    frames: int, features: dict[str, Any] | None = None, *, recv: bool = False
) -> float:
    """µs of the loop thread's CPU per frame from the first read to the last record handed to
    librdkafka (CPU, not wall time: on a shared machine the other processes' share would count);
    frames handed over by callback (picows), or (``recv``) by ``recv()`` (websockets)."""
    kind = Bursts if recv else CallbackBursts
    connection = kind(frames, numbered_frames=bool(features))

    async def opener(*_: object) -> SourceConnection:
        return connection

    bridge = Bridge(spec(frames, features), name="hot", opener=opener)
    task = asyncio.create_task(bridge.run())
    await until(
        lambda: bridge.stats.handed >= frames or task.done(), 600, "every frame", interval=0.001
    )
    elapsed = time.thread_time() - connection.first_recv
    bridge.stop()
    await task
    return elapsed / frames * 1e6


class AcknowledgingSink:
    """A producer that takes every record and acknowledges it at the next loop iteration,
    as an infinitely fast broker would: with it, the loop's CPU is the bridge's own work
    (reading, building, buffering, handing over, settling) without librdkafka's."""

    def __init__(
        self,
        pipeline: Pipeline,
        spec: WebSocketSourceSpec,
        stats: BridgeStats,
        health: KafkaHealth,
        name: str,
    ) -> None:
        self._pipeline, self._stats = pipeline, stats
        self._waiting: list[Record] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def produce(self, records: list[Record]) -> int:
        if not self._waiting:
            assert self._loop is not None
            self._loop.call_soon(self._acknowledge)
        self._waiting.extend(records)
        return len(records)

    def _acknowledge(self) -> None:
        waiting, self._waiting = self._waiting, []
        self._stats.delivered += len(waiting)
        self._stats.settled_bytes += sum(len(record.value) for record in waiting)
        self._pipeline.on_settled()

    def produce_control(self, topic: str | None, record: Record, on_delivery: Any) -> bool:
        return True

    def set_sasl_credentials(self, username: str, password: str) -> None:
        """The benchmark's spec has no SASL secret to rotate."""

    async def close(self) -> None:
        """Nothing to flush."""


async def bridge_own_per_frame(frames: int) -> float:
    """µs of the loop thread's CPU per frame, callback reading, with :class:`AcknowledgingSink`:
    the bridge's own work measured directly (not as the difference of two noisy numbers),
    with a buffer of the default size that deliveries keep emptying, as in a real bridge."""
    connection = CallbackBursts(frames)

    async def opener(*_: object) -> SourceConnection:
        return connection

    the_spec = bridge_spec(
        NO_BROKER, "ws://127.0.0.1:1", "hot", drainTimeoutSeconds=0.1, reconnect={"maxAttempts": 1}
    )
    bridge = Bridge(the_spec, name="hot", opener=opener, sink_factory=AcknowledgingSink)
    task = asyncio.create_task(bridge.run())
    await until(
        lambda: bridge.stats.delivered >= frames or task.done(), 600, "every frame", interval=0.001
    )
    elapsed = time.thread_time() - connection.first_recv
    bridge.stop()
    await task
    return elapsed / frames * 1e6


def produce_per_frame(frames: int) -> float:
    """µs of CPU per ``produce()`` of the bridge's own records, on the bridge's own producer
    config (in this thread: librdkafka's own threads are not the bridge's work either way)."""
    the_spec = spec(frames)
    builder = record_builder(the_spec)
    now_us = time.time_ns() // 1000
    records = [builder.build(FRAME.encode(), False, now_us, seq) for seq in range(1, frames + 1)]
    stats = BridgeStats()
    sink = KafkaSink(
        the_spec.kafka,
        stats,
        KafkaHealth(),
        window=frames,
        max_bytes=1 << 33,
        client_id="hot-baseline",
        on_settled=lambda: None,
        on_fatal=lambda _: None,
        on_refused=lambda _: None,
    )
    started = time.thread_time()
    for index in range(0, frames, BURST):
        sink.produce(records[index : index + BURST])
    elapsed = time.thread_time() - started
    asyncio.run(sink.close())
    return elapsed / frames * 1e6


def parts() -> dict[str, float]:
    """µs per call of each step the read loop takes per frame."""
    the_spec = spec(10)
    builder = record_builder(the_spec)
    payload = FRAME.encode()
    record = builder.build(payload, False, 1_764_300_000_000_000, 1)
    flow = FlowControl(the_spec.buffer, BridgeStats())
    histogram = LatencyHistogram()

    def admit() -> None:
        flow.admit(record)
        flow.take()

    rules_spec = spec(10, WITH_RULES)
    stats = BridgeStats()
    intake = Intake(
        rules_spec,
        record_builder(rules_spec),
        stats,
        rules=MessageRules(rules_spec.messages.rules),
        router=None,
        checks=FrameChecks(rules_spec.sequence, None, stats, lambda gap: None),
        watch=None,
    )
    number = 200_000
    payloads = iter([numbered(seq).encode() for seq in range(1, 5 * number + 1)])
    steps = {
        "text_frame_encode": lambda: FRAME.encode(),
        "json_parse": lambda: parse_json(payload),
        "intake_take_with_rules": lambda: intake.take(
            next(payloads), False, 1_764_300_000_000_000, 1
        ),
        "record_builder_build": lambda: builder.build(payload, False, 1_764_300_000_000_000, 1),
        "flow_admit_and_take": admit,
        "clocks": lambda: (time.time_ns(), time.monotonic()),
        "latency_histogram_observe": lambda: histogram.observe(0.004),
    }
    return {
        name: min(timeit.repeat(step, number=number, repeat=5)) / number * 1e6
        for name, step in steps.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=200_000, help="frames per run")
    parser.add_argument("--repeats", type=int, default=5, help="runs of each measurement")
    parser.add_argument("--output", type=Path, help="write the JSON here too")
    args = parser.parse_args()
    runs: dict[str, list[float]] = {name: [] for name in VARIANTS}
    produce: list[float] = []
    own: list[float] = []
    for _ in range(args.repeats):  # interleaved: the machine's noise hits every variant alike
        for name, features in VARIANTS.items():
            run = bridge_per_frame(args.frames, features, recv=name == "plainRecv")
            runs[name].append(asyncio.run(run))
        produce.append(produce_per_frame(args.frames))
        own.append(asyncio.run(bridge_own_per_frame(args.frames)))
    bridge = runs["plain"]
    medians = {name: statistics.median(values) for name, values in runs.items()}
    report = {
        "machine": describe(),
        "command": " ".join(sys.argv),
        "frame_bytes": len(FRAME),
        "us_per_frame": {
            "bridge_read_loop": statistics.median(bridge),
            "produce_baseline": statistics.median(produce),
            "bridge_overhead": statistics.median(bridge) - statistics.median(produce),
            "bridge_own": statistics.median(own),
        },
        "us_per_frame_by_features": medians,
        "rules_cost_us": medians["rules"] - medians["jsonFields"],
        "runs": {
            **{f"bridge_{name}": values for name, values in runs.items()},
            "produce_baseline": produce,
            "bridge_own": own,
        },
        "parts_us": parts(),
    }
    emit(report, args.output)


if __name__ == "__main__":
    main()

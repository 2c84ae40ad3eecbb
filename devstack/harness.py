"""Driving a bridge against the local stack: specs, waiting for a condition, reading back.

Shared by the bridge's integration test modules (which cannot import one another) and usable
from benchmarks. Conditions are polled (``waiting.until``), never slept on.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaError, Message, TopicPartition
from websockets.exceptions import ConnectionClosedError, ConnectionClosedOK

from ws2kafka.bridge.config import WebSocketSourceSpec, parse_spec
from ws2kafka.bridge.framing import Record
from ws2kafka.bridge.kafka_health import KafkaHealth
from ws2kafka.bridge.pipeline import Pipeline
from ws2kafka.bridge.reporting import StatusSnapshot
from ws2kafka.bridge.service import Bridge, Summary
from ws2kafka.bridge.source import FrameConsumer, as_message
from ws2kafka.bridge.stats import BridgeStats

from .kafka import KafkaBroker
from .waiting import until


def bridge_spec(
    broker: KafkaBroker | str, url: str, topic: str, /, **fields: Any
) -> WebSocketSourceSpec:
    """A bridge config for tests: fast reconnects and a long drain, any field overridable
    (camelCase, as in a config file; ``kafka=`` adds to the Kafka fields).

    ``broker`` is the broker, or a bootstrap address (a closed port for tests without Kafka).
    """
    bootstrap = broker if isinstance(broker, str) else broker.bootstrap_servers
    kafka_fields = fields.pop("kafka", {})
    return parse_spec(
        {
            "url": url,
            "kafka": {"bootstrapServers": bootstrap, "topic": topic, **kafka_fields},
            "reconnect": {"initialDelaySeconds": 0.05, "maxDelaySeconds": 0.2},
            "drainTimeoutSeconds": 20,
            **fields,
        }
    )


def new_topic(kafka: KafkaBroker) -> str:
    """A fresh, uniquely named topic, ready for produce and consume."""
    topic = f"bridge-{uuid.uuid4().hex[:10]}"
    kafka.create_topic(topic)
    return topic


class BridgeEndedEarly(AssertionError):
    """The bridge stopped by itself before the condition a test waited for held."""


async def run_until(
    bridge: Bridge, condition: Callable[[], bool], what: str, timeout: float = 30.0
) -> Summary:
    """Run the bridge until ``condition``, then stop it gracefully and return its summary.

    A bridge that ends by itself first (it gave up, or crashed) fails the wait: a test that
    only waits for something must not pass because the bridge died. Tests that expect the
    bridge to end use :func:`run_to_end`.
    """
    task = asyncio.create_task(bridge.run())
    held = False

    def held_or_ended() -> bool:
        nonlocal held
        held = held or condition()
        return held or task.done()

    try:
        await until(held_or_ended, timeout, what, interval=0.02)
    finally:
        bridge.stop()
    summary = await asyncio.wait_for(task, 60)
    if not held:
        raise BridgeEndedEarly(f"the bridge ended before {what}: {summary}")
    return summary


async def run_to_end(bridge: Bridge, timeout: float = 30.0) -> Summary:
    """Run the bridge until it ends by itself (gives up, fails), within ``timeout``."""
    return await asyncio.wait_for(bridge.run(), timeout)


def value_of(message: Message) -> bytes:
    value = message.value()
    assert isinstance(value, bytes)
    return value


def headers_of(message: Message) -> dict[str, bytes]:
    headers = message.headers()
    assert isinstance(headers, list)
    return {name: value for name, value in headers if isinstance(value, bytes)}


def seqs(kafka: KafkaBroker, topic: str, expected: int) -> list[int]:
    """The ``seq`` of the first ``expected`` records of ``topic``, in offset order."""
    messages = kafka.consume_all(topic, expected=expected)
    return [json.loads(value_of(message))["seq"] for message in messages]


def frame_seqs(kafka: KafkaBroker, topic: str) -> list[int]:
    """The ``seq`` of every feed frame in ``topic``, whatever else it holds (gap records
    carry none)."""
    messages = kafka.consume_all(topic, expected=record_count(kafka, topic))
    frames = [json.loads(value_of(message)) for message in messages]
    return [frame["seq"] for frame in frames if "seq" in frame]


def record_count(kafka: KafkaBroker, topic: str) -> int:
    """How many records partition 0 of ``topic`` holds: with :func:`seqs`, proves that no
    record follows the expected ones (a duplicate at the end would be invisible otherwise)."""
    consumer = Consumer(
        {"bootstrap.servers": kafka.bootstrap_servers, "group.id": f"count-{uuid.uuid4().hex}"}
    )
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=30)
    finally:
        consumer.close()
    count: int = high - low
    return count


@dataclass
class RecordingReporter:
    """A status reporter (the bridge's ``reporter``) that keeps every snapshot, as the operator
    would patch it, and may fail each report on purpose."""

    interval: float = 0.05
    fail: bool = False
    snapshots: list[StatusSnapshot] = field(default_factory=list)

    async def report(self, snapshot: StatusSnapshot) -> None:
        self.snapshots.append(snapshot)
        if self.fail:
            raise RuntimeError("status endpoint unavailable")

    @property
    def statuses(self) -> list[dict[str, Any]]:
        """Every snapshot as the ``status.connection`` it was reported as."""
        return [snapshot.to_status() for snapshot in self.snapshots]


class RecordingSink:
    """A producer stand-in for unit tests of the bridge without librdkafka.

    Pass ``sink.attach`` as the bridge's ``sink_factory``. Every handed-over batch is kept in
    ``batches``; records are acknowledged at the next loop iteration, as the poll thread would
    post it, unless ``holding`` (then :meth:`release` acknowledges what waits). ``fail`` makes
    deliveries fail instead; :meth:`fatal` plays librdkafka's fatal error callback.
    """

    def __init__(self, *, holding: bool = False, fail: bool = False) -> None:
        self.batches: list[list[Record]] = []
        self.controls: list[tuple[str | None, Record]] = []
        """Control records (gap markers, frames a rule routed to the control topic)."""
        self.holding = holding
        self.fail = fail
        self.closed = False
        self.sasl_credentials: list[tuple[str, str]] = []
        """Every SASL credential handed to the producer while it ran, in order."""
        self._waiting: list[Record] = []
        self._pipeline: Pipeline | None = None
        self._stats: BridgeStats | None = None
        self._health: KafkaHealth | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def attach(
        self,
        pipeline: Pipeline,
        spec: WebSocketSourceSpec,
        stats: BridgeStats,
        health: KafkaHealth,
        name: str,
    ) -> RecordingSink:
        self._pipeline, self._stats, self._health = pipeline, stats, health
        return self

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def produce(self, records: list[Record]) -> int:
        self.batches.append(list(records))
        self._waiting.extend(records)
        if not self.holding:
            assert self._loop is not None
            self._loop.call_soon(self.release)
        return len(records)

    def produce_control(
        self, topic: str | None, record: Record, on_delivery: Callable[[Any, Any], None]
    ) -> bool:
        self.controls.append((topic, record))
        on_delivery(None, None)
        return True

    def release(self) -> None:
        """Settle every waiting record (delivered, or failed with ``fail``)."""
        assert self._stats is not None
        assert self._pipeline is not None
        waiting, self._waiting = self._waiting, []
        if not waiting:
            return
        assert self._health is not None
        if self.fail:
            self._stats.failed += len(waiting)
            self._health.on_delivery_failed(KafkaError(KafkaError._MSG_TIMED_OUT), time.time())
        else:
            self._stats.delivered += len(waiting)
            self._health.on_delivered(time.time())
        self._stats.settled_bytes += sum(len(record.value) for record in waiting)
        self._pipeline.on_settled()

    def fatal(self, message: str) -> None:
        assert self._pipeline is not None
        self._pipeline.on_fatal_error(message)

    def set_sasl_credentials(self, username: str, password: str) -> None:
        self.sasl_credentials.append((username, password))

    async def close(self) -> None:
        self.closed = True


class ScriptedConnection:
    """A WebSocket connection stand-in that delivers ``frames`` (text or bytes), then stays
    open until closed (or, with ``drop``, drops with 1006): unit tests drive the bridge's
    read path without sockets."""

    subprotocol = None

    def __init__(self, frames: list[str | bytes], *, drop: bool = False) -> None:
        self._frames = list(frames)
        self._drop = drop
        self._closed = asyncio.Event()
        self.sent: list[str] = []

    @property
    def transport(self) -> ScriptedConnection:
        return self

    def abort(self) -> None:
        """Frames not read yet are lost with the connection."""
        self._frames.clear()
        self._closed.set()

    async def recv(self) -> str | bytes:
        if self._frames:
            return self._frames.pop(0)
        if self._drop:
            raise ConnectionClosedError(None, None)
        await self._closed.wait()
        raise ConnectionClosedOK(None, None)

    async def send(self, message: str) -> None:
        self.sent.append(message)

    async def ping(self) -> asyncio.Future[float]:
        pong: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        pong.set_result(0.0)
        return pong

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self._closed.set()

    def opener(self) -> Callable[..., Awaitable[ScriptedConnection]]:
        """An ``opener`` for :class:`Bridge` that hands out this connection."""

        async def open_scripted(*_: object) -> ScriptedConnection:
            return self

        return open_scripted


class CallbackConnection(ScriptedConnection):
    """A scripted connection that hands its frames over as picows does (``read_into``): a
    burst of up to :data:`CALLBACK_BURST` frames without suspending, reading paused while
    the consumer waits for room."""

    async def read_into(
        self, consumer: FrameConsumer, wait_for_room: Callable[[], Awaitable[None]]
    ) -> None:
        while True:
            for _ in range(CALLBACK_BURST):
                if not self._frames:
                    await self.recv()  # raises: dropped, or closed
                if consumer(*as_message(self._frames.pop(0))):
                    await wait_for_room()
            await asyncio.sleep(0)


#: Frames a :class:`CallbackConnection` hands over between two suspensions.
CALLBACK_BURST = 7


def dropping_feed(
    frames: list[str | bytes], *, drop_every: int, callback: bool
) -> Callable[..., Awaitable[ScriptedConnection]]:
    """An ``opener`` whose connections carry ``drop_every`` frames each (all of them when
    0) and then drop, the next connection going on with the next frames; the last one stays
    open. Frames are read by ``recv()`` or, with ``callback``, handed over by ``read_into``."""
    left = list(frames)

    async def open_next(*_: object) -> ScriptedConnection:
        share = len(left) if drop_every == 0 else drop_every
        chunk = [left.pop(0) for _ in range(min(share, len(left)))]
        kind = CallbackConnection if callback else ScriptedConnection
        return kind(chunk, drop=bool(left))

    return open_next

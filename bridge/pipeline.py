"""The way from admitted records to Kafka: buffer, hand-over, backpressure, drain.

The pipeline alone owns the bounded buffer (:class:`~.flow.FlowControl`) and the producer
(:class:`~.sink.KafkaSink`); the sessions that read frames only :meth:`Pipeline.admit` records
and schedule their hand-over. It runs on the event loop; the producer's poll thread only posts
to it (records settled, a fatal error), so every counter keeps one writer.

A fatal producer error (librdkafka's error callback, or ``produce()`` raising one) ends the
pipeline's life: the bridge is told once (``on_fatal``), the drain does not wait for
deliveries that can no longer happen, and what is left is counted as undelivered.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from confluent_kafka import KafkaError, KafkaException

from .config import WebSocketSourceSpec
from .errors import ProducerFatal
from .flow import FlowControl
from .framing import Record
from .kafka_health import Backlog, KafkaHealth, KafkaVerdict, assess
from .sink import KafkaSink
from .stats import BridgeStats
from .timeouts import wait_event

#: Seconds between two marks of the buffer's admission count (the precision of the oldest
#: unacknowledged record's age); at most :data:`MAX_MARKS` are kept.
MARK_SECONDS = 0.25
MAX_MARKS = 20_000


class Sink(Protocol):
    """What the pipeline needs of the producer (``KafkaSink``; a fake in unit tests)."""

    def start(self, loop: asyncio.AbstractEventLoop) -> None: ...

    def produce(self, records: list[Record]) -> int: ...

    def produce_control(
        self,
        topic: str | None,
        record: Record,
        on_delivery: Callable[[KafkaError | None, Any], None],
    ) -> bool: ...

    def set_sasl_credentials(self, username: str, password: str) -> None: ...

    async def close(self) -> None: ...


class SinkFactory(Protocol):
    def __call__(
        self,
        pipeline: Pipeline,
        spec: WebSocketSourceSpec,
        stats: BridgeStats,
        health: KafkaHealth,
        name: str,
    ) -> Sink: ...


def kafka_sink(
    pipeline: Pipeline,
    spec: WebSocketSourceSpec,
    stats: BridgeStats,
    health: KafkaHealth,
    name: str,
) -> Sink:
    """The real producer, sized to the pipeline's window."""
    return KafkaSink(
        spec.kafka,
        stats,
        health,
        window=pipeline.window,
        max_bytes=spec.buffer.max_bytes,
        client_id=f"ws2kafka-{name}",
        on_settled=pipeline.on_settled,
        on_fatal=pipeline.on_fatal_error,
        on_refused=pipeline.on_refused,
    )


class Pipeline:
    """Buffer and producer of one bridge; see the module docstring."""

    def __init__(
        self,
        spec: WebSocketSourceSpec,
        stats: BridgeStats,
        *,
        name: str,
        on_fatal: Callable[[ProducerFatal], None],
        on_refused: Callable[[str], None],
        sink_factory: SinkFactory = kafka_sink,
    ) -> None:
        self._stats = stats
        self._buffer = spec.buffer
        self._flow = FlowControl(
            spec.buffer,
            stats,
            on_first_pending=self._schedule_hand_over,
            on_batch_pending=self._hand_over,
        )
        self.window = self._flow.window
        self.health = KafkaHealth()
        self._on_fatal = on_fatal
        self.on_refused = on_refused
        self._settled = asyncio.Event()
        self._hand_over_scheduled = False
        self._marks: deque[tuple[int, float]] = deque()
        self.paused = False
        """Reading is paused by the ``block`` overflow policy."""
        self.resumed_monotonic = 0.0
        """When reading last resumed after a pause."""
        self.fatal: ProducerFatal | None = None
        self._closed = False
        self.admit: Callable[[Record], bool] = self._flow.admit
        """Take a record into the buffer; True when reading must pause (``block``). The
        buffer's own method, bound once: it runs for every frame, and a wrapper would add a
        Python call to the hot path."""
        self._sink = sink_factory(self, spec, stats, self.health, name)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._sink.start(loop)

    def set_sasl_credentials(self, username: str, password: str) -> None:
        """A rotated SASL credential: the producer's next authentication uses it."""
        self._sink.set_sasl_credentials(username, password)

    # -- once per burst -----------------------------------------------------------------

    def _schedule_hand_over(self) -> None:
        """Records wait for the producer: hand them over at the next loop iteration, once
        for all the frames read until then (or at :data:`~.flow.HAND_OVER_BATCH`, see
        ``FlowControl``), so librdkafka's batches fill while frames pour in."""
        if not self._hand_over_scheduled:
            self._hand_over_scheduled = True
            asyncio.get_running_loop().call_soon(self._scheduled_hand_over)

    def _scheduled_hand_over(self) -> None:
        self._hand_over_scheduled = False
        self._mark()
        self._hand_over()

    def _hand_over(self) -> None:
        """Give the producer what the window allows; what its queue refuses goes back."""
        if self.fatal is not None:
            return
        batch = self._flow.take()
        if not batch:
            return
        try:
            taken = self._sink.produce(batch)
        except KafkaException as exc:  # only fatal errors leave produce()
            self._flow.give_back(batch)
            error: KafkaError = exc.args[0]
            self.on_fatal_error(error.str())
            return
        if taken < len(batch):
            self._flow.give_back(batch[taken:])

    def _mark(self) -> None:
        """Remember how many records were admitted by now (for the backlog's age)."""
        now = time.monotonic()
        marks = self._marks
        if marks and now - marks[-1][1] < MARK_SECONDS:
            return
        self._prune_marks()
        if len(marks) < MAX_MARKS:
            marks.append((self._stats.admitted, now))

    def _prune_marks(self) -> None:
        """Forget the marks of records that all left the buffer."""
        left = self._stats.admitted - self._stats.held
        marks = self._marks
        while marks and marks[0][0] <= left:
            marks.popleft()

    # -- called on the loop by the poll thread ------------------------------------------

    def on_settled(self) -> None:
        """Records were acknowledged (or failed): hand over the next ones, wake the waiters."""
        self._hand_over()
        self._settled.set()

    def on_fatal_error(self, message: str) -> None:
        """librdkafka cannot go on; the bridge is told once."""
        if self.fatal is not None:
            return
        self.fatal = ProducerFatal(message)
        self.health.fatal_error = message
        self._settled.set()
        self._on_fatal(self.fatal)

    # -- backpressure -------------------------------------------------------------------

    def must_pause(self) -> bool:
        return self._flow.must_pause()

    async def wait_for_room(self, stopping: asyncio.Event) -> None:
        """Overflow policy ``block``: stop reading until the buffer drains below the watermark."""
        self.paused = True
        try:
            while not self._flow.may_resume() and not stopping.is_set() and self.fatal is None:
                self._settled.clear()
                await self._settled.wait()
        finally:
            self.paused = False
            self.resumed_monotonic = time.monotonic()

    def wake(self) -> None:
        """Wake a paused reader (the bridge is stopping)."""
        self._settled.set()

    # -- control records ----------------------------------------------------------------

    def produce_control(
        self,
        topic: str | None,
        record: Record,
        on_delivery: Callable[[KafkaError | None, Any], None],
    ) -> bool:
        if self.fatal is not None:
            return False
        return self._sink.produce_control(topic, record, on_delivery)

    # -- health -------------------------------------------------------------------------

    def backlog(self) -> Backlog:
        """How much waits for Kafka, how full the buffer is, and for how long the oldest."""
        stats = self._stats
        held = stats.held
        fill = max(
            held / self._buffer.max_messages, stats.held_bytes / max(1, self._buffer.max_bytes)
        )
        # Records leave roughly in order: the oldest held one was admitted at or before the
        # first mark that counts it, so its age is at least the time since that mark.
        self._prune_marks()
        marks = self._marks
        oldest = time.monotonic() - marks[0][1] if held and marks else 0.0
        return Backlog(held, min(1.0, fill), oldest)

    def kafka_verdict(self) -> KafkaVerdict:
        return assess(self.health, self.backlog())

    # -- the end ------------------------------------------------------------------------

    async def drain(self, timeout: float) -> int:
        """Deliver what is held within ``timeout`` seconds, stop the producer; returns how
        many records are left undelivered (counted, never silently lost)."""
        stats = self._stats
        deadline = time.monotonic() + timeout
        # every settlement hands over the next records (``on_settled``) until none is left
        self.on_settled()
        while stats.held and self.fatal is None and time.monotonic() < deadline:
            self._settled.clear()
            await wait_event(self._settled, deadline - time.monotonic())
        await self.close()
        return stats.held

    async def close(self) -> None:
        """Stop the poll thread and purge the producer (idempotent)."""
        if self._closed:
            return
        self._closed = True
        await self._sink.close()

"""The Kafka side: a confluent-kafka ``Producer`` whose polling and flushing stay off the loop.

``produce()`` only appends to librdkafka's queue (~1.2 µs) and is called on the event loop.
Delivery reports arrive in a dedicated poll thread, which updates the delivery counters and
the :class:`~.kafka_health.KafkaHealth` facts, and wakes the loop once per poll round (not
once per message) when records settle, or at once on a fatal error; it is the only thread that
serves librdkafka's callbacks, so each counter keeps a single writer. A slow or absent broker
therefore never stops the WebSocket's reads and pongs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from .config import KafkaSinkSpec
from .framing import Record
from .kafka_health import KafkaHealth
from .ratelog import RateLimitedLog
from .stats import BridgeStats

log = logging.getLogger(__name__)

#: Producer settings ws2kafka chooses; ``spec.kafka.properties`` may override any of them.
DEFAULT_PROPERTIES: dict[str, str] = {
    "acks": "all",
    "enable.idempotence": "true",
    # Never expire a record while the broker is away: the buffer's overflow policy decides
    # what happens when Kafka cannot keep up, and nothing times out silently.
    "message.timeout.ms": "0",
    "linger.ms": "5",
    "compression.type": "lz4",
    # broker connection states for the Kafka side of the status (KafkaHealth)
    "statistics.interval.ms": "5000",
}

_POLL_SECONDS = 0.05


def producer_config(
    spec: KafkaSinkSpec, *, window: int, max_bytes: int, client_id: str
) -> dict[str, Any]:
    """The librdkafka configuration: defaults, then the user's properties, then secrets."""
    config: dict[str, Any] = {"client.id": client_id, **DEFAULT_PROPERTIES}
    config["queue.buffering.max.messages"] = str(max(window, 1000) + 1000)
    config["queue.buffering.max.kbytes"] = str(max_bytes // 1024 + 1024)
    config.update(spec.properties)
    config.update({name: secret.resolve() for name, secret in spec.secret_properties.items()})
    config["bootstrap.servers"] = spec.bootstrap_servers
    return config


class KafkaSink:
    """Produces records and tracks their delivery; see the module docstring for threading."""

    def __init__(
        self,
        spec: KafkaSinkSpec,
        stats: BridgeStats,
        health: KafkaHealth,
        *,
        window: int,
        max_bytes: int,
        client_id: str,
        on_settled: Callable[[], None],
        on_fatal: Callable[[str], None],
        on_refused: Callable[[str], None],
    ) -> None:
        self._topic = spec.topic
        self._stats = stats
        self._health = health
        self._on_settled = on_settled
        self._on_fatal = on_fatal
        self._on_refused = on_refused
        self._failures = RateLimitedLog(log, "delivery failures", prefix=f"{client_id}: ")
        self._prefix = f"{client_id}: "
        config = producer_config(spec, window=window, max_bytes=max_bytes, client_id=client_id)
        config["on_delivery"] = self._on_delivery
        config["error_cb"] = self._on_error
        config["stats_cb"] = self._health.on_statistics
        self._log = LibrdkafkaLog(logging.getLogger("ws2kafka.librdkafka"), prefix=f"{client_id}: ")
        config["logger"] = self._log
        _warn_if_unverified(config)
        self._producer = Producer(config)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start the poll thread; ``on_settled`` is called on ``loop``."""
        self._loop = loop
        self._thread = threading.Thread(target=self._poll_forever, name="kafka-poll", daemon=True)
        self._thread.start()

    def produce(self, records: list[Record]) -> int:
        """Hand records to librdkafka, in order (event-loop thread; never blocks).

        Returns how many it took. The rest found librdkafka's queue full (its bounds are
        properties a user may lower) and must be handed again once deliveries make room. A
        record librdkafka refuses outright, such as one larger than ``message.max.bytes``,
        counts as taken and as refused: it can never be produced, and the bridge goes on. Only
        a fatal producer error (the producer must be recreated) propagates.
        """
        produce = self._producer.produce
        topic = self._topic
        for index, record in enumerate(records):
            try:
                produce(
                    record.topic or topic,
                    record.value,
                    record.key,
                    timestamp=record.timestamp_ms,
                    headers=record.headers,
                )
            except BufferError:
                return index
            except KafkaException as exc:
                self._refuse(record, exc)
            except (TypeError, ValueError, OverflowError) as exc:  # e.g. an out-of-range value
                self._refuse_invalid(record, exc)
        return len(records)

    def produce_control(
        self,
        topic: str | None,
        record: Record,
        on_delivery: Callable[[KafkaError | None, Any], None],
    ) -> bool:
        """Produce a control record (a gap marker) to ``topic`` (None: the data topic).

        Its delivery goes to ``on_delivery`` (poll thread) instead of the data counters, so
        the accounting of frames stays exact. False when librdkafka did not take it.
        """
        try:
            self._producer.produce(
                topic or self._topic,
                record.value,
                record.key,
                timestamp=record.timestamp_ms,
                headers=record.headers,
                on_delivery=on_delivery,
            )
        except BufferError:
            return False
        except KafkaException as exc:
            error: KafkaError = exc.args[0]
            if error.fatal():
                raise
            return False
        return True

    def set_sasl_credentials(self, username: str, password: str) -> None:
        """librdkafka uses them from the next authentication to a broker (thread-safe)."""
        self._producer.set_sasl_credentials(username, password)

    async def close(self) -> None:
        """Stop polling, then purge what librdkafka still holds.

        No callback runs afterwards, so the caller counts what is left as undelivered; without
        the purge, a producer left behind (in the operator's process) would keep retrying
        those records in the background and deliver some after the summary was written.
        """
        self._stopping.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
        self._failures.flush(force=True)
        self._log.flush(force=True)
        self._producer.purge()

    def _refuse(self, record: Record, exc: KafkaException) -> None:
        error: KafkaError = exc.args[0]
        if error.fatal():
            raise exc
        self._stats.refused += 1
        self._stats.refused_bytes += len(record.value)
        self._on_refused(f"Kafka refused a record of {len(record.value)} bytes: {error.str()}")

    def _refuse_invalid(self, record: Record, exc: Exception) -> None:
        """A record the client library cannot even encode: counted as refused, never fatal."""
        self._stats.refused += 1
        self._stats.refused_bytes += len(record.value)
        self._on_refused(f"a record of {len(record.value)} bytes is invalid: {exc}")

    def _poll_forever(self) -> None:
        stats = self._stats
        last_settled = stats.settled
        last_delivered = stats.delivered
        while not self._stopping.is_set():
            self._producer.poll(_POLL_SECONDS)
            if stats.delivered != last_delivered:
                last_delivered = stats.delivered
                self._health.on_delivered(time.time())
            settled = stats.settled
            if settled != last_settled:
                last_settled = settled
                self._call_on_loop(self._on_settled)
            self._failures.flush()
            self._log.flush()

    def _call_on_loop(self, callback: Callable[..., None], *args: object) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed since the check
                loop.call_soon_threadsafe(callback, *args)

    def _on_delivery(self, err: KafkaError | None, msg: Any) -> None:
        stats = self._stats
        stats.settled_bytes += len(msg)
        latency = msg.latency()
        if latency is not None:
            stats.latency.observe(latency)
        if err is None:
            stats.delivered += 1
            return
        stats.failed += 1
        stats.count_delivery_error(err.name())
        self._health.on_delivery_failed(err, time.time())
        self._failures.add(err.str())

    def _on_error(self, err: KafkaError) -> None:
        """(poll thread) librdkafka's error callback: facts for the status. Refused
        credentials and unreachable brokers already reach the log as librdkafka's connection
        failures, counted as a rate (:class:`LibrdkafkaLog`): they are not logged again."""
        health = self._health
        was_down = health.all_brokers_down
        health.on_error(err, time.time())
        if err.fatal():
            log.error("%skafka producer fatal error: %s", self._prefix, err.str())
            self._call_on_loop(self._on_fatal, err.str())
        elif err.code() == KafkaError._ALL_BROKERS_DOWN and not was_down:
            log.warning("%skafka: all brokers are down; records wait in the buffer", self._prefix)
        else:
            log.debug("%skafka: %s", self._prefix, err.str())


class LibrdkafkaLog:
    """librdkafka's log lines, passed on, except broker connection failures: counted and
    logged as a rate.

    During an outage librdkafka logs every reconnect attempt at ERROR; what the reader needs
    is that the broker is away (one line per interval, with the count) and what happens to
    the records (the "all brokers are down" warning, the buffer's metrics). confluent-kafka
    calls :meth:`log` from ``poll()``, so on the poll thread only, which also flushes.
    """

    def __init__(self, logger: logging.Logger, *, prefix: str) -> None:
        self._logger = logger
        self._connect_failures = RateLimitedLog(logger, "broker connection failures", prefix=prefix)

    def log(self, level: int, msg: str, *args: object) -> None:
        """confluent-kafka's call: ``msg % args`` is ``FACILITY [client] text``."""
        if args and args[0] == "FAIL":
            self._connect_failures.add(msg % args)
        else:
            self._logger.log(level, msg, *args)

    def flush(self, *, force: bool = False) -> None:
        self._connect_failures.flush(force=force)


#: librdkafka settings that turn off the verification of the brokers' TLS certificates.
_UNVERIFIED_TLS = {
    "enable.ssl.certificate.verification": "false",
    "ssl.endpoint.identification.algorithm": "none",
}


def _warn_if_unverified(config: dict[str, Any]) -> None:
    """Turning TLS verification off is allowed, never silent."""
    for key, value in _UNVERIFIED_TLS.items():
        if str(config.get(key, "")).lower() == value:
            log.warning("kafka: %s=%s: broker TLS certificates are NOT verified", key, value)

"""Whether the Kafka side works, from what librdkafka tells the producer, without I/O.

A bridge can be connected to its feed while nothing reaches Kafka: the brokers are unreachable
(the likeliest install mistake is a wrong ``bootstrapServers``), the credentials are refused,
the topic is not writable, or deliveries lag so far that the buffer fills. librdkafka says so
through its error callback, its statistics and the delivery reports, all on the producer's
poll thread: :class:`KafkaHealth` records them there (its only writer), and :func:`assess`
turns them, with the buffer's state read on the loop, into one :class:`KafkaVerdict` that the
status report carries and the operator's ``Ready`` condition uses.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from confluent_kafka import KafkaError

from .gaps import rfc3339
from .kafka_errors import classify


class KafkaReason(StrEnum):
    """The state of the Kafka side, as the CamelCase reason of status and conditions."""

    PRODUCING = "Producing"
    """Brokers reachable, deliveries acknowledged, the buffer not filling."""
    CONNECTING = "KafkaConnecting"
    """No broker reached yet and no error either (the first seconds of a run)."""
    BROKERS_UNREACHABLE = "BrokersUnreachable"
    AUTHENTICATION_FAILED = "KafkaAuthenticationFailed"
    """SASL credentials refused, or a TLS handshake failed (e.g. an untrusted certificate)."""
    TOPIC_AUTHORIZATION_FAILED = "TopicAuthorizationFailed"
    CLUSTER_AUTHORIZATION_FAILED = "ClusterAuthorizationFailed"
    DELIVERY_FAILING = "DeliveryFailing"
    """The last delivery failed and none succeeded since."""
    DELIVERY_STALLED = "DeliveryStalled"
    """The oldest unacknowledged record waits longer than :data:`STALLED_AFTER_SECONDS`."""
    BUFFER_FILLING = "BufferFilling"
    """The buffer is at least :data:`FILLING_RATIO` full."""
    PRODUCER_FATAL = "ProducerFatal"
    """librdkafka raised a fatal error: the producer cannot go on and the bridge stops."""


#: An unacknowledged record older than this means Kafka does not keep up (or is away).
STALLED_AFTER_SECONDS = 30.0
#: A buffer this full (records or bytes) will soon block reading or drop frames.
FILLING_RATIO = 0.8


def is_authentication_error(error: KafkaError) -> bool:
    """SASL credentials refused, or a TLS handshake that failed (either side's certificate)."""
    return classify(error) == KafkaReason.AUTHENTICATION_FAILED


@dataclass
class KafkaHealth:
    """What librdkafka reported. Written by the poll thread only; read by the loop."""

    brokers_up: int | None = None
    """Brokers with an open connection at the last statistics (None before the first)."""
    brokers_known: int = 0
    all_brokers_down: bool = False
    """librdkafka said no broker is reachable, and none came up since."""
    authentication_error: str | None = None
    """The last SASL/TLS failure, until a broker connection succeeds."""
    fatal_error: str | None = None
    last_error: str | None = None
    """The last error librdkafka reported (connection or delivery), for the status message."""
    last_error_at: float | None = None
    failing_delivery: KafkaError | None = None
    """The last failed delivery's error, until a delivery succeeds."""
    last_delivery_at: float | None = None
    """Wall-clock time of the last acknowledged record."""

    def on_error(self, error: KafkaError, now: float) -> None:
        """librdkafka's error callback."""
        code = error.code()
        self.last_error, self.last_error_at = error.str(), now
        if error.fatal():
            self.fatal_error = error.str()
        elif is_authentication_error(error):
            self.authentication_error = error.str()
        if code == KafkaError._ALL_BROKERS_DOWN:
            self.all_brokers_down = True

    def on_statistics(self, statistics_json: str) -> None:
        """librdkafka's statistics callback (every ``statistics.interval.ms``)."""
        try:
            brokers: dict[str, Any] = json.loads(statistics_json).get("brokers") or {}
        except (ValueError, AttributeError):
            return
        learned = [b for b in brokers.values() if int(b.get("nodeid", -1)) >= 0]
        counted = learned or list(brokers.values())
        self.brokers_known = len(learned)
        self.brokers_up = sum(1 for broker in counted if broker.get("state") == "UP")
        if self.brokers_up:
            self._reached()

    def on_delivered(self, now: float) -> None:
        """At least one record was acknowledged (called once per poll round, not per record)."""
        self.last_delivery_at = now
        self.failing_delivery = None
        self._reached()

    def on_delivery_failed(self, error: KafkaError, now: float) -> None:
        self.failing_delivery = error
        self.last_error, self.last_error_at = error.str(), now

    def _reached(self) -> None:
        self.all_brokers_down = False
        self.authentication_error = None


@dataclass(frozen=True)
class Backlog:
    """The buffer's state as the loop sees it."""

    records: int
    fill_ratio: float
    """The fuller of records/maxMessages and bytes/maxBytes."""
    oldest_seconds: float
    """Age of the oldest record not yet acknowledged (0 when none waits)."""


@dataclass(frozen=True)
class KafkaVerdict:
    """The Kafka side in one reason and one sentence (``status.connection.kafka``)."""

    reason: KafkaReason
    message: str
    brokers_up: int | None
    last_error: str | None
    last_error_at: float | None
    last_delivery_at: float | None
    backlog: Backlog

    @property
    def healthy(self) -> bool:
        return self.reason is KafkaReason.PRODUCING

    def to_status(self) -> dict[str, object]:
        return {
            "reason": self.reason.value,
            "message": self.message,
            "brokersUp": self.brokers_up,
            "lastError": self.last_error,
            "lastErrorTime": rfc3339(self.last_error_at),
            "lastDeliveryTime": rfc3339(self.last_delivery_at),
            "bufferedRecords": self.backlog.records,
            "bufferUsagePercent": round(self.backlog.fill_ratio * 100, 1),
            "oldestUnacknowledgedSeconds": round(self.backlog.oldest_seconds, 1),
        }


def assess(health: KafkaHealth, backlog: Backlog) -> KafkaVerdict:
    """The most important thing that is wrong on the Kafka side, or ``Producing``."""
    reason, message = _reason(health, backlog)
    return KafkaVerdict(
        reason,
        message,
        health.brokers_up,
        health.last_error,
        health.last_error_at,
        health.last_delivery_at,
        backlog,
    )


def _reason(health: KafkaHealth, backlog: Backlog) -> tuple[KafkaReason, str]:
    waiting = _waiting(backlog)
    if health.fatal_error is not None:
        return KafkaReason.PRODUCER_FATAL, f"fatal producer error: {health.fatal_error}"
    if health.authentication_error is not None:
        return (
            KafkaReason.AUTHENTICATION_FAILED,
            f"Kafka refused the connection: {health.authentication_error}; {waiting}",
        )
    if health.all_brokers_down:
        return (
            KafkaReason.BROKERS_UNREACHABLE,
            f"no Kafka broker reachable (last error: {health.last_error}); {waiting}",
        )
    failing = health.failing_delivery
    if failing is not None:
        named = classify(failing)
        authorization = (
            KafkaReason.TOPIC_AUTHORIZATION_FAILED,
            KafkaReason.CLUSTER_AUTHORIZATION_FAILED,
        )
        reason = KafkaReason(named) if named in authorization else KafkaReason.DELIVERY_FAILING
        return reason, f"deliveries fail: {failing.str()}; {waiting}"
    if backlog.oldest_seconds >= STALLED_AFTER_SECONDS:
        return KafkaReason.DELIVERY_STALLED, f"Kafka acknowledges too slowly: {waiting}"
    if backlog.fill_ratio >= FILLING_RATIO:
        return KafkaReason.BUFFER_FILLING, f"the buffer is filling: {waiting}"
    if health.last_delivery_at is None and not health.brokers_up:
        return KafkaReason.CONNECTING, f"connecting to Kafka; {waiting}"
    return KafkaReason.PRODUCING, "records are acknowledged by Kafka"


def _waiting(backlog: Backlog) -> str:
    if not backlog.records:
        return "no record waits"
    return (
        f"{backlog.records} records wait in the buffer ({backlog.fill_ratio:.0%} full, "
        f"oldest {backlog.oldest_seconds:.0f} s)"
    )

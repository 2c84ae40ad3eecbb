"""The Kafka side in one reason: what librdkafka reported, and how the buffer looks."""

from __future__ import annotations

import json

import pytest
from confluent_kafka import KafkaError

from ws2kafka.bridge.kafka_health import Backlog, KafkaHealth, KafkaReason, assess

IDLE = Backlog(records=0, fill_ratio=0.0, oldest_seconds=0.0)


def statistics(*states: str) -> str:
    brokers = {f"b{n}:9092/{n}": {"nodeid": n, "state": state} for n, state in enumerate(states)}
    brokers["b:9092/bootstrap"] = {"nodeid": -1, "state": "UP"}
    return json.dumps({"brokers": brokers})


def test_a_fresh_producer_is_connecting_until_a_broker_is_up() -> None:
    health = KafkaHealth()
    assert assess(health, IDLE).reason is KafkaReason.CONNECTING
    health.on_statistics(statistics("UP", "INIT", "INIT"))
    verdict = assess(health, IDLE)
    assert (verdict.reason, verdict.brokers_up, verdict.healthy) == (KafkaReason.PRODUCING, 1, True)


def test_all_brokers_down_is_unreachable_until_one_comes_back() -> None:
    health = KafkaHealth()
    health.on_error(KafkaError(KafkaError._TRANSPORT, "Connection refused"), 1.0)
    health.on_error(KafkaError(KafkaError._ALL_BROKERS_DOWN, "1/1 brokers are down"), 2.0)
    waiting = Backlog(records=574, fill_ratio=0.06, oldest_seconds=41.0)
    verdict = assess(health, waiting)
    assert verdict.reason is KafkaReason.BROKERS_UNREACHABLE
    assert "574 records wait in the buffer (6% full, oldest 41 s)" in verdict.message
    assert verdict.to_status()["lastError"] == "1/1 brokers are down"
    health.on_statistics(statistics("DOWN"))
    assert assess(health, waiting).reason is KafkaReason.BROKERS_UNREACHABLE
    health.on_statistics(statistics("UP"))
    assert assess(health, waiting).reason is KafkaReason.DELIVERY_STALLED


@pytest.mark.parametrize(
    "code", [KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED, KafkaError._SSL]
)
def test_refused_credentials_or_certificates_win_over_unreachable(code: int) -> None:
    health = KafkaHealth()
    health.on_error(KafkaError(code, "SASL authentication error: invalid credentials"), 1.0)
    health.on_error(KafkaError(KafkaError._ALL_BROKERS_DOWN, "1/1 brokers are down"), 1.1)
    verdict = assess(health, IDLE)
    assert verdict.reason is KafkaReason.AUTHENTICATION_FAILED
    assert "invalid credentials" in verdict.message
    health.on_delivered(2.0)
    assert assess(health, IDLE).reason is KafkaReason.PRODUCING


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaReason.TOPIC_AUTHORIZATION_FAILED),
        (KafkaError.CLUSTER_AUTHORIZATION_FAILED, KafkaReason.CLUSTER_AUTHORIZATION_FAILED),
        (KafkaError.MSG_SIZE_TOO_LARGE, KafkaReason.DELIVERY_FAILING),
    ],
)
def test_failing_deliveries_name_their_cause_until_one_succeeds(
    code: int, reason: KafkaReason
) -> None:
    health = KafkaHealth()
    health.on_delivered(1.0)
    health.on_delivery_failed(KafkaError(code, "no"), 2.0)
    assert assess(health, IDLE).reason is reason
    health.on_delivered(3.0)
    assert assess(health, IDLE).reason is KafkaReason.PRODUCING


@pytest.mark.parametrize(
    ("backlog", "reason"),
    [
        (Backlog(records=10, fill_ratio=0.01, oldest_seconds=29.0), KafkaReason.PRODUCING),
        (Backlog(records=10, fill_ratio=0.01, oldest_seconds=31.0), KafkaReason.DELIVERY_STALLED),
        (Backlog(records=9000, fill_ratio=0.9, oldest_seconds=2.0), KafkaReason.BUFFER_FILLING),
    ],
)
def test_a_slow_kafka_shows_in_the_backlog(backlog: Backlog, reason: KafkaReason) -> None:
    health = KafkaHealth()
    health.on_delivered(1.0)
    assert assess(health, backlog).reason is reason


def test_a_fatal_error_is_the_verdict_whatever_else_is_true() -> None:
    health = KafkaHealth()
    health.on_delivered(1.0)
    health.on_error(KafkaError(KafkaError._FATAL, "Inconsistent state", fatal=True), 2.0)
    verdict = assess(health, IDLE)
    assert verdict.reason is KafkaReason.PRODUCER_FATAL
    assert "Inconsistent state" in verdict.message


def test_unreadable_statistics_change_nothing() -> None:
    health = KafkaHealth()
    health.on_statistics("not json")
    health.on_statistics("[1, 2]")
    assert health.brokers_up is None

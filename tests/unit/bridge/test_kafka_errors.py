"""librdkafka's error codes map to the few reasons an operator acts on."""

import pytest
from confluent_kafka import KafkaError

from ws2kafka.bridge.kafka_errors import (
    BROKERS_UNREACHABLE,
    CLUSTER_AUTHORIZATION_FAILED,
    KAFKA_AUTHENTICATION_FAILED,
    PRECEDENCE,
    TOPIC_AUTHORIZATION_FAILED,
    classify,
)


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (KafkaError._AUTHENTICATION, KAFKA_AUTHENTICATION_FAILED),
        (KafkaError.SASL_AUTHENTICATION_FAILED, KAFKA_AUTHENTICATION_FAILED),
        (KafkaError.UNSUPPORTED_SASL_MECHANISM, KAFKA_AUTHENTICATION_FAILED),
        (KafkaError.ILLEGAL_SASL_STATE, KAFKA_AUTHENTICATION_FAILED),
        (KafkaError._SSL, KAFKA_AUTHENTICATION_FAILED),
        (KafkaError.TOPIC_AUTHORIZATION_FAILED, TOPIC_AUTHORIZATION_FAILED),
        (KafkaError.CLUSTER_AUTHORIZATION_FAILED, CLUSTER_AUTHORIZATION_FAILED),
        (KafkaError._ALL_BROKERS_DOWN, BROKERS_UNREACHABLE),
        (KafkaError._TRANSPORT, BROKERS_UNREACHABLE),
        (KafkaError._RESOLVE, BROKERS_UNREACHABLE),
    ],
)
def test_errors_that_need_someone_have_a_reason(code: int, reason: str) -> None:
    assert classify(KafkaError(code, "text")) == reason


#: As librdkafka 2.x reports a refused client certificate under TLS 1.3 (seen against the
#: secured test broker, test_kafka_security.py).
REFUSED_CLIENT_CERTIFICATE = (
    "ssl://127.0.0.1:50235/bootstrap: Receive failed: error:0A000416:SSL routines::ssl/tls "
    "alert certificate unknown: SSL alert number 46 (after 18ms in state APIVERSION_QUERY)"
)


def test_a_tls_alert_from_the_broker_is_an_authentication_failure() -> None:
    error = KafkaError(KafkaError._TRANSPORT, REFUSED_CLIENT_CERTIFICATE)
    assert classify(error) == KAFKA_AUTHENTICATION_FAILED


def test_a_connection_that_broke_is_unreachable_brokers() -> None:
    text = "ssl://127.0.0.1:9093/1: Disconnected (after 6021ms in state UP)"
    assert classify(KafkaError(KafkaError._TRANSPORT, text)) == BROKERS_UNREACHABLE


@pytest.mark.parametrize(
    "code",
    [
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.NOT_ENOUGH_REPLICAS,
        KafkaError.REQUEST_TIMED_OUT,
        KafkaError._MSG_TIMED_OUT,
        KafkaError.MSG_SIZE_TOO_LARGE,
        KafkaError.NO_ERROR,
    ],
)
def test_retried_and_per_record_errors_have_none(code: int) -> None:
    assert classify(KafkaError(code)) is None


def test_every_reason_has_a_place_in_the_precedence() -> None:
    reasons = {
        classify(KafkaError(code))
        for code in (KafkaError._SSL, KafkaError.TOPIC_AUTHORIZATION_FAILED,
                     KafkaError.CLUSTER_AUTHORIZATION_FAILED, KafkaError._TRANSPORT)
    }  # fmt: skip
    assert reasons == set(PRECEDENCE)
    assert PRECEDENCE[0] == KAFKA_AUTHENTICATION_FAILED
    assert PRECEDENCE[-1] == BROKERS_UNREACHABLE

"""The dev broker itself: every other Kafka test trusts it to store and return what it acked."""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka import TIMESTAMP_LOG_APPEND_TIME, KafkaError, Message, Producer

from ws2kafka.devstack.kafka import KafkaBroker

pytestmark = pytest.mark.kafka


def _produce(broker: KafkaBroker, topic: str, values: list[bytes]) -> list[str]:
    """Produce with full acknowledgement and return the delivery errors, so a test sees
    failures the producer would otherwise only log.

    They are returned as text: comparing a KafkaError with anything but a KafkaError or an
    int leaves a stray exception set inside confluent-kafka.
    """
    errors: list[str] = []

    def on_delivery(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            errors.append(str(err))

    producer = Producer(
        {
            "bootstrap.servers": broker.bootstrap_servers,
            "acks": "all",
            "enable.idempotence": True,
            "message.timeout.ms": 30_000,
        }
    )
    for value in values:
        producer.produce(topic, value, on_delivery=on_delivery)
        producer.poll(0)
    assert producer.flush(60) == 0, "records still undelivered after 60 s"
    return errors


def test_broker_returns_every_acked_record_in_order(kafka: KafkaBroker) -> None:
    topic = f"smoke-{uuid.uuid4().hex}"
    kafka.create_topic(topic)
    values = [f"record-{i:04d}".encode() for i in range(1000)]

    assert _produce(kafka, topic, values) == []

    assert [m.value() for m in kafka.consume_all(topic, expected=len(values))] == values


def test_topic_config_is_applied(kafka: KafkaBroker) -> None:
    topic = f"smoke-{uuid.uuid4().hex}"
    kafka.create_topic(topic, partitions=2, config={"message.timestamp.type": "LogAppendTime"})

    assert _produce(kafka, topic, [b"stamped"]) == []

    (message,) = kafka.consume_all(topic, expected=1)
    timestamp_type, _ = message.timestamp()
    assert timestamp_type == TIMESTAMP_LOG_APPEND_TIME


def test_broker_keeps_acked_records_across_a_crash(kafka: KafkaBroker) -> None:
    topic = f"smoke-{uuid.uuid4().hex}"
    kafka.create_topic(topic)
    assert _produce(kafka, topic, [b"before crash"]) == []

    kafka.kill()
    kafka.restart()

    assert _produce(kafka, topic, [b"after restart"]) == []
    values = [m.value() for m in kafka.consume_all(topic, expected=2)]
    assert values == [b"before crash", b"after restart"]

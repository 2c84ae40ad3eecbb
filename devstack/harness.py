"""Driving a bridge against the local stack: specs, waiting for a condition, reading back.

Shared by the bridge's integration test modules (which cannot import one another) and usable
from benchmarks. Conditions are polled (``waiting.until``), never slept on.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, Message, TopicPartition

from ws2kafka.bridge.config import WebSocketSourceSpec, parse_spec
from ws2kafka.bridge.service import Bridge, Summary

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


async def run_until(
    bridge: Bridge, condition: Callable[[], bool], what: str, timeout: float = 30.0
) -> Summary:
    """Run the bridge until ``condition``, then stop it gracefully and return its summary."""
    task = asyncio.create_task(bridge.run())
    try:
        await until(lambda: condition() or task.done(), timeout, what, interval=0.02)
    finally:
        bridge.stop()
    return await asyncio.wait_for(task, 60)


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

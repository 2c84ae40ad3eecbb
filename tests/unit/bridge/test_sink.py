"""The producer configuration (safe defaults, user pass-through, secrets resolved) and
librdkafka's log lines."""

import logging

import pytest

from ws2kafka.bridge.config import KafkaSinkSpec
from ws2kafka.bridge.sink import LibrdkafkaLog, producer_config


def test_defaults_then_user_properties_then_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SASL_PW", "pw-from-env")
    spec = KafkaSinkSpec.model_validate(
        {
            "bootstrapServers": "b1:9092,b2:9092",
            "topic": "t",
            "properties": {
                "compression.type": "zstd",
                "security.protocol": "SASL_SSL",
                "sasl.mechanisms": "PLAIN",
                "sasl.username": "me",
            },
            "secretProperties": {"sasl.password": {"env": "SASL_PW"}},
        }
    )
    config = producer_config(spec, window=10_000, max_bytes=64 * 1_048_576, client_id="c")
    assert config["acks"] == "all"
    assert config["enable.idempotence"] == "true"
    assert config["message.timeout.ms"] == "0"
    assert config["compression.type"] == "zstd"  # the user's choice wins
    assert config["security.protocol"] == "SASL_SSL"
    assert config["sasl.password"] == "pw-from-env"
    assert config["bootstrap.servers"] == "b1:9092,b2:9092"
    assert int(config["queue.buffering.max.messages"]) >= 10_000


def test_reserved_properties_are_rejected() -> None:
    with pytest.raises(ValueError, match=r"bootstrap\.servers"):
        KafkaSinkSpec.model_validate(
            {"bootstrapServers": "b", "topic": "t", "properties": {"bootstrap.servers": "x"}}
        )


def test_broker_connection_failures_are_logged_as_a_rate_other_lines_pass(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="test.librdkafka")
    log = LibrdkafkaLog(logging.getLogger("test.librdkafka"), prefix="src: ")
    refused = "[thrd:k:9092/bootstrap]: k:9092/bootstrap: Connect to ipv4#k:9092 failed"
    for _ in range(50):  # what librdkafka reports, at ERROR, for every reconnect attempt
        log.log(logging.ERROR, "%s [%s] %s", "FAIL", "rdkafka#producer-1", refused)
    log.log(logging.WARNING, "%s [%s] %s", "CONFWARN", "rdkafka#producer-1", "unknown property")
    log.flush(force=True)
    lines = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert lines == [
        (logging.WARNING, "CONFWARN [rdkafka#producer-1] unknown property"),
        (
            logging.WARNING,
            f"src: 50 broker connection failures in the last 0 s "
            f"(last: FAIL [rdkafka#producer-1] {refused})",
        ),
    ]


@pytest.mark.parametrize(
    "name", ["delivery.report.only.error", "dr_msg_cb", "dr_cb", "logger", "stats_cb"]
)
def test_properties_that_would_break_the_accounting_are_reserved(name: str) -> None:
    """With delivery.report.only.error, successful deliveries are never reported: records
    would never settle and the block policy would stall for ever."""
    with pytest.raises(ValueError, match="through its own field"):
        KafkaSinkSpec.model_validate(
            {"bootstrapServers": "b", "topic": "t", "properties": {name: "true"}}
        )

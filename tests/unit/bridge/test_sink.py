"""The producer configuration: safe defaults, user pass-through, secrets resolved."""

import pytest

from ws2kafka.bridge.config import KafkaSinkSpec
from ws2kafka.bridge.sink import producer_config


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

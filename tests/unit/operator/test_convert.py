"""`ws2kafka convert`: the seed connector's README examples, secrets, warnings and bad input."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml

from ws2kafka.bridge.config import parse_spec
from ws2kafka.bridge.errors import ConfigError
from ws2kafka.operator import cli
from ws2kafka.operator.convert import (
    SEED_KEYS,
    Conversion,
    connector_to_resources,
    conversion_to_yaml,
    split_headers,
)
from ws2kafka.operator.crdgen import build_spec_schema

# The four examples of the seed connector's README, verbatim.
ECHO: dict[str, Any] = {
    "name": "websocket-echo-connector",
    "config": {
        "connector.class": "io.conduktor.connect.websocket.WebSocketSourceConnector",
        "tasks.max": "1",
        "websocket.url": "wss://echo.websocket.org",
        "kafka.topic": "websocket-echo",
        "websocket.subscription.message": '{"action":"subscribe","channel":"test"}',
        "websocket.reconnect.enabled": "true",
        "websocket.reconnect.interval.ms": "5000",
    },
}
BINANCE: dict[str, Any] = {
    "name": "binance-btcusdt-connector",
    "config": {
        "connector.class": "io.conduktor.connect.websocket.WebSocketSourceConnector",
        "tasks.max": "1",
        "websocket.url": "wss://stream.binance.com:9443/ws",
        "kafka.topic": "binance-btcusdt-trades",
        "websocket.subscription.message": (
            '{"method":"SUBSCRIBE","params":["btcusdt@trade"],"id":1}'
        ),
        "websocket.reconnect.enabled": "true",
        "websocket.reconnect.interval.ms": "3000",
    },
}
COINBASE: dict[str, Any] = {
    "name": "coinbase-btc-usd-connector",
    "config": {
        "connector.class": "io.conduktor.connect.websocket.WebSocketSourceConnector",
        "tasks.max": "1",
        "websocket.url": "wss://ws-feed.exchange.coinbase.com",
        "kafka.topic": "coinbase-btc-usd-level2",
        "websocket.subscription.message": (
            '{"type":"subscribe","product_ids":["BTC-USD"],"channels":["level2"]}'
        ),
        "websocket.reconnect.enabled": "true",
    },
}
AUTHENTICATED: dict[str, Any] = {
    "name": "authenticated-websocket-connector",
    "config": {
        "connector.class": "io.conduktor.connect.websocket.WebSocketSourceConnector",
        "tasks.max": "1",
        "websocket.url": "wss://api.example.com/ws",
        "kafka.topic": "authenticated-stream",
        "websocket.auth.token": "your-bearer-token-here",
        "websocket.headers": "User-Agent:KafkaConnectWebSocket/1.0,X-Custom-Header:value",
        "websocket.reconnect.enabled": "true",
    },
}

SOURCE = {"apiVersion": "ws2kafka.dev/v1alpha1", "kind": "WebSocketSource"}


def config_with(**changes: object) -> dict[str, object]:
    """The echo example's config with keys changed (``None`` removes one); dots in key names
    are written as ``__``."""
    config: dict[str, object] = dict(ECHO["config"])
    for key, value in changes.items():
        config.pop(key.replace("__", "."), None)
        if value is not None:
            config[key.replace("__", ".")] = value
    return config


def spec_of(config: dict[str, object], **options: Any) -> dict[str, Any]:
    spec: dict[str, Any] = connector_to_resources(config, **options).source["spec"]
    return spec


def test_echo_example() -> None:
    conversion = connector_to_resources(ECHO)
    assert conversion.source == {
        **SOURCE,
        "metadata": {"name": "websocket-echo-connector"},
        "spec": {
            "url": "wss://echo.websocket.org",
            "subscribe": ['{"action":"subscribe","channel":"test"}'],
            "reconnect": {"enabled": True, "initialDelaySeconds": 5},
            "kafka": {"bootstrapServers": "kafka:9092", "topic": "websocket-echo"},
        },
    }
    assert conversion.secret is None
    assert conversion.warnings == ()


def test_binance_example() -> None:
    conversion = connector_to_resources(BINANCE)
    assert conversion.source == {
        **SOURCE,
        "metadata": {"name": "binance-btcusdt-connector"},
        "spec": {
            "url": "wss://stream.binance.com:9443/ws",
            "subscribe": ['{"method":"SUBSCRIBE","params":["btcusdt@trade"],"id":1}'],
            "reconnect": {"enabled": True, "initialDelaySeconds": 3},
            "kafka": {"bootstrapServers": "kafka:9092", "topic": "binance-btcusdt-trades"},
        },
    }
    assert (conversion.secret, conversion.warnings) == (None, ())


def test_coinbase_example() -> None:
    conversion = connector_to_resources(COINBASE)
    assert conversion.source == {
        **SOURCE,
        "metadata": {"name": "coinbase-btc-usd-connector"},
        "spec": {
            "url": "wss://ws-feed.exchange.coinbase.com",
            "subscribe": ['{"type":"subscribe","product_ids":["BTC-USD"],"channels":["level2"]}'],
            "reconnect": {"enabled": True},
            "kafka": {"bootstrapServers": "kafka:9092", "topic": "coinbase-btc-usd-level2"},
        },
    }
    assert (conversion.secret, conversion.warnings) == (None, ())


def test_authenticated_example_keeps_the_token_in_a_secret() -> None:
    conversion = connector_to_resources(AUTHENTICATED, namespace="feeds")
    secret_name = "authenticated-websocket-connector-credentials"
    assert conversion.secret == {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": secret_name, "namespace": "feeds"},
        "type": "Opaque",
        "stringData": {"bearer-token": "your-bearer-token-here"},
    }
    assert conversion.source == {
        **SOURCE,
        "metadata": {"name": "authenticated-websocket-connector", "namespace": "feeds"},
        "spec": {
            "url": "wss://api.example.com/ws",
            "headers": [
                {"name": "User-Agent", "value": "KafkaConnectWebSocket/1.0"},
                {"name": "X-Custom-Header", "value": "value"},
            ],
            "auth": {"bearerToken": {"secretKeyRef": {"name": secret_name, "key": "bearer-token"}}},
            "reconnect": {"enabled": True},
            "kafka": {"bootstrapServers": "kafka:9092", "topic": "authenticated-stream"},
        },
    }
    assert conversion.secret_name == secret_name
    assert conversion.manifests == [conversion.secret, conversion.source]
    assert "your-bearer-token-here" not in json.dumps(conversion.source)


@pytest.mark.parametrize("connector", [ECHO, BINANCE, COINBASE, AUTHENTICATED])
def test_every_conversion_is_a_spec_the_bridge_accepts(connector: dict[str, Any]) -> None:
    parse_spec(connector_to_resources(connector).source["spec"])


def test_every_documented_seed_key_is_mapped() -> None:
    assert set(SEED_KEYS) == {
        "websocket.url",
        "kafka.topic",
        "websocket.subscription.message",
        "websocket.reconnect.enabled",
        "websocket.reconnect.interval.ms",
        "websocket.headers",
        "websocket.auth.token",
        "websocket.message.queue.size",
        "websocket.connection.timeout.ms",
    }
    schema = build_spec_schema()
    for key, seed_key in SEED_KEYS.items():
        node = schema
        for name in seed_key.target.split("."):
            assert name in node["properties"], f"{key} -> {seed_key.target}: no such field"
            node = node["properties"][name]


def test_queue_size_and_connection_timeout() -> None:
    spec = spec_of(
        config_with(
            websocket__message__queue__size="50000", websocket__connection__timeout__ms="2500"
        )
    )
    assert spec["buffer"] == {"maxMessages": 50000}
    assert spec["connection"] == {"connectTimeoutSeconds": 2.5}


def test_json_numbers_and_booleans_are_accepted() -> None:
    spec = spec_of(
        config_with(websocket__reconnect__interval__ms=3000, websocket__reconnect__enabled=False)
    )
    assert spec["reconnect"] == {"enabled": False, "initialDelaySeconds": 3}


def test_a_long_seed_interval_raises_the_backoff_cap() -> None:
    spec = spec_of(config_with(websocket__reconnect__interval__ms="600000"))
    assert spec["reconnect"] == {
        "enabled": True,
        "initialDelaySeconds": 600,
        "maxDelaySeconds": 600,
    }


def test_other_keys_are_named_in_warnings() -> None:
    config = config_with(**{"value.converter": "StringConverter", "transforms": "route"})
    assert connector_to_resources(config).warnings == (
        "not mapped: value.converter",
        "not mapped: transforms",
    )


def test_the_bootstrap_servers_come_from_the_option() -> None:
    assert spec_of(ECHO, bootstrap_servers="broker-0:9093,broker-1:9093")["kafka"] == {
        "bootstrapServers": "broker-0:9093,broker-1:9093",
        "topic": "websocket-echo",
    }


def test_a_bare_config_is_named_after_its_topic() -> None:
    conversion = connector_to_resources(COINBASE["config"])
    assert conversion.source["metadata"] == {"name": "coinbase-btc-usd-level2"}
    assert conversion.connector_name is None


def test_names_become_dns_labels() -> None:
    conversion = connector_to_resources({"name": "Binance_BTC.trades", "config": ECHO["config"]})
    assert conversion.source["metadata"]["name"] == "binance-btc-trades"
    assert conversion.warnings == (
        "name 'Binance_BTC.trades' is not a valid resource name: using 'binance-btc-trades'",
    )


def test_headers_split_at_the_first_colon_and_keep_commas_in_values() -> None:
    assert split_headers("X-Time:12:30, Accept:text/html,application/json,") == [
        ("X-Time", "12:30"),
        ("Accept", "text/html,application/json"),
    ]


def test_credential_headers_go_into_the_secret() -> None:
    conversion = connector_to_resources(
        {
            "name": "feed",
            "config": config_with(websocket__headers="X-API-Key:abc:def,User-Agent:me"),
        }
    )
    assert conversion.source["spec"]["headers"] == [
        {
            "name": "X-API-Key",
            "valueFrom": {"secretKeyRef": {"name": "feed-credentials", "key": "header-x-api-key"}},
        },
        {"name": "User-Agent", "value": "me"},
    ]
    assert conversion.secret is not None
    assert conversion.secret["stringData"] == {"header-x-api-key": "abc:def"}
    assert conversion.warnings == (
        "websocket.headers: X-API-Key looks like a credential, its value is in the Secret "
        "feed-credentials (key header-x-api-key)",
    )


def test_a_credential_in_the_url_query_moves_into_the_secret() -> None:
    config = config_with(websocket__url="wss://ws.example.com/feed?depth=10&token=abc")
    conversion = connector_to_resources(config)
    spec = conversion.source["spec"]
    assert spec["url"] == "wss://ws.example.com/feed?depth=10"
    ref = {"secretKeyRef": {"name": conversion.secret_name, "key": "query-token"}}
    assert spec["query"] == [{"name": "token", "valueFrom": ref}]
    assert conversion.secret is not None
    assert conversion.secret["stringData"]["query-token"] == "abc"
    assert "abc" not in yaml.safe_dump(conversion.source)
    [warning] = conversion.warnings
    assert warning == (
        "websocket.url: the query parameter token looks like a credential, its value is in the "
        f"Secret {conversion.secret_name} (key query-token)"
    )


def test_a_password_in_the_url_is_pointed_out() -> None:
    config = config_with(websocket__url="wss://user:pw@ws.example.com/feed")
    [warning] = connector_to_resources(config).warnings
    assert warning.startswith("websocket.url carries a password")


def problems(connector: object) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        connector_to_resources(connector)
    return caught.value.problems


def test_missing_required_keys_are_named() -> None:
    assert problems({"name": "x", "config": {"kafka.topic": "t"}}) == ["websocket.url is required"]
    assert problems({}) == ["websocket.url is required", "kafka.topic is required"]


def test_invalid_values_are_named_with_their_seed_key() -> None:
    assert problems(config_with(websocket__reconnect__enabled="yes")) == [
        "websocket.reconnect.enabled: 'yes' is not true or false"
    ]
    assert problems(config_with(websocket__message__queue__size="lots")) == [
        "websocket.message.queue.size: 'lots' is not an integer"
    ]
    assert problems(config_with(websocket__headers="novalue")) == [
        "websocket.headers: 'novalue' is not name:value"
    ]
    assert problems(config_with(websocket__url="https://example.com")) == [
        "spec.url: must start with ws:// or wss:// (from websocket.url)"
    ]
    [zero_queue] = problems(config_with(websocket__message__queue__size="0"))
    assert zero_queue.startswith("spec.buffer.maxMessages: ")
    assert zero_queue.endswith("(from websocket.message.queue.size)")


def test_non_objects_are_refused() -> None:
    assert problems(["websocket.url"]) == ["the connector must be a JSON object"]
    assert problems({"name": "x", "config": "websocket.url=ws://x"}) == [
        "config: must be a JSON object"
    ]


def yaml_of(conversion: Conversion) -> list[dict[str, Any]]:
    return list(yaml.safe_load_all(conversion_to_yaml(conversion)))


def test_yaml_output_flags_the_bootstrap_servers_and_the_secret() -> None:
    conversion = connector_to_resources(AUTHENTICATED, bootstrap_servers="kafka.kafka.svc:9092")
    text = conversion_to_yaml(conversion)
    comments = [line for line in text.splitlines() if line.startswith("#")]
    assert "authenticated-websocket-connector" in comments[0]
    assert any(
        "CHECK spec.kafka.bootstrapServers (kafka.kafka.svc:9092" in line for line in comments
    )
    assert any("clear text" in line for line in comments)
    assert yaml_of(conversion) == conversion.manifests
    assert text.count("your-bearer-token-here") == 1


def test_yaml_output_without_a_secret() -> None:
    conversion = connector_to_resources(ECHO)
    assert yaml_of(conversion) == [conversion.source]
    assert "clear text" not in conversion_to_yaml(conversion)


def write_json(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "connector.json"
    path.write_text(json.dumps(data))
    return path


def test_command_writes_a_private_file_and_warns_about_the_secret(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out.yaml"
    connector = AUTHENTICATED | {"config": AUTHENTICATED["config"] | {"errors.tolerance": "all"}}
    code = cli.main(
        ["convert", str(write_json(tmp_path, connector)), "-o", str(out), "-n", "feeds"]
    )
    assert code == cli.EXIT_OK
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    secret, source = yaml.safe_load_all(out.read_text())
    assert secret["kind"] == "Secret"
    assert source["metadata"] == {"name": "authenticated-websocket-connector", "namespace": "feeds"}
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "warning: not mapped: errors.tolerance" in captured.err
    assert (
        f"warning: {out} contains the Secret authenticated-websocket-connector-credentials"
        in captured.err
    )
    assert "your-bearer-token-here" not in captured.err


def test_command_prints_to_stdout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["convert", str(write_json(tmp_path, ECHO))]) == cli.EXIT_OK
    captured = capsys.readouterr()
    assert list(yaml.safe_load_all(captured.out)) == [connector_to_resources(ECHO).source]
    assert captured.err == ""


def test_command_exits_2_on_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing_url = write_json(tmp_path, {"name": "x", "config": {"kafka.topic": "t"}})
    assert cli.main(["convert", str(missing_url)]) == cli.EXIT_INVALID
    assert capsys.readouterr().err == "ws2kafka: error: websocket.url is required\n"

    not_json = tmp_path / "broken.json"
    not_json.write_text("{")
    assert cli.main(["convert", str(not_json)]) == cli.EXIT_INVALID
    assert "is not JSON" in capsys.readouterr().err

    assert cli.main(["convert", str(tmp_path / "absent.json")]) == cli.EXIT_INVALID
    assert "cannot read" in capsys.readouterr().err

    nowhere = tmp_path / "missing" / "out.yaml"
    good = write_json(tmp_path, ECHO)
    assert cli.main(["convert", str(good), "-o", str(nowhere)]) == cli.EXIT_INVALID
    assert f"cannot write {nowhere}" in capsys.readouterr().err

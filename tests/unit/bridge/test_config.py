"""The config model: seed defaults, field-named errors, and the seed's accepted-invalid values."""

import pytest

from ws2kafka.bridge.config import Overflow, WebSocketSourceSpec, parse_spec
from ws2kafka.bridge.errors import ConfigError
from ws2kafka.bridge.source import build_headers

MINIMAL = {"url": "wss://feed.example/ws", "kafka": {"bootstrapServers": "k:9092", "topic": "t"}}


def problems(**overrides: object) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_spec({**MINIMAL, **overrides})
    return caught.value.problems


def test_defaults_match_the_seed_connector() -> None:
    spec = parse_spec(MINIMAL)
    assert spec.reconnect.enabled is True
    assert spec.reconnect.initial_delay_seconds == 5.0
    assert spec.buffer.max_messages == 10_000
    assert spec.buffer.overflow is Overflow.BLOCK
    assert spec.connection.connect_timeout_seconds == 30.0
    assert spec.kafka.headers.sequence is True


def test_url_scheme_is_named_in_the_message() -> None:
    assert problems(url="http://feed.example") == ["spec.url: must start with ws:// or wss://"]


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"buffer": {"maxMessages": 0}}, "spec.buffer.maxMessages"),
        ({"buffer": {"maxMessages": -100}}, "spec.buffer.maxMessages"),
        ({"reconnect": {"initialDelaySeconds": 0}}, "spec.reconnect.initialDelaySeconds"),
        ({"reconnect": {"initialDelaySeconds": -1}}, "spec.reconnect.initialDelaySeconds"),
        ({"buffer": {"overflow": "dropAll"}}, "spec.buffer.overflow"),
        ({"kafka": {"bootstrapServers": "k", "topic": ""}}, "spec.kafka.topic"),
        ({"surprise": 1}, "spec.surprise"),
    ],
)
def test_seed_accepted_invalid_values_are_rejected(
    overrides: dict[str, object], field: str
) -> None:
    found = problems(**overrides)
    assert len(found) == 1
    assert found[0].startswith(f"{field}: ")


def test_every_problem_is_reported_at_once() -> None:
    found = problems(url="ftp://x", buffer={"maxMessages": 0}, reconnect={"maxDelaySeconds": -5})
    assert [line.split(":")[0] for line in found] == [
        "spec.url",
        "spec.reconnect.maxDelaySeconds",
        "spec.buffer.maxMessages",
    ]


def test_secret_values_never_appear_in_repr() -> None:
    spec = parse_spec({**MINIMAL, "auth": {"bearerToken": {"value": "hunter2-token"}}})
    assert "hunter2-token" not in repr(spec)
    assert "hunter2-token" not in str(spec.model_dump())


def test_secret_needs_exactly_one_source() -> None:
    found = problems(auth={"bearerToken": {"env": "A", "value": "b"}})
    assert found == ["spec.auth.bearerToken: give exactly one of value, env, file or secretKeyRef"]


def test_secret_from_env_and_file(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    from pathlib import Path

    secret_file = Path(str(tmp_path)) / "token"
    secret_file.write_text("from-file\n")
    monkeypatch.setenv("WS_TOKEN", "from-env")
    spec = WebSocketSourceSpec.model_validate(
        {
            **MINIMAL,
            "headers": [{"name": "X-Key", "valueFrom": {"file": str(secret_file)}}],
            "auth": {"bearerToken": {"env": "WS_TOKEN"}},
        }
    )
    assert spec.auth.bearer_token is not None
    assert spec.auth.bearer_token.resolve() == "from-env"
    assert spec.headers[0].value_from is not None
    assert spec.headers[0].value_from.resolve() == "from-file"


def test_missing_env_secret_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WS_MISSING", raising=False)
    spec = parse_spec({**MINIMAL, "auth": {"bearerToken": {"env": "WS_MISSING"}}})
    assert spec.auth.bearer_token is not None
    with pytest.raises(ConfigError, match="WS_MISSING is not set"):
        spec.auth.bearer_token.resolve()


def test_header_values_and_basic_user_names_refuse_what_breaks_http() -> None:
    assert problems(headers=[{"name": "X", "value": "a\r\nInjected: 1"}])[0].startswith(
        "spec.headers[0].value: "
    )
    basic = {"username": "a:b", "password": {"value": "p"}}
    assert problems(auth={"basic": basic})[0].startswith("spec.auth.basic.username: ")


def test_a_secret_header_value_with_a_newline_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BAD_KEY", "k\r\nX-Evil: 1")
    spec = parse_spec({**MINIMAL, "headers": [{"name": "X-Key", "valueFrom": {"env": "BAD_KEY"}}]})
    with pytest.raises(ConfigError, match="control characters"):
        build_headers(spec)


SECRET = {"secretKeyRef": {"name": "tls", "key": "ca.crt"}}
CONFIG_MAP = {"configMapKeyRef": {"name": "ca", "key": "ca.crt"}}


@pytest.mark.parametrize(
    ("tls", "message"),
    [
        ({"ca": SECRET, "caFile": "/ca.pem"}, "set ca or caFile, not both"),
        ({"clientCert": SECRET}, "clientCert and clientKey go together"),
        ({"clientKeyFile": "/k.pem"}, "clientCert and clientKey go together"),
        (
            {"clientCert": SECRET, "clientKey": CONFIG_MAP},
            "clientKey must come from a Secret (secretKeyRef), not a ConfigMap",
        ),
        ({"ca": {**SECRET, **CONFIG_MAP}}, "give exactly one of secretKeyRef or configMapKeyRef"),
    ],
)
def test_tls_material_comes_from_one_place(tls: dict[str, object], message: str) -> None:
    [problem] = problems(tls=tls)
    assert problem.endswith(message), problem


def test_tls_material_by_reference_or_by_file() -> None:
    by_reference = parse_spec(
        {**MINIMAL, "tls": {"ca": CONFIG_MAP, "clientCert": SECRET, "clientKey": SECRET}}
    )
    assert by_reference.tls.ca is not None
    assert by_reference.tls.ca.config_map_key_ref is not None
    by_file = parse_spec({**MINIMAL, "tls": {"caFile": "/ca.pem"}})
    assert str(by_file.tls.ca_file) == "/ca.pem"

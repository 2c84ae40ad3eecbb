"""Inline mode hands references over as values: Secrets, and the ConfigMap keys of TLS."""

from typing import Any

from ws2kafka.bridge.config import parse_spec
from ws2kafka.operator.inline import resolve_secrets


def test_secret_and_config_map_references_become_values() -> None:
    spec: dict[str, Any] = {
        "url": "wss://feed.example/ws",
        "kafka": {"bootstrapServers": "k:9092", "topic": "t"},
        "auth": {"bearerToken": {"secretKeyRef": {"name": "feed", "key": "token"}}},
        "tls": {
            "ca": {"configMapKeyRef": {"name": "trust", "key": "ca.crt"}},
            "clientCert": {"secretKeyRef": {"name": "mtls", "key": "tls.crt"}},
            "clientKey": {"secretKeyRef": {"name": "mtls", "key": "tls.key"}},
        },
    }

    def secret(namespace: str, name: str, key: str) -> str:
        return f"secret {namespace}/{name}/{key}"

    def config_map(namespace: str, name: str, key: str) -> str:
        return f"config map {namespace}/{name}/{key}"

    resolved = resolve_secrets(spec, "ns", secret, config_map)
    assert resolved["tls"] == {
        "ca": {"value": "config map ns/trust/ca.crt"},
        "clientCert": {"value": "secret ns/mtls/tls.crt"},
        "clientKey": {"value": "secret ns/mtls/tls.key"},
    }
    assert resolved["auth"]["bearerToken"] == {"value": "secret ns/feed/token"}
    parsed = parse_spec(resolved)
    assert parsed.tls.ca is not None
    assert parsed.tls.ca.text("ca") == "config map ns/trust/ca.crt"
    assert spec["tls"]["ca"] == {"configMapKeyRef": {"name": "trust", "key": "ca.crt"}}

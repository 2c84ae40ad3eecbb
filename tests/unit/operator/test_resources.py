"""Rendering a source into its bridge pod: secrets by reference only, hash, hardening."""

import hashlib
import json
from typing import Any

import yaml

from ws2kafka.operator.resources import (
    STOP_MARGIN_SECONDS,
    RenderedSource,
    build_deployment,
    build_role,
    render_source,
)
from ws2kafka.operator.settings import BridgePod, OperatorSettings

SPEC = {
    "url": "wss://feed.example/ws",
    "headers": [
        {"name": "X-Api-Key", "valueFrom": {"secretKeyRef": {"name": "feed", "key": "api"}}},
        {"name": "User-Agent", "value": "me"},
    ],
    "auth": {"bearerToken": {"secretKeyRef": {"name": "feed", "key": "token"}}},
    "kafka": {
        "bootstrapServers": "k:9092",
        "topic": "t",
        "secretProperties": {"sasl.password": {"secretKeyRef": {"name": "kafka", "key": "pw"}}},
    },
    "suspend": False,
}


def secret_file(n: int) -> dict[str, str]:
    return {"file": f"/etc/ws2kafka-secrets/secret-{n}"}


def referenced(rendered: RenderedSource) -> list[dict[str, str]]:
    """The Secret keys the pod's projected secrets volume holds, in order."""
    found = []
    for index, source in enumerate(rendered.secret_sources):
        [item] = source["secret"]["items"]
        assert item["path"] == f"secret-{index}"
        found.append({"name": source["secret"]["name"], "key": item["key"]})
    return found


def test_secret_refs_become_mounted_files_in_order() -> None:
    rendered = render_source(SPEC)
    config = yaml.safe_load(rendered.config_yaml)
    assert config["headers"][0]["valueFrom"] == secret_file(0)
    assert config["headers"][1] == {"name": "User-Agent", "value": "me"}
    assert config["auth"]["bearerToken"] == secret_file(1)
    assert config["kafka"]["secretProperties"]["sasl.password"] == secret_file(2)
    assert "suspend" not in config
    assert referenced(rendered) == [
        {"name": "feed", "key": "api"},
        {"name": "feed", "key": "token"},
        {"name": "kafka", "key": "pw"},
    ]
    pod = build_deployment("src", "ns", rendered, OperatorSettings(), suspended=False)["spec"][
        "template"
    ]["spec"]
    [volume] = [v for v in pod["volumes"] if v["name"] == "secrets"]
    assert volume == {"name": "secrets", "projected": {"sources": rendered.secret_sources}}
    mounts = pod["containers"][0]["volumeMounts"]
    assert {"name": "secrets", "mountPath": "/etc/ws2kafka-secrets", "readOnly": True} in mounts
    assert [e["name"] for e in pod["containers"][0]["env"]] == ["POD_NAME"]


def test_spec_hash_changes_with_the_spec_only() -> None:
    assert render_source(SPEC).spec_hash == render_source(dict(SPEC)).spec_hash
    changed = {**SPEC, "url": "wss://other/ws"}
    assert render_source(changed).spec_hash != render_source(SPEC).spec_hash
    assert render_source({**SPEC, "suspend": True}).spec_hash == render_source(SPEC).spec_hash
    auto = {**SPEC, "autoRestart": {"enabled": True}}
    assert render_source(auto).spec_hash == render_source(SPEC).spec_hash
    assert "autoRestart" not in render_source(auto).config_yaml


def test_auto_restart_keeps_a_bridge_that_gave_up_and_its_delays_roll_no_pod() -> None:
    def args(auto: dict[str, object]) -> list[str]:
        rendered = render_source({**SPEC, "autoRestart": auto})
        deployment = build_deployment("src", "ns", rendered, OperatorSettings(), suspended=False)
        found: list[str] = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        return found

    assert "--stay-after-giving-up" not in args({"enabled": False})
    assert "--stay-after-giving-up" in args({"enabled": True})
    assert args({"enabled": True}) == args({"enabled": True, "initialDelaySeconds": 60})


def test_a_change_of_the_stream_names_changes_the_config_map_but_rolls_no_pod() -> None:
    def with_streams(names: list[str], **streams: Any) -> dict[str, Any]:
        block = {"names": names, "maxPerConnection": 2, "urlTemplate": "wss://f/{streams}"}
        return {**SPEC, "streams": {**block, **streams}}

    running = render_source(with_streams(["a", "b"]))
    renamed = render_source(with_streams(["a", "c", "d"]))
    assert renamed.spec_hash == running.spec_hash, "the pod template stays as it is"
    assert renamed.config_yaml != running.config_yaml, "the bridge reads the names from it"
    assert "- d" in renamed.config_yaml
    settings = OperatorSettings()
    pods = [build_deployment("src", "ns", r, settings, suspended=False) for r in (running, renamed)]
    assert pods[0] == pods[1]
    capped = render_source(with_streams(["a", "b"], maxPerConnection=3))
    assert capped.spec_hash != running.spec_hash, "any other change of streams rolls the pod"
    # a source without streams keeps the hash it had before the names were left out of it
    plain = render_source(SPEC)
    depends = plain.config_yaml + json.dumps(
        [plain.secret_sources, plain.tls_sources], sort_keys=True
    )
    assert plain.spec_hash == hashlib.sha256(depends.encode()).hexdigest()[:16]


def test_deployment_is_hardened_and_suspend_scales_to_zero() -> None:
    rendered = render_source(SPEC)
    deployment = build_deployment("src", "ns", rendered, OperatorSettings(), suspended=False)
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    template = deployment["spec"]["template"]
    assert template["metadata"]["annotations"]["ws2kafka.dev/spec-hash"] == rendered.spec_hash
    container = template["spec"]["containers"][0]
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert template["spec"]["securityContext"]["runAsNonRoot"] is True
    assert container["resources"]["limits"] == {"cpu": "1", "memory": "512Mi"}
    suspended = build_deployment("src", "ns", rendered, OperatorSettings(), suspended=True)
    assert suspended["spec"]["replicas"] == 0


def test_bridge_pods_get_the_operators_placement_and_pull_secrets_only_when_set() -> None:
    rendered = render_source(SPEC)
    plain = build_deployment("src", "ns", rendered, OperatorSettings(), suspended=False)
    placement = ("imagePullSecrets", "nodeSelector", "tolerations", "affinity", "priorityClassName")
    assert not set(placement) & set(plain["spec"]["template"]["spec"])
    pod = BridgePod.model_validate(
        {
            "imagePullSecrets": ["registry"],
            "nodeSelector": {"pool": "feeds"},
            "tolerations": [{"key": "feeds", "operator": "Exists", "effect": "NoSchedule"}],
            "priorityClassName": "high",
        }
    )
    settings = OperatorSettings(bridge_pod=pod)
    spec = build_deployment("src", "ns", rendered, settings, suspended=False)["spec"]
    template = spec["template"]["spec"]
    assert template["imagePullSecrets"] == [{"name": "registry"}]
    assert template["nodeSelector"] == {"pool": "feeds"}
    assert template["tolerations"] == [
        {"key": "feeds", "operator": "Exists", "effect": "NoSchedule"}
    ]
    assert template["priorityClassName"] == "high"
    assert "affinity" not in template


def test_bridge_role_allows_only_its_own_status() -> None:
    assert build_role("src", "ns")["rules"] == [
        {
            "apiGroups": ["ws2kafka.dev"],
            "resources": ["websocketsources/status"],
            "resourceNames": ["src"],
            "verbs": ["get", "patch"],
        }
    ]


def test_the_grace_period_covers_the_drain_timeout() -> None:
    def grace(spec: dict[str, object]) -> int:
        deployment = build_deployment(
            "s", "ns", render_source(spec), OperatorSettings(), suspended=False
        )
        seconds: int = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        return seconds

    assert grace(SPEC) == 25 + STOP_MARGIN_SECONDS  # the default drain timeout
    assert grace({**SPEC, "drainTimeoutSeconds": 3600}) == 3600 + STOP_MARGIN_SECONDS
    assert grace({**SPEC, "drainTimeoutSeconds": 0.5}) == 1 + STOP_MARGIN_SECONDS


def test_a_bridge_that_cannot_start_leaves_its_error_as_termination_message() -> None:
    deployment = build_deployment(
        "s", "ns", render_source(SPEC), OperatorSettings(), suspended=False
    )
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"


def test_tls_references_become_files_mounted_from_their_secret_and_config_map() -> None:
    tls = {
        "ca": {"configMapKeyRef": {"name": "trust", "key": "ca.crt"}},
        "clientCert": {"secretKeyRef": {"name": "mtls", "key": "tls.crt"}},
        "clientKey": {"secretKeyRef": {"name": "mtls", "key": "tls.key"}},
    }
    rendered = render_source({**SPEC, "tls": tls})
    config = yaml.safe_load(rendered.config_yaml)
    assert config["tls"] == {
        "caFile": "/etc/ws2kafka-tls/ca.pem",
        "clientCertFile": "/etc/ws2kafka-tls/client.pem",
        "clientKeyFile": "/etc/ws2kafka-tls/client-key.pem",
    }
    assert "mtls" not in [ref["name"] for ref in referenced(rendered)]
    pod = build_deployment("s", "ns", rendered, OperatorSettings(), suspended=False)["spec"][
        "template"
    ]["spec"]
    [volume] = [v for v in pod["volumes"] if v["name"] == "tls"]
    assert volume["projected"]["sources"] == [
        {"configMap": {"name": "trust", "items": [{"key": "ca.crt", "path": "ca.pem"}]}},
        {"secret": {"name": "mtls", "items": [{"key": "tls.crt", "path": "client.pem"}]}},
        {"secret": {"name": "mtls", "items": [{"key": "tls.key", "path": "client-key.pem"}]}},
    ]
    [mount] = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "tls"]
    assert mount == {"name": "tls", "mountPath": "/etc/ws2kafka-tls", "readOnly": True}
    # another key rolls the pod; no TLS reference, no volume
    other = {**tls, "ca": {"configMapKeyRef": {"name": "trust", "key": "new.crt"}}}
    assert render_source({**SPEC, "tls": other}).spec_hash != rendered.spec_hash
    plain = build_deployment("s", "ns", render_source(SPEC), OperatorSettings(), suspended=False)
    assert "tls" not in [v["name"] for v in plain["spec"]["template"]["spec"]["volumes"]]


def test_secret_query_values_become_files_too() -> None:
    spec = {
        "url": "wss://feed.example/ws",
        "query": [
            {"name": "token", "valueFrom": {"secretKeyRef": {"name": "feed", "key": "token"}}},
            {"name": "depth", "value": "10"},
        ],
        "kafka": {"bootstrapServers": "k:9092", "topic": "t"},
    }
    rendered = render_source(spec)
    config = yaml.safe_load(rendered.config_yaml)
    assert config["query"] == [
        {"name": "token", "valueFrom": secret_file(0)},
        {"name": "depth", "value": "10"},
    ]
    assert referenced(rendered) == [{"name": "feed", "key": "token"}]


def test_token_request_secrets_become_files_and_stay_out_of_the_config_map() -> None:
    key = {"secretKeyRef": {"name": "binance-api", "key": "apiKey"}}
    request = {
        "url": "https://api.example/userDataStream",
        "headers": [{"name": "K", "valueFrom": key}],
    }
    spec = {
        "url": "wss://feed.example/ws/{listenKey.token}",
        "tokens": [
            {
                "name": "listenKey",
                "request": {**request, "body": '{"s":"{secret}"}', "values": {"secret": key}},
                "token": "/listenKey",
                "keepAlive": {"request": {**request, "method": "PUT"}},
            }
        ],
        "kafka": {"bootstrapServers": "k:9092", "topic": "t"},
    }
    rendered = render_source(spec)
    config = yaml.safe_load(rendered.config_yaml)
    [token] = config["tokens"]
    assert token["request"]["headers"][0]["valueFrom"] == secret_file(0)
    assert token["request"]["values"] == {"secret": secret_file(1)}
    assert token["keepAlive"]["request"]["headers"][0]["valueFrom"] == secret_file(2)
    assert referenced(rendered) == [key["secretKeyRef"]] * 3
    assert "secretKeyRef" not in rendered.config_yaml

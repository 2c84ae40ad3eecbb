"""The generated CRD in a real API server: it is accepted, applies the model's defaults,
rejects what the bridge would reject with the field's name, and its columns show the status.
"""

from __future__ import annotations

import copy
import json
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from ws2kafka.bridge.config import parse_spec
from ws2kafka.bridge.errors import ConfigError
from ws2kafka.bridge.gaps import rfc3339
from ws2kafka.bridge.reporting import LinkState, StatusSnapshot, connections_summary
from ws2kafka.bridge.stats import ConnectionState
from ws2kafka.devstack.kube import ControlPlane
from ws2kafka.operator.constants import API_VERSION, GROUP, KIND, PLURAL
from ws2kafka.operator.convert import connector_to_resources, conversion_to_yaml

pytestmark = pytest.mark.k8s

REPO = Path(__file__).resolve().parents[2]
CRD_PATH = REPO / "crds" / "websocketsource.yaml"
MINIMAL_SPEC: dict[str, Any] = {
    "url": "wss://feed.example/ws",
    "kafka": {"bootstrapServers": "kafka:9092", "topic": "trades"},
}
SECRET_REF = {"secretKeyRef": {"name": "creds", "key": "token"}}


@pytest.fixture(scope="module")
def crd(kube: ControlPlane) -> None:
    """Install the CRD; other modules may have done so already, and applying the same file
    again changes nothing."""
    kube.kubectl("apply", "-f", str(CRD_PATH))
    kube.wait_established(f"crd/{PLURAL}.{GROUP}")


@pytest.fixture
def namespace(kube: ControlPlane, crd: None) -> Iterator[str]:
    name = f"test-{uuid.uuid4().hex[:12]}"
    kube.kubectl("create", "namespace", name)
    yield name
    kube.kubectl("delete", "namespace", name, "--wait=false")


def source(name: str, spec: dict[str, Any]) -> str:
    manifest = {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": name}, "spec": spec}
    return json.dumps(manifest)


def stored_spec(kube: ControlPlane, namespace: str, name: str) -> dict[str, Any]:
    fetched = kube.kubectl("get", "-n", namespace, "wss", name, "-o", "json").stdout
    spec: dict[str, Any] = json.loads(fetched)["spec"]
    return spec


def test_a_minimal_source_is_stored_with_the_models_defaults(
    kube: ControlPlane, namespace: str
) -> None:
    kube.kubectl("apply", "-n", namespace, "-f", "-", input=source("minimal", MINIMAL_SPEC))
    stored = stored_spec(kube, namespace, "minimal")
    assert stored["buffer"]["maxMessages"] == 10000
    assert stored["reconnect"]["initialDelaySeconds"] == 5
    assert stored["kafka"]["key"] == {"source": "none"}
    # Every default the API server filled in is the bridge's own default, nothing more or less.
    expected = parse_spec(MINIMAL_SPEC).model_dump(mode="json", by_alias=True, exclude_none=True)
    assert stored == expected


def with_changes(path: str, value: Any) -> dict[str, Any]:
    """MINIMAL_SPEC with the field at the dotted ``path`` set (or removed, for ``...``)."""
    spec = copy.deepcopy(MINIMAL_SPEC)
    *parents, leaf = path.split(".")
    node = spec
    for part in parents:
        node = node.setdefault(part, {})
    if value is ...:
        del node[leaf]
    else:
        node[leaf] = value
    return spec


#: A token provider the invalid cases below change.
TOKEN = {"name": "listenKey", "request": {"url": "https://api.example/k"}, "token": "/k"}

INVALID = {
    "url scheme": (
        with_changes("url", "https://feed.example/ws"),
        "spec.url",
        "must start with ws:// or wss://",
    ),
    "empty buffer": (
        with_changes("buffer.maxMessages", 0),
        "spec.buffer.maxMessages",
        "greater than or equal to 1",
    ),
    "unknown overflow": (
        with_changes("buffer.overflow", "dropAll"),
        "spec.buffer.overflow",
        "dropAll",
    ),
    "no topic": (with_changes("kafka.topic", ...), "spec.kafka.topic", "Required value"),
    "inline secret": (
        with_changes("auth.bearerToken", {"value": "s3cret-token"}),
        "spec.auth.bearerToken.value",
        "unknown field",
    ),
    "secret without reference": (
        with_changes("auth.bearerToken", {}),
        "spec.auth.bearerToken.secretKeyRef",
        "needs secretKeyRef",
    ),
    "static key without value": (
        with_changes("kafka.key", {"source": "static"}),
        "spec.kafka.key.value",
        "source static needs value",
    ),
    "pointer key without pointer": (
        with_changes("kafka.key", {"source": "jsonPointer"}),
        "spec.kafka.key.pointer",
        "source jsonPointer needs pointer",
    ),
    "pointer timestamp without pointer": (
        with_changes("kafka.timestamp", {"source": "jsonPointer"}),
        "spec.kafka.timestamp.pointer",
        "source jsonPointer needs pointer",
    ),
    "backoff cap below start": (
        with_changes("reconnect", {"initialDelaySeconds": 10, "maxDelaySeconds": 5}),
        "spec.reconnect.maxDelaySeconds",
        "maxDelaySeconds must be >= initialDelaySeconds",
    ),
    "header with two values": (
        with_changes("headers", [{"name": "X-Key", "value": "a", "valueFrom": SECRET_REF}]),
        "spec.headers[0]",
        "give exactly one of value or valueFrom",
    ),
    "header without value": (
        with_changes("headers", [{"name": "X-Key"}]),
        "spec.headers[0]",
        "give exactly one of value or valueFrom",
    ),
    "two auth schemes": (
        with_changes(
            "auth", {"bearerToken": SECRET_REF, "basic": {"username": "u", "password": SECRET_REF}}
        ),
        "spec.auth",
        "set bearerToken or basic, not both",
    ),
    "client cert without key": (
        with_changes("tls.clientCert", SECRET_REF),
        "spec.tls",
        "clientCert and clientKey go together",
    ),
    "client key from a ConfigMap": (
        with_changes(
            "tls",
            {"clientCert": SECRET_REF, "clientKey": {"configMapKeyRef": {"name": "c", "key": "k"}}},
        ),
        "spec.tls.clientKey",
        "clientKey must come from a Secret",
    ),
    "CA from a Secret and a ConfigMap": (
        with_changes("tls.ca", {**SECRET_REF, "configMapKeyRef": {"name": "c", "key": "k"}}),
        "spec.tls.ca",
        "give exactly one of secretKeyRef or configMapKeyRef",
    ),
    "a local CA file": (
        with_changes("tls.caFile", "/etc/tls/ca.pem"),
        "spec.tls.caFile",
        "unknown field",
    ),
    "reserved producer property": (
        with_changes("kafka.properties", {"bootstrap.servers": "elsewhere:9092"}),
        "spec.kafka.properties",
        "are set by the bridge",
    ),
    "unknown field": (with_changes("surprise", 1), "spec.surprise", "unknown field"),
    "rule condition without a test": (
        with_changes("messages.rules", [{"name": "ping", "match": [{}]}]),
        "spec.messages.rules[0].match[0]",
        "give exactly one of text or pointer",
    ),
    "two rules of one name": (
        with_changes(
            "messages.rules",
            [{"name": "ack", "match": [{"pointer": "/a"}]}] * 2,
        ),
        "spec.messages.rules[1]",
        "Duplicate value",
    ),
    "rule name not a label": (
        with_changes("messages.rules", [{"name": "Ping Rule", "match": [{"pointer": "/p"}]}]),
        "spec.messages.rules[0].name",
        "should match",
    ),
    "control route without a topic": (
        with_changes(
            "messages.rules", [{"name": "ack", "match": [{"pointer": "/a"}], "route": "control"}]
        ),
        "spec.messages.controlTopic",
        "a rule routes to control: set controlTopic",
    ),
    "subscription without subscribe": (
        with_changes("subscription", {"success": [{"pointer": "/result"}]}),
        "spec.subscription",
        "give subscribe",
    ),
    "routing template without a field": (
        with_changes("kafka.routing", {"template": "trades"}),
        "spec.kafka.routing.template",
        "template names no field",
    ),
    "two tokens of one name": (
        with_changes("tokens", [TOKEN] * 2),
        "spec.tokens[1]",
        "Duplicate value",
    ),
    "a token request that is no HTTP URL": (
        with_changes("tokens", [{**TOKEN, "request": {"url": "ftp://api.example/"}}]),
        "spec.tokens[0].request.url",
        "should match",
    ),
    "a URL that is neither ws nor a fetched endpoint": (
        with_changes("url", "{listenKey.token}/x"),
        "spec.url",
        "must start with ws:// or wss://",
    ),
}


#: Fields a local config file may set, and a resource may not.
LOCAL_ONLY = {"spec.auth.bearerToken.value", "spec.tls.caFile"}


@pytest.mark.parametrize(("spec", "field", "message"), INVALID.values(), ids=INVALID.keys())
def test_invalid_sources_are_rejected_naming_the_field(
    kube: ControlPlane, namespace: str, spec: dict[str, Any], field: str, message: str
) -> None:
    result = kube.kubectl(
        "apply", "-n", namespace, "-f", "-", input=source("bad", spec), check=False
    )
    assert result.returncode != 0, "the API server accepted it"
    assert field in result.stderr
    assert message in result.stderr
    assert "s3cret" not in result.stderr, "a secret value was echoed"
    # inline secrets and file paths are fine in local config files
    if field not in LOCAL_ONLY:
        with pytest.raises(ConfigError):
            parse_spec(spec)


def test_rule_values_of_any_json_type_are_stored_as_written(
    kube: ControlPlane, namespace: str
) -> None:
    """``equals`` and ``oneOf`` take any JSON value: the API server keeps them as written
    (no pruning of the untyped nodes), and the bridge reads back the same rule."""
    conditions: list[dict[str, Any]] = [
        {"pointer": "/result", "isNull": True},
        {"pointer": "/id", "oneOf": [1, "one", True, {"n": [1]}]},
        {"pointer": "/params", "equals": {"channel": "trades", "depth": [1, 2.5]}},
    ]
    spec = with_changes("messages.rules", [{"name": "ack", "match": conditions}])
    kube.kubectl("apply", "-n", namespace, "-f", "-", input=source("rules", spec))
    stored = stored_spec(kube, namespace, "rules")
    defaults: dict[str, Any] = {"isNull": False}
    assert stored["messages"]["rules"][0]["match"] == [defaults | c for c in conditions]
    assert parse_spec(stored).messages.rules[0].match[0].is_null


def table(output: str) -> list[dict[str, str]]:
    """Rows of ``kubectl get``, cut where the header's columns start (a name may have a space,
    and a value may be empty)."""
    header, *rows = output.splitlines()
    columns = [(match.start(), match.group()) for match in re.finditer(r"\S+(?: \S+)*", header)]
    ends = [start for start, _ in columns[1:]] + [None]
    return [
        {name: row[start:end].strip() for (start, name), end in zip(columns, ends, strict=True)}
        for row in rows
    ]


def test_columns_show_what_the_bridge_and_the_operator_report(
    kube: ControlPlane, namespace: str
) -> None:
    ns = ("-n", namespace)
    kube.kubectl("apply", *ns, "-f", "-", input=source("trades", MINIMAL_SPEC))
    narrow = kube.kubectl("get", *ns, "wssources").stdout
    assert list(table(narrow)[0]) == [
        "NAME",
        "TOPIC",
        "STATE",
        "READY",
        "CONNECTIONS",
        "MESSAGES",
        "LAST MESSAGE",
        "AGE",
    ]
    wide = kube.kubectl("get", *ns, "wssources", "-o", "wide").stdout
    assert list(table(wide)[0])[:3] == ["NAME", "URL", "TOPIC"]
    assert table(wide)[0]["URL"] == "wss://feed.example/ws"

    now = time.time()
    snapshot = StatusSnapshot(
        state=ConnectionState.CONNECTED,
        since=now - 300,
        longest_connected=300,
        last_message_time=now - 30,
        messages_received=1234,
        messages_produced=1230,
        messages_dropped=0,
        messages_failed=0,
        reconnects=2,
        last_error=None,
        connection_id="c-1",
        reported_at=now,
        connections=connections_summary(
            [LinkState(3, ConnectionState.BACKOFF, "refused", ("ethusdt@trade",))], 12
        ),
    )
    ready = {
        "type": "Ready",
        "status": "True",
        "reason": "Streaming",
        "message": "connected and producing to Kafka",
        "lastTransitionTime": rfc3339(now),
        "observedGeneration": 1,
    }
    connection = {**snapshot.to_status(), "podName": "trades-7d4b9-x2x1z"}
    status = {"connection": connection, "conditions": [ready], "observedGeneration": 1}
    kube.kubectl(
        "patch",
        *ns,
        "wss",
        "trades",
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": status}),
    )

    [row] = table(kube.kubectl("get", *ns, "wssources").stdout)
    assert row["CONNECTIONS"] == "11/12"
    assert (row["NAME"], row["TOPIC"], row["STATE"], row["READY"], row["MESSAGES"]) == (
        "trades",
        "trades",
        "Connected",
        "True",
        "1230",
    )
    age = re.fullmatch(r"(\d+)s", row["LAST MESSAGE"])  # kubectl shows a date as its age
    assert age, row
    assert 30 <= int(age.group(1)) < 90
    stored = json.loads(kube.kubectl("get", *ns, "wss", "trades", "-o", "json").stdout)["status"]
    assert stored["connection"] == {
        key: value for key, value in connection.items() if value is not None
    }


RESOURCE_EXAMPLES = [
    path
    for path in sorted((REPO / "examples").glob("*.yaml"))
    if any(doc.get("kind") == KIND for doc in yaml.safe_load_all(path.read_text()))
]


@pytest.mark.parametrize("path", RESOURCE_EXAMPLES, ids=[path.name for path in RESOURCE_EXAMPLES])
def test_examples_are_accepted_by_the_api_server(
    kube: ControlPlane, namespace: str, path: Path
) -> None:
    result = kube.kubectl("apply", "--dry-run=server", "-n", namespace, "-f", str(path))
    assert "(server dry run)" in result.stdout


def test_a_converted_connector_is_accepted_by_the_api_server(
    kube: ControlPlane, namespace: str
) -> None:
    connector = {
        "name": "authenticated-websocket-connector",
        "config": {
            "connector.class": "io.conduktor.connect.websocket.WebSocketSourceConnector",
            "websocket.url": "wss://api.example.com/ws",
            "kafka.topic": "authenticated-stream",
            "websocket.auth.token": "your-bearer-token-here",
            "websocket.headers": "User-Agent:KafkaConnectWebSocket/1.0,X-Api-Key:k",
            "websocket.reconnect.interval.ms": "2500",
            "websocket.message.queue.size": "50000",
            "websocket.connection.timeout.ms": "10000",
        },
    }
    manifests = conversion_to_yaml(connector_to_resources(connector))
    result = kube.kubectl("apply", "--dry-run=server", "-n", namespace, "-f", "-", input=manifests)
    assert result.stdout.count("(server dry run)") == 2

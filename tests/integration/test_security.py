"""Security checks: a known secret never surfaces anywhere an operator or a user can read it,
the bridge's ServiceAccount can do nothing but report its own status, and hostile input (bad
frames forever, huge strings in a resource) gets a clear error, never a crash loop.

A pod-mode operator watches ``sec-*`` namespaces; as in ``test_operator.py``, the test plays
the kubelet: it runs the bridge process with the rendered config, the Secret values in the
environment variables the Deployment names, and a token of the bridge's ServiceAccount.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import shutil
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from ws2kafka.bridge.service import Bridge, ExitCode
from ws2kafka.bridge.stats import ConnectionState
from ws2kafka.devstack.feeds import (
    HOSTILE_FRAME_LIMIT,
    VIOLATIONS,
    HostileFeed,
    SequenceFeed,
)
from ws2kafka.devstack.harness import bridge_spec, new_topic, record_count, run_until, seqs
from ws2kafka.devstack.kafka import KafkaBroker
from ws2kafka.devstack.kube import ControlPlane
from ws2kafka.devstack.operator_probe import wait_until_watching
from ws2kafka.devstack.private_feeds import BinanceUserDataFeed
from ws2kafka.devstack.processes import ManagedProcess, free_port
from ws2kafka.devstack.waiting import until, wait_until
from ws2kafka.operator.constants import SECRETS_DIR

REPO = Path(__file__).resolve().parents[2]
CRD = REPO / "crds" / "websocketsource.yaml"
TOKEN = "sec-tok-7d1e52a0c4b94f6e"
API_KEY = "sec-key-2b8f3c91e07d4a55"
#: A secret of the URL's query (spec.query).
QUERY_TOKEN = "sec-query-5c2e9a17d3f04b68"
#: The API key of a token request (spec.tokens): the fetched tokens are secrets too.
TOKEN_API_KEY = "sec-token-api-9e4d7b21a8c6f30e"
SECRETS = (TOKEN, API_KEY, QUERY_TOKEN, TOKEN_API_KEY)


def command(name: str) -> str:
    path = Path(sys.executable).parent / name
    return str(path) if path.exists() else shutil.which(name) or name


def leaks(text: str, *fetched: str) -> list[str]:
    """The secret values (and the ``fetched`` tokens) found in ``text``, plain or
    base64-encoded."""
    secrets = (*SECRETS, *fetched)
    forms = [(s, s) for s in secrets] + [
        (s, base64.b64encode(s.encode()).decode()) for s in secrets
    ]
    return sorted({secret for secret, form in forms if form in text})


@pytest.fixture(scope="module")
def crd(kube: ControlPlane) -> None:
    kube.kubectl("apply", "-f", str(CRD))
    kube.wait_established("crd/websocketsources.ws2kafka.dev")


@pytest.fixture(scope="module")
def operator(
    kube: ControlPlane, crd: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ManagedProcess]:
    """A pod-mode operator for the ``sec-*`` namespaces."""
    workdir = tmp_path_factory.mktemp("sec-operator")
    process = ManagedProcess(
        "operator-sec",
        [
            command("ws2kafka-operator"),
            "run",
            "--mode",
            "pod",
            "--namespace",
            "sec-*",
            "--heartbeat-timeout",
            "4",
            "--metrics-port",
            "0",
        ],
        workdir / "operator.log",
        env={
            **kube.env(),
            "WS2KAFKA_OPERATOR_CONDITION_INTERVAL_SECONDS": "1",
            "WS2KAFKA_OPERATOR_REPORT_INTERVAL_SECONDS": "1",
        },
    )
    with process:
        process.wait_until(
            lambda: "operator starting" in process.log_path.read_text(), timeout=30, what="startup"
        )
        wait_until_watching(kube, process, "sec-*")
        yield process


def new_namespace(kube: ControlPlane) -> str:
    namespace = f"sec-{uuid.uuid4().hex[:8]}"
    kube.kubectl("create", "namespace", namespace)
    return namespace


def manifest(name: str, spec: dict[str, Any]) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "ws2kafka.dev/v1alpha1",
            "kind": "WebSocketSource",
            "metadata": {"name": name},
            "spec": spec,
        }
    )


def ready_condition(source: dict[str, Any]) -> dict[str, Any]:
    for cond in source.get("status", {}).get("conditions", []):
        if cond["type"] == "Ready":
            return dict(cond)
    return {}


def kubelet_secret_files(
    kube: ControlPlane, ns: str, deployment: str, secrets: dict[str, str], folder: Path
) -> int:
    """The files the kubelet would mount for the bridge container (its projected ``secrets``
    volume), written into ``folder`` from ``secrets`` (key -> value); how many there are."""
    pod = kube.get_json(ns, "deployment", deployment)["spec"]["template"]["spec"]
    [volume] = [v for v in pod["volumes"] if v["name"] == "secrets"]
    folder.mkdir()
    written = 0
    for source in volume["projected"]["sources"]:
        for item in source["secret"]["items"]:
            (folder / item["path"]).write_text(secrets[item["key"]])
            written += 1
    return written


@pytest.mark.k8s
@pytest.mark.kafka
async def test_a_known_token_appears_in_no_log_event_status_configmap_or_description(
    kube: ControlPlane, kafka: KafkaBroker, operator: ManagedProcess, tmp_path: Path
) -> None:
    ns = new_namespace(kube)
    topic = f"sec-{uuid.uuid4().hex[:8]}"
    kafka.create_topic(topic)
    kube.kubectl(
        "-n",
        ns,
        "create",
        "secret",
        "generic",
        "feed",
        f"--from-literal=token={TOKEN}",
        f"--from-literal=apikey={API_KEY}",
        f"--from-literal=query={QUERY_TOKEN}",
        f"--from-literal=tokenapi={TOKEN_API_KEY}",
    )
    refused: list[str] = []

    def refuse_first(connection: ServerConnection, request: Request) -> Response | None:
        # the first handshake is refused: the failure path (error, status, event) runs too
        if not refused:
            refused.append(request.headers.get("Authorization", ""))
            return Response(401, "Unauthorized", Headers(), b"bad token\n")
        return None

    token_server = BinanceUserDataFeed(TOKEN_API_KEY, lifetime=600, frames=0)
    async with token_server, SequenceFeed(rate=50, process_request=refuse_first) as feed:
        api_key = {"secretKeyRef": {"name": "feed", "key": "tokenapi"}}
        request = {
            "method": "POST",
            "url": f"{token_server.base}/api/v3/userDataStream",
            "headers": [{"name": "X-MBX-APIKEY", "valueFrom": api_key}],
        }
        spec = {
            "url": feed.url,
            "kafka": {"bootstrapServers": kafka.bootstrap_servers, "topic": topic},
            "reconnect": {"initialDelaySeconds": 0.2, "maxDelaySeconds": 1},
            "auth": {"bearerToken": {"secretKeyRef": {"name": "feed", "key": "token"}}},
            "headers": [
                {
                    "name": "X-Api-Key",
                    "valueFrom": {"secretKeyRef": {"name": "feed", "key": "apikey"}},
                },
                # a fetched token, placed into a header of the handshake
                {"name": "X-Listen-Key", "value": "{listenKey.token}"},
            ],
            "query": [
                {"name": "token", "valueFrom": {"secretKeyRef": {"name": "feed", "key": "query"}}}
            ],
            "tokens": [{"name": "listenKey", "request": request, "token": "/listenKey"}],
        }
        kube.kubectl("-n", ns, "apply", "-f", "-", input=manifest("guarded", spec))
        await until(
            lambda: (
                kube.kubectl(
                    "-n", ns, "get", "deployment", "guarded-bridge", check=False
                ).returncode
                == 0
            ),
            30,
            "the Deployment",
        )
        # the pod's mounts, where this test can write them
        mounted = tmp_path / "secrets"
        secrets = {
            "token": TOKEN, "apikey": API_KEY, "query": QUERY_TOKEN, "tokenapi": TOKEN_API_KEY,
        }  # fmt: skip
        assert kubelet_secret_files(kube, ns, "guarded-bridge", secrets, mounted) == 4
        rendered = kube.get_json(ns, "configmap", "guarded-bridge")["data"]["source.yaml"]
        config = tmp_path / "source.yaml"
        config.write_text(rendered.replace(SECRETS_DIR, str(mounted)))
        token = kube.service_account_token(ns, "guarded-bridge")
        kubeconfig = kube.write_kubeconfig(tmp_path / "bridge-kubeconfig", token)
        bridge = ManagedProcess(
            "bridge",
            [
                command("ws2kafka-operator"),
                "bridge",
                "--config",
                str(config),
                "--resource",
                f"{ns}/guarded",
                "--metrics-port",
                "0",
                "--report-interval",
                "1",
                "--summary-interval",
                "1",
            ],
            tmp_path / "bridge.log",
            env={"KUBECONFIG": str(kubeconfig), "POD_NAME": "guarded-bridge-test"},
        )
        with bridge:
            await until(lambda: kube.get_json(ns, "pods")["items"], 30, "a Pod object")
            kube.mark_pods_ready(ns)

            def streaming() -> bool:
                source = kube.get_json(ns, "wss", "guarded")
                produced = source.get("status", {}).get("connection", {}).get("messagesProduced", 0)
                return ready_condition(source).get("status") == "True" and produced > 20

            await until(streaming, 60, "Ready=True with records")
        # stopped (SIGTERM): the final summary is in the log as well
    # the secrets were really used: the feed saw them
    assert refused == [f"Bearer {TOKEN}"]
    assert feed.connections[0].headers["Authorization"] == f"Bearer {TOKEN}"
    assert feed.connections[0].headers["X-Api-Key"] == API_KEY
    assert feed.connections[0].path.endswith(f"?token={QUERY_TOKEN}")
    assert token_server.tokens, "a listenKey was fetched with the API key"
    assert feed.connections[0].headers["X-Listen-Key"] == token_server.tokens[-1]
    bridge_log = bridge.log_path.read_text()
    assert "final summary" in bridge_log
    assert "AuthenticationFailed" in bridge_log  # the refusal was logged, without the token
    places = {
        "operator log": operator.log_path.read_text(),
        "bridge log": bridge_log,
        "events": kube.kubectl("-n", ns, "get", "events", "-o", "yaml").stdout,
        "resource and status": kube.kubectl("-n", ns, "get", "wss", "-o", "yaml").stdout,
        "configmaps": kube.kubectl("-n", ns, "get", "configmaps", "-o", "yaml").stdout,
        "children": kube.kubectl(
            "-n", ns, "get", "deployments,replicasets,pods,serviceaccounts,roles", "-o", "yaml"
        ).stdout,
        "describe wss": kube.kubectl("-n", ns, "describe", "wss").stdout,
        "describe children": kube.kubectl(
            "-n", ns, "describe", "deployments,pods,configmaps"
        ).stdout,
    }
    fetched = token_server.tokens
    found = {place: leaks(text, *fetched) for place, text in places.items()}
    assert {place: found for place, found in found.items() if found} == {}


@pytest.mark.k8s
def test_the_bridge_service_account_can_report_its_status_and_nothing_else(
    kube: ControlPlane, operator: ManagedProcess
) -> None:
    ns = new_namespace(kube)
    kube.kubectl("-n", ns, "create", "secret", "generic", "feed", f"--from-literal=token={TOKEN}")
    spec = {"url": "ws://feed:1/x", "kafka": {"bootstrapServers": "kafka:9092", "topic": "t"}}
    kube.kubectl("-n", ns, "apply", "-f", "-", input=manifest("own", spec))
    kube.kubectl("-n", ns, "apply", "-f", "-", input=manifest("other", spec))
    wait_until(
        lambda: (
            kube.kubectl("-n", ns, "get", "rolebinding", "own-bridge", check=False).returncode == 0
        ),
        30,
        "the bridge's RoleBinding",
    )
    token = kube.service_account_token(ns, "own-bridge")

    def can(*args: str) -> str:
        answer = kube.kubectl("auth", "can-i", *args, token=token, check=False)
        return answer.stdout.strip()

    allowed = [
        ("patch", "websocketsources/own", "--subresource=status", "-n", ns),
        ("get", "websocketsources/own", "--subresource=status", "-n", ns),
    ]
    denied = [
        ("get", "secrets", "-n", ns),
        ("list", "secrets", "-n", ns),
        ("watch", "secrets", "-n", ns),
        ("get", "secrets/feed", "-n", ns),
        ("get", "secrets", "--all-namespaces"),
        ("get", "configmaps", "-n", ns),
        ("patch", "websocketsources/own", "-n", ns),
        ("update", "websocketsources/own", "-n", ns),
        ("delete", "websocketsources/own", "-n", ns),
        ("create", "websocketsources", "-n", ns),
        ("patch", "websocketsources/other", "--subresource=status", "-n", ns),
        ("patch", "deployments/own-bridge", "-n", ns),
        ("patch", "roles/own-bridge", "-n", ns),
        ("create", "pods", "-n", ns),
        ("create", "serviceaccounts/token", "-n", ns),
        ("impersonate", "serviceaccounts", "-n", ns),
        ("patch", "customresourcedefinitions"),
    ]
    assert {args: can(*args) for args in allowed} == dict.fromkeys(allowed, "yes")
    assert {args: can(*args) for args in denied} == dict.fromkeys(denied, "no")
    # and the API server enforces it: a spec change with the token is forbidden
    stolen = kube.kubectl(
        "-n",
        ns,
        "patch",
        "wss",
        "own",
        "--type=merge",
        "-p",
        '{"spec": {"url": "ws://attacker:1/"}}',
        token=token,
        check=False,
    )
    assert stolen.returncode != 0
    assert "forbidden" in stolen.stderr.lower()
    assert kube.get_json(ns, "wss", "own")["spec"]["url"] == "ws://feed:1/x"


@pytest.mark.k8s
@pytest.mark.parametrize(
    ("field", "value", "limit"),
    [
        ("url", "ws://feed/" + "a" * 3000, "2048"),
        ("kafka.topic", "t" * 300, "249"),
        ("headers[0].value", "v" * 9000, "8192"),
        ("kafka.bootstrapServers", "k" * 5000, "4096"),
    ],
    ids=["url", "topic", "header", "bootstrap"],
)
def test_a_resource_with_a_huge_string_is_refused_naming_the_field_and_limit(
    kube: ControlPlane, crd: None, field: str, value: str, limit: str
) -> None:
    spec: dict[str, Any] = {
        "url": "ws://feed:1/x",
        "kafka": {"bootstrapServers": "kafka:9092", "topic": "t"},
        "headers": [{"name": "X-Test", "value": "ok"}],
    }
    if field == "url":
        spec["url"] = value
    elif field == "headers[0].value":
        spec["headers"][0]["value"] = value
    else:
        spec["kafka"][field.split(".")[1]] = value
    ns = f"huge-{uuid.uuid4().hex[:8]}"
    kube.kubectl("create", "namespace", ns)
    refused = kube.kubectl("-n", ns, "apply", "-f", "-", input=manifest("huge", spec), check=False)
    assert refused.returncode != 0
    assert f"spec.{field}" in refused.stderr
    assert "Too long" in refused.stderr
    assert limit in refused.stderr
    assert kube.kubectl("-n", ns, "get", "wss", "-o", "name").stdout == ""


@pytest.mark.k8s
def test_a_ten_megabyte_subscription_in_a_resource_is_refused_clearly(
    kube: ControlPlane, crd: None
) -> None:
    ns = f"huge-{uuid.uuid4().hex[:8]}"
    kube.kubectl("create", "namespace", ns)
    spec = {
        "url": "ws://feed:1/x",
        "kafka": {"bootstrapServers": "kafka:9092", "topic": "t"},
        "subscribe": ['{"op":"subscribe","args":"' + "x" * (10 * 1024 * 1024) + '"}'],
    }
    started = time.monotonic()
    refused = kube.kubectl("-n", ns, "apply", "-f", "-", input=manifest("huge", spec), check=False)
    assert refused.returncode != 0
    assert "too large" in refused.stderr.lower(), refused.stderr[:500]
    assert time.monotonic() - started < 60
    assert kube.kubectl("-n", ns, "get", "wss", "-o", "name").stdout == ""


# -- hostile frames, over and over ------------------------------------------------------------


@pytest.mark.kafka
@pytest.mark.parametrize(
    ("violation", "close_code"),
    list(VIOLATIONS.values()),
    ids=list(VIOLATIONS),
)
async def test_a_feed_that_always_sends_a_bad_frame_gets_backoff_not_a_crash_loop(
    kafka: KafkaBroker,
    violation: Callable[[ServerConnection], Awaitable[None]],
    close_code: int,
) -> None:
    topic = new_topic(kafka)
    async with HostileFeed(violation, every=True) as feed:
        spec = bridge_spec(
            kafka,
            feed.url,
            topic,
            connection={"maxFrameBytes": HOSTILE_FRAME_LIMIT},
            reconnect={"initialDelaySeconds": 0.2, "maxDelaySeconds": 0.4},
        )
        bridge = Bridge(spec, name="hostile")
        started = time.monotonic()
        states: set[ConnectionState] = set()

        def three_seconds_then_backoff() -> bool:
            # stopping in a backoff: every connection so far went through its bad frame
            states.add(bridge.stats.state)
            return time.monotonic() - started >= 3 and bridge.stats.state is ConnectionState.BACKOFF

        summary = await run_until(
            bridge, three_seconds_then_backoff, "3 s of hostile frames", timeout=10
        )
    connects = bridge.stats.connects
    # every connection is closed with the code, counted, and followed by a backoff
    assert [ws.close_code for ws in feed.served] == [close_code] * len(feed.served)
    assert bridge.stats.close_codes == {close_code: connects}
    assert ConnectionState.BACKOFF in states
    assert ConnectionState.GAVE_UP not in states
    # the backoff keeps the reconnect rate down: a crash loop would reconnect hundreds of times
    assert 3 <= connects <= 40
    # the good frames of every connection are delivered, once
    assert summary.exit_code == ExitCode.OK
    assert (summary.received, summary.delivered) == (2 * connects, 2 * connects)
    assert seqs(kafka, topic, 2 * connects) == list(range(1, 2 * connects + 1))
    assert record_count(kafka, topic) == 2 * connects


@pytest.mark.parametrize("client", ["picows", "websockets"])
async def test_debug_logging_never_shows_handshake_secrets(
    caplog: pytest.LogCaptureFixture, client: str
) -> None:
    # every level, not only DEBUG: picows dumps its raw upgrade request at its level 9
    caplog.set_level(1)
    async with SequenceFeed(count=3) as feed:
        spec = bridge_spec(
            f"127.0.0.1:{free_port()}",
            feed.url,
            "absent",
            auth={"bearerToken": {"value": TOKEN}},
            headers=[{"name": "X-Api-Key", "valueFrom": {"value": API_KEY}}],
            query=[{"name": "token", "valueFrom": {"value": QUERY_TOKEN}}],
            connection={"client": client},
            drainTimeoutSeconds=0.5,
        )
        bridge = Bridge(spec, name="debug")
        await run_until(bridge, lambda: bridge.stats.received == 3, "3 frames")
    assert feed.connections[0].headers["Authorization"] == f"Bearer {TOKEN}"
    assert feed.connections[0].path.endswith(f"?token={QUERY_TOKEN}")
    lines = [r.getMessage() for r in caplog.records if not r.name.startswith("websockets.server")]
    assert any("[redacted]" in line for line in lines)  # the headers were logged, values hidden
    assert any("?token=*** HTTP/1.1" in line for line in lines)  # the request line too
    assert any("connected to ws://" in line and "?token=***" in line for line in lines)
    assert [line for line in lines if leaks(line)] == []


@pytest.mark.parametrize("client", ["picows", "websockets"])
async def test_a_refused_connect_shows_the_url_with_its_query_secret_redacted(
    caplog: pytest.LogCaptureFixture, client: str
) -> None:
    caplog.set_level(1)
    spec = bridge_spec(
        f"127.0.0.1:{free_port()}",
        f"ws://127.0.0.1:{free_port()}/ws",
        "absent",
        query=[{"name": "token", "valueFrom": {"value": QUERY_TOKEN}}],
        connection={"client": client},
        reconnect={"maxAttempts": 2, "initialDelaySeconds": 0.01, "maxDelaySeconds": 0.02},
        drainTimeoutSeconds=0.5,
    )
    bridge = Bridge(spec, name="refused")
    summary = await asyncio.wait_for(bridge.run(), 30)
    assert summary.exit_code == ExitCode.GAVE_UP
    assert bridge.stats.connect_failures == 2
    lines = [r.getMessage() for r in caplog.records]
    assert [line for line in lines if QUERY_TOKEN in line] == []
    assert QUERY_TOKEN not in str(bridge.stats.last_error)


async def test_disabling_kafka_tls_verification_is_never_silent(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="ws2kafka")
    async with SequenceFeed(count=1) as feed:
        spec = bridge_spec(
            f"127.0.0.1:{free_port()}",
            feed.url,
            "absent",
            kafka={"properties": {"enable.ssl.certificate.verification": "false"}},
            drainTimeoutSeconds=0.5,
        )
        bridge = Bridge(spec, name="kafkatls")
        await run_until(bridge, lambda: bridge.stats.received == 1, "1 frame")
    assert [
        r
        for r in caplog.records
        if r.levelno >= logging.WARNING and "enable.ssl.certificate.verification" in r.getMessage()
    ]


@pytest.mark.k8s
def test_a_subscription_too_large_for_a_configmap_is_refused_or_reported(
    kube: ControlPlane, operator: ManagedProcess
) -> None:
    ns = new_namespace(kube)
    spec = {
        "url": "ws://feed:1/x",
        "kafka": {"bootstrapServers": "kafka:9092", "topic": "t"},
        "subscribe": ["x" * 200_000] * 6,  # each within the limit, together over 1 MiB
    }
    applied = kube.kubectl(
        "-n", ns, "apply", "--server-side", "-f", "-", input=manifest("big", spec), check=False
    )
    if applied.returncode != 0:
        assert "Too long" in applied.stderr or "too large" in applied.stderr
        return
    wait_until(
        lambda: ready_condition(kube.get_json(ns, "wss", "big")).get("reason") == "SpecInvalid",
        30,
        "Ready=False SpecInvalid",
    )

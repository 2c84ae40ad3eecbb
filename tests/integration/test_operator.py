"""The operator against the real API server: children, rollouts, status, RBAC, inline mode.

Two real operator processes run for this module: one in pod mode watching namespaces
``op-pod-*`` and one in inline mode watching ``op-inline-*``. Each test has its own namespace.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from ws2kafka.devstack.feeds import SequenceFeed
from ws2kafka.devstack.kafka import KafkaBroker
from ws2kafka.devstack.kube import ControlPlane
from ws2kafka.devstack.operator_probe import wait_until_watching
from ws2kafka.devstack.processes import ManagedProcess, free_port
from ws2kafka.devstack.waiting import until, wait_until

pytestmark = pytest.mark.k8s

REPO = Path(__file__).resolve().parents[2]
CRD = REPO / "crds" / "websocketsource.yaml"
HEARTBEAT_TIMEOUT = 4.0
SECRET_TOKEN = "tok-3f9c1b7e-secret"


def command(name: str) -> str:
    """A console script of this project, next to the running interpreter."""
    path = Path(sys.executable).parent / name
    return str(path) if path.exists() else shutil.which(name) or name


@pytest.fixture(scope="module")
def crd(kube: ControlPlane) -> None:
    kube.kubectl("apply", "-f", str(CRD))
    kube.wait_established("crd/websocketsources.ws2kafka.dev")


#: The operator's bridge pod settings (``WS2KAFKA_OPERATOR_BRIDGE_POD``, Helm's ``bridge.*``).
BRIDGE_POD = {
    "imagePullSecrets": ["registry"],
    "nodeSelector": {"pool": "feeds"},
    "tolerations": [{"key": "feeds", "operator": "Exists", "effect": "NoSchedule"}],
}


def start_operator(kube: ControlPlane, workdir: Path, mode: str, pattern: str) -> ManagedProcess:
    process = ManagedProcess(
        f"operator-{mode}",
        [
            command("ws2kafka-operator"),
            "run",
            "--mode",
            mode,
            "--namespace",
            pattern,
            "--heartbeat-timeout",
            str(HEARTBEAT_TIMEOUT),
            "--metrics-port",
            "0",
        ],
        workdir / f"operator-{mode}.log",
        env={
            **kube.env(),
            "WS2KAFKA_OPERATOR_CONDITION_INTERVAL_SECONDS": "1",
            "WS2KAFKA_OPERATOR_REPORT_INTERVAL_SECONDS": "1",
            "WS2KAFKA_OPERATOR_SECRET_CHECK_SECONDS": "1",
            "WS2KAFKA_OPERATOR_BRIDGE_POD": json.dumps(BRIDGE_POD),
        },
    )
    process.wait_until(
        lambda: "operator starting" in process.log_path.read_text(), timeout=30, what="startup"
    )
    try:
        wait_until_watching(kube, process, pattern)
    except BaseException:
        process.stop()
        raise
    return process


def http_get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return int(response.status), response.read().decode()


def metrics_port(process: ManagedProcess) -> int:
    found = re.search(r"/readyz on [\d.]+:(\d+)", process.log_path.read_text())
    assert found, "the operator logs where it serves /metrics"
    return int(found.group(1))


@pytest.fixture(scope="module")
def pod_operator(
    kube: ControlPlane, crd: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ManagedProcess]:
    with start_operator(kube, tmp_path_factory.mktemp("op"), "pod", "op-pod-*") as process:
        yield process


@pytest.fixture(scope="module")
def inline_operator(
    kube: ControlPlane, crd: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ManagedProcess]:
    with start_operator(kube, tmp_path_factory.mktemp("op"), "inline", "op-inline-*") as process:
        yield process


def new_namespace(kube: ControlPlane, prefix: str) -> str:
    namespace = f"{prefix}-{uuid.uuid4().hex[:8]}"
    kube.kubectl("create", "namespace", namespace)
    return namespace


def source_manifest(name: str, url: str, topic: str, bootstrap: str, **spec: Any) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "ws2kafka.dev/v1alpha1",
            "kind": "WebSocketSource",
            "metadata": {"name": name},
            "spec": {
                "url": url,
                "kafka": {"bootstrapServers": bootstrap, "topic": topic},
                "reconnect": {"initialDelaySeconds": 0.2, "maxDelaySeconds": 1},
                **spec,
            },
        }
    )


def condition(source: dict[str, Any], kind: str) -> dict[str, Any]:
    for cond in source.get("status", {}).get("conditions", []):
        if cond["type"] == kind:
            return dict(cond)
    return {}


def test_pod_mode_renders_children_without_copying_secrets(
    kube: ControlPlane, pod_operator: ManagedProcess
) -> None:
    ns = new_namespace(kube, "op-pod")
    kube.kubectl(
        "-n", ns, "create", "secret", "generic", "feed", f"--from-literal=token={SECRET_TOKEN}"
    )
    manifest = source_manifest(
        "trades",
        "wss://feed.example/ws",
        "trades",
        "kafka:9092",
        auth={"bearerToken": {"secretKeyRef": {"name": "feed", "key": "token"}}},
    )
    kube.kubectl("-n", ns, "apply", "-f", "-", input=manifest)
    deployment = wait_until(
        lambda: (
            kube.kubectl(
                "-n", ns, "get", "deployment", "trades-bridge", "-o", "json", check=False
            ).stdout
        ),
        30,
        "the Deployment",
    )
    deployment = json.loads(deployment)
    owner = deployment["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["controller"]) == (
        "WebSocketSource",
        "trades",
        True,
    )
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["args"][:4] == ["ws2kafka-operator", "--log-format", "json", "bridge"]
    assert pod["serviceAccountName"] == "trades-bridge"
    assert pod["imagePullSecrets"] == [{"name": "registry"}]  # the operator's bridge pod settings
    assert (pod["nodeSelector"], pod["tolerations"]) == (
        BRIDGE_POD["nodeSelector"],
        BRIDGE_POD["tolerations"],
    )
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    # liveness waits until the bridge first listens (slow starts on a busy node)
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    [secrets] = [v for v in pod["volumes"] if v["name"] == "secrets"]
    assert secrets["projected"]["sources"] == [
        {"secret": {"name": "feed", "items": [{"key": "token", "path": "secret-0"}]}}
    ]
    config = kube.get_json(ns, "configmap", "trades-bridge")["data"]["source.yaml"]
    secret_file = {"file": "/etc/ws2kafka-secrets/secret-0"}
    assert yaml.safe_load(config)["auth"] == {"bearerToken": secret_file}
    everything = kube.kubectl(
        "-n", ns, "get", "all,configmap,websocketsources,events", "-o", "yaml"
    ).stdout
    assert SECRET_TOKEN not in everything
    for kind in ("serviceaccount", "role", "rolebinding"):
        assert kube.get_json(ns, kind, "trades-bridge")["metadata"]["ownerReferences"]


def test_spec_change_rolls_suspend_scales_to_zero_delete_collects(
    kube: ControlPlane, pod_operator: ManagedProcess
) -> None:
    ns = new_namespace(kube, "op-pod")
    kube.kubectl(
        "-n",
        ns,
        "apply",
        "-f",
        "-",
        input=source_manifest("roll", "ws://feed:1/a", "t1", "kafka:9092"),
    )

    def template_hash() -> str:
        out = kube.kubectl(
            "-n",
            ns,
            "get",
            "deployment",
            "roll-bridge",
            "-o",
            "jsonpath={.spec.template.metadata.annotations.ws2kafka\\.dev/spec-hash}",
            check=False,
        )
        return out.stdout.strip()

    first = wait_until(template_hash, 30, "the first rollout")
    kube.kubectl(
        "-n",
        ns,
        "patch",
        "wss",
        "roll",
        "--type=merge",
        "-p",
        '{"spec": {"kafka": {"topic": "t2"}}}',
    )
    wait_until(lambda: template_hash() not in ("", first), 30, "a new spec hash")
    wait_until(
        lambda: "t2" in kube.get_json(ns, "configmap", "roll-bridge")["data"]["source.yaml"],
        10,
        "the new config",
    )
    # the controller-manager turns the Deployment into a ReplicaSet and a Pod object
    wait_until(lambda: kube.get_json(ns, "pods")["items"], 30, "a bridge Pod object")
    kube.kubectl(
        "-n", ns, "patch", "wss", "roll", "--type=merge", "-p", '{"spec": {"suspend": true}}'
    )
    wait_until(
        lambda: kube.get_json(ns, "deployment", "roll-bridge")["spec"]["replicas"] == 0,
        30,
        "replicas 0",
    )
    wait_until(
        lambda: condition(kube.get_json(ns, "wss", "roll"), "Ready").get("reason") == "Suspended",
        30,
        "Ready=False Suspended",
    )
    kube.kubectl("-n", ns, "delete", "wss", "roll", "--wait=true", "--timeout=60s")
    wait_until(
        lambda: (
            not kube.get_json(ns, "deployment,configmap,serviceaccount,role")["items"]
            or all(
                i["metadata"]["name"] != "roll-bridge"
                for i in kube.get_json(ns, "deployment,configmap,role")["items"]
            )
        ),
        60,
        "children garbage-collected",
    )
    # handlers return nothing for kopf to store in status (a field the schema prunes, which
    # kopf would warn about once per source and spec change)
    assert "inconsistencies" not in pod_operator.log_path.read_text()


def crashed_container(last: dict[str, Any]) -> dict[str, Any]:
    """The bridge container's status as a kubelet writes it while backing off a restart."""
    return {
        "name": "bridge",
        "image": "ghcr.io/ws2kafka/ws2kafka:0.2.0",
        "imageID": "",
        "ready": False,
        "restartCount": 3,
        "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s"}},
        "lastState": {"terminated": last},
    }


def test_a_bridge_pod_that_cannot_run_says_why(
    kube: ControlPlane, pod_operator: ManagedProcess
) -> None:
    ns = new_namespace(kube, "op-pod")
    manifest = source_manifest("stuck", "ws://feed:1/x", "t", "kafka:9092")
    kube.kubectl("-n", ns, "apply", "-f", "-", input=manifest)

    def ready() -> dict[str, Any]:
        return condition(kube.get_json(ns, "wss", "stuck"), "Ready")

    # no kubelet: the Pod stays Pending, so the Deployment (read from the operator's index)
    # has no available replica
    wait_until(
        lambda: ready().get("reason") == "DeploymentUnavailable", 30, "DeploymentUnavailable"
    )
    [pod] = wait_until(lambda: kube.get_json(ns, "pods")["items"], 30, "the bridge Pod object")
    name = pod["metadata"]["name"]

    def kubelet_reports(container: dict[str, Any]) -> None:
        status = {"status": {"phase": "Running", "containerStatuses": [container]}}
        kube.kubectl(
            "-n", ns, "patch", "pod", name, "--subresource=status", "--type=merge",
            "-p", json.dumps(status),
        )  # fmt: skip

    fatal = "spec.tls.ca: cannot read /etc/ws2kafka-tls/ca.pem"
    kubelet_reports(crashed_container({"exitCode": 2, "reason": "Error", "message": fatal}))
    wait_until(lambda: ready().get("reason") == "CrashLoopBackOff", 30, "CrashLoopBackOff")
    assert f"last exit code 2 (Error): {fatal}" in ready()["message"]
    assert ready()["message"].startswith(f"pod {name}: ")
    progressing = condition(kube.get_json(ns, "wss", "stuck"), "Progressing")
    assert (progressing["status"], progressing["reason"]) == ("False", "CrashLoopBackOff")
    kubelet_reports(crashed_container({"exitCode": 137, "reason": "OOMKilled"}))
    wait_until(lambda: ready().get("reason") == "OOMKilled", 30, "OOMKilled")


async def test_a_real_bridge_with_its_service_account_drives_status(
    kube: ControlPlane, kafka: KafkaBroker, pod_operator: ManagedProcess, tmp_path: Path
) -> None:
    ns = new_namespace(kube, "op-pod")
    topic = f"op-{uuid.uuid4().hex[:8]}"
    kafka.create_topic(topic)
    async with SequenceFeed(rate=50) as feed:
        kube.kubectl(
            "-n",
            ns,
            "apply",
            "-f",
            "-",
            input=source_manifest("live", feed.url, topic, kafka.bootstrap_servers),
        )
        kube.kubectl(
            "-n",
            ns,
            "apply",
            "-f",
            "-",
            input=source_manifest("other", feed.url, topic, kafka.bootstrap_servers),
        )
        await until(
            lambda: kube.kubectl("-n", ns, "get", "cm/live-bridge", check=False).returncode == 0,
            30,
            "config",
        )
        config = tmp_path / "source.yaml"
        config.write_text(kube.get_json(ns, "configmap", "live-bridge")["data"]["source.yaml"])
        token = kube.service_account_token(ns, "live-bridge")
        kubeconfig = kube.write_kubeconfig(tmp_path / "bridge-kubeconfig", token)
        bridge = ManagedProcess(
            "bridge",
            [
                command("ws2kafka-operator"),
                "bridge",
                "--config",
                str(config),
                "--resource",
                f"{ns}/live",
                "--metrics-port",
                "0",
                "--report-interval",
                "1",
            ],
            tmp_path / "bridge.log",
            env={"KUBECONFIG": str(kubeconfig), "POD_NAME": "live-bridge-test"},
        )
        with bridge:
            await until(lambda: kube.get_json(ns, "pods")["items"], 30, "Pod object")
            kube.mark_pods_ready(ns)

            def ready() -> bool:
                source = kube.get_json(ns, "wss", "live")
                connection = source.get("status", {}).get("connection", {})
                return (
                    condition(source, "Ready").get("status") == "True"
                    and connection.get("messagesProduced", 0) > 10
                )

            await until(ready, 60, "Ready=True with messages")
            source = kube.get_json(ns, "wss", "live")
            assert source["status"]["connection"]["state"] == "Connected"
            assert source["status"]["connection"]["podName"] == "live-bridge-test"
            assert condition(source, "Connected")["status"] == "True"
            assert source["status"]["observedGeneration"] == source["metadata"]["generation"]
            table = kube.kubectl("-n", ns, "get", "wssources").stdout
            assert "live" in table
            assert "Connected" in table

            # least privilege: its own status only
            def can(*args: str) -> str:
                return kube.kubectl(
                    "auth", "can-i", *args, "-n", ns, token=token, check=False
                ).stdout.strip()

            assert can("patch", "websocketsources/live", "--subresource=status") == "yes"
            assert can("patch", "websocketsources/live") == "no"
            assert can("patch", "websocketsources/other", "--subresource=status") == "no"
            assert can("get", "secrets") == "no"
            denied = kube.kubectl(
                "-n",
                ns,
                "patch",
                "wss",
                "live",
                "--type=merge",
                "-p",
                '{"spec": {"kafka": {"topic": "stolen"}}}',
                token=token,
                check=False,
            )
            assert denied.returncode != 0
            assert "forbidden" in denied.stderr.lower()
            bridge.kill()  # the bridge dies without a word: the heartbeat goes stale

            def not_reporting() -> bool:
                reason = condition(kube.get_json(ns, "wss", "live"), "Ready").get("reason")
                return reason == "BridgeNotReporting"

            await until(not_reporting, HEARTBEAT_TIMEOUT + 20, "BridgeNotReporting")


def bridge_argv(ns: str, source: str, config: Path) -> list[str]:
    """What a bridge pod runs (its args, less the metrics port), for a local process."""
    return [
        command("ws2kafka-operator"), "bridge", "--config", str(config),
        "--resource", f"{ns}/{source}", "--metrics-port", "0", "--report-interval", "1",
    ]  # fmt: skip


def bridge_config(kube: ControlPlane, ns: str, source: str, path: Path) -> Path:
    """The rendered config, as the bridge pod finds it in its ConfigMap volume."""
    wait_until(
        lambda: kube.kubectl("-n", ns, "get", f"cm/{source}-bridge", check=False).returncode == 0,
        30,
        "the rendered config",
    )
    path.write_text(kube.get_json(ns, "configmap", f"{source}-bridge")["data"]["source.yaml"])
    return path


def bridge_env(kube: ControlPlane, ns: str, source: str, path: Path, pod: str) -> dict[str, str]:
    """The bridge pod's identity: its ServiceAccount's token and its pod name."""
    token = kube.service_account_token(ns, f"{source}-bridge")
    return {"KUBECONFIG": str(kube.write_kubeconfig(path, token)), "POD_NAME": pod}


async def test_a_replacement_bridge_reports_its_predecessors_unclean_end(
    kube: ControlPlane, kafka: KafkaBroker, pod_operator: ManagedProcess, tmp_path: Path
) -> None:
    """A pod killed with records buffered (grace period exceeded, eviction, lost node) leaves
    its last report in status; the new pod, on a fresh emptyDir, turns it into a gap."""
    ns = new_namespace(kube, "op-pod")
    topic = f"op-{uuid.uuid4().hex[:8]}"
    kafka.create_topic(topic)
    async with SequenceFeed(rate=50) as feed:
        manifest = source_manifest(
            "moved", feed.url, topic, kafka.bootstrap_servers, drainTimeoutSeconds=120
        )
        kube.kubectl("-n", ns, "apply", "-f", "-", input=manifest)
        config = bridge_config(kube, ns, "moved", tmp_path / "source.yaml")
        pod = kube.get_json(ns, "deployment", "moved-bridge")["spec"]["template"]["spec"]
        assert pod["terminationGracePeriodSeconds"] == 120 + 15  # the drain, then close + report
        env = bridge_env(kube, ns, "moved", tmp_path / "kubeconfig", "moved-bridge-new")
        # the killed pod's last report, as its bridge wrote it with the same account
        last_seen = datetime.now(UTC) - timedelta(seconds=30)
        killed = {
            "state": "Connected",
            "since": "2026-11-28T00:00:00Z",
            "podName": "moved-bridge-old",
            "connectionId": "c-old",
            "heartbeatTime": last_seen.isoformat(timespec="seconds").replace("+00:00", "Z"),
            "messagesReceived": 750,
            "messagesProduced": 0,
            "messagesFailed": 0,
            "messagesDropped": 0,
        }
        report = json.dumps({"status": {"connection": killed}})
        kube.kubectl(
            "-n", ns, "patch", "wss", "moved", "--subresource=status", "--type=merge",
            "-p", report, token=kube.service_account_token(ns, "moved-bridge"),
        )  # fmt: skip
        with ManagedProcess(
            "bridge", bridge_argv(ns, "moved", config), tmp_path / "bridge.log", env=env
        ) as bridge:

            def degraded() -> dict[str, Any]:
                return condition(kube.get_json(ns, "wss", "moved"), "Degraded")

            await until(lambda: degraded().get("reason") == "UncleanExit", 60, "UncleanExit")
            gap = kube.get_json(ns, "wss", "moved")["status"]["lastGap"]
            assert (gap["error"], gap["oldConnectionId"]) == ("UncleanExit", "c-old")
            assert "pod moved-bridge-old" in gap["closeReason"]
            assert "750 of them were not acknowledged" in gap["closeReason"]
            assert degraded()["message"] == gap["closeReason"]
            assert degraded()["status"] == "True"
            bridge.stop()
        connection = kube.get_json(ns, "wss", "moved")["status"]["connection"]
        assert (connection["state"], connection["podName"]) == ("Stopped", "moved-bridge-new")


def test_a_bridge_that_cannot_start_reports_why_and_exits(
    kube: ControlPlane, pod_operator: ManagedProcess, tmp_path: Path
) -> None:
    """The CA is referenced from a ConfigMap, mounted in the pod; without a kubelet the file
    is not there, as when a volume is missing: the bridge reports it and exits with 2."""
    ns = new_namespace(kube, "op-pod")
    ca = {"configMapKeyRef": {"name": "trust", "key": "ca.crt"}}
    manifest = source_manifest(
        "badtls", "wss://127.0.0.1:9/feed", "t", "127.0.0.1:9", tls={"ca": ca}
    )
    kube.kubectl("-n", ns, "apply", "-f", "-", input=manifest)
    config = bridge_config(kube, ns, "badtls", tmp_path / "source.yaml")
    assert yaml.safe_load(config.read_text())["tls"]["caFile"] == "/etc/ws2kafka-tls/ca.pem"
    pod = kube.get_json(ns, "deployment", "badtls-bridge")["spec"]["template"]["spec"]
    [volume] = [v for v in pod["volumes"] if v["name"] == "tls"]
    assert volume["projected"]["sources"] == [
        {"configMap": {"name": "trust", "items": [{"key": "ca.crt", "path": "ca.pem"}]}}
    ]
    env = bridge_env(kube, ns, "badtls", tmp_path / "kubeconfig", "badtls-bridge-1")
    result = subprocess.run(
        bridge_argv(ns, "badtls", config),
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    problem = "spec.tls.caFile: cannot load /etc/ws2kafka-tls/ca.pem: No such file or directory"
    assert result.returncode == 2, result.stderr
    assert problem in result.stderr
    connection = kube.get_json(ns, "wss", "badtls")["status"]["connection"]
    assert (connection["state"], connection["lastError"]) == ("StartupFailed", problem)
    assert connection["podName"] == "badtls-bridge-1"
    wait_until(
        lambda: (
            condition(kube.get_json(ns, "wss", "badtls"), "Ready").get("reason") == "StartupFailed"
        ),
        30,
        "Ready=False StartupFailed",
    )


async def test_inline_mode_streams_into_kafka_and_reports(
    kube: ControlPlane, kafka: KafkaBroker, inline_operator: ManagedProcess
) -> None:
    ns = new_namespace(kube, "op-inline")
    topic = f"inline-{uuid.uuid4().hex[:8]}"
    kafka.create_topic(topic)
    async with SequenceFeed(rate=100, wait_for_subscribe=True) as feed:
        kube.kubectl(
            "-n",
            ns,
            "apply",
            "-f",
            "-",
            input=source_manifest(
                "inline", feed.url, topic, kafka.bootstrap_servers, subscribe=['{"op":"sub"}']
            ),
        )

        def streaming() -> bool:
            source = kube.get_json(ns, "wss", "inline")
            produced = source.get("status", {}).get("connection", {}).get("messagesProduced", 0)
            return condition(source, "Ready").get("status") == "True" and produced >= 50

        await until(streaming, 60, "inline bridge Ready with 50 records")
        source = kube.get_json(ns, "wss", "inline")
        assert condition(source, "Producing")["status"] == "True"
        assert source["status"]["connection"]["kafka"]["reason"] == "Producing"
        table = kube.kubectl("-n", ns, "get", "wssources").stdout
        assert "Connected" in table
        assert "True" in table
        assert feed.connections[0].messages[0] == '{"op":"sub"}'
        assert len(kafka.consume_all(topic, expected=50)) >= 50
        assert not kube.get_json(ns, "deployments")["items"]  # inline: no pods
        reasons = {e["reason"] for e in kube.get_json(ns, "events")["items"]}
        assert "Connected" in reasons
        port = metrics_port(inline_operator)
        status, metrics = await asyncio.to_thread(http_get, f"http://127.0.0.1:{port}/metrics")
        assert status == 200
        assert f'ws2kafka_records_produced_total{{source="{ns}/inline"}}' in metrics
        status, _ = await asyncio.to_thread(http_get, f"http://127.0.0.1:{port}/healthz")
        assert status == 200
        status, _ = await asyncio.to_thread(http_get, f"http://127.0.0.1:{port}/readyz")
        assert status == 200, "kopf started and the sources are listed"
        await rotate_by_annotation(kube, ns, "inline", feed)
        kube.kubectl("-n", ns, "delete", "wss", "inline", "--timeout=60s")
    # gone at once (no finalizer); its daemon, stopped by the operator's filter, drains
    await until(
        lambda: "final summary" in inline_operator.log_path.read_text(), 30, "the final summary"
    )


async def test_a_source_whose_kafka_is_unreachable_is_not_ready(
    kube: ControlPlane, inline_operator: ManagedProcess
) -> None:
    """The likeliest install mistake, bootstrapServers pointing nowhere: the feed is
    connected and frames are received, but nothing reaches Kafka. Ready used to say
    ``Streaming: connected and producing to Kafka``."""
    ns = new_namespace(kube, "op-inline")
    async with SequenceFeed(rate=50) as feed:
        manifest = source_manifest("nokafka", feed.url, "t", "127.0.0.1:1", drainTimeoutSeconds=1)
        kube.kubectl("-n", ns, "apply", "-f", "-", input=manifest)

        def unreachable() -> bool:
            source = kube.get_json(ns, "wss", "nokafka")
            waiting = source.get("status", {}).get("connection", {}).get("kafka") or {}
            return (
                condition(source, "Ready").get("reason") == "BrokersUnreachable"
                and waiting.get("bufferedRecords", 0) > 0
                and "records wait" in condition(source, "Ready").get("message", "")
            )

        await until(unreachable, 60, "Ready=False BrokersUnreachable")
        source = kube.get_json(ns, "wss", "nokafka")
        ready, producing = condition(source, "Ready"), condition(source, "Producing")
        assert ready["status"] == "False"
        assert (producing["status"], producing["reason"]) == ("False", "BrokersUnreachable")
        assert condition(source, "Connected")["status"] == "True"
        assert "records wait in the buffer" in ready["message"]
        kafka_side = source["status"]["connection"]["kafka"]
        assert kafka_side["bufferedRecords"] > 0
        assert kafka_side["lastError"]
        wide = kube.kubectl("-n", ns, "get", "wssources", "-o", "wide").stdout
        assert "BrokersUnreachable" in wide
        kube.kubectl("-n", ns, "delete", "wss", "nokafka", "--timeout=60s")


async def rotate_by_annotation(kube: ControlPlane, ns: str, name: str, feed: SequenceFeed) -> None:
    """``kubectl annotate ... ws2kafka.dev/rotate=...`` replaces the connection, no gap."""
    before = kube.get_json(ns, "wss", name)["status"]["connection"]["connectionId"]
    connections = len(feed.connections)
    kube.kubectl("-n", ns, "annotate", "--overwrite", "wss", name, "ws2kafka.dev/rotate=now")

    def rotated() -> bool:
        status = kube.get_json(ns, "wss", name)["status"]
        return bool(status["connection"]["connectionId"] != before)

    await until(rotated, 30, "a new connection after the rotate annotation")
    assert len(feed.connections) == connections + 1
    assert feed.connections[-1].messages[0] == '{"op":"sub"}'  # subscribed before the switch
    assert "lastGap" not in kube.get_json(ns, "wss", name)["status"]  # make-before-break


def http_status(url: str) -> int:
    try:
        return http_get(url)[0]
    except urllib.error.HTTPError as error:
        return error.code


def test_the_operator_is_alive_but_not_ready_without_its_permissions(
    kube: ControlPlane, crd: None, tmp_path: Path
) -> None:
    """A refused list of the sources (here: an account without any role) keeps /readyz at
    503, while /healthz answers: the pod is not restarted, it is kept out of rotation."""
    ns = new_namespace(kube, "op-norights")
    token = kube.service_account_token(ns, "nobody")
    kubeconfig = kube.write_kubeconfig(tmp_path / "nobody-kubeconfig", token)
    operator = ManagedProcess(
        "operator-norights",
        [command("ws2kafka-operator"), "run", "--namespace", ns, "--metrics-port", "0"],
        tmp_path / "operator.log",
        env={"KUBECONFIG": str(kubeconfig)},
    )
    with operator:
        port = wait_until(lambda: metrics_port_or_none(operator), 30, "the metrics endpoint")
        base = f"http://127.0.0.1:{port}"
        wait_until(
            lambda: "readiness checks failed" in operator.log_path.read_text(), 90, "a check"
        )
        assert http_status(f"{base}/healthz") == 200
        assert http_status(f"{base}/readyz") == 503


def metrics_port_or_none(process: ManagedProcess) -> int | None:
    found = re.search(r"/readyz on [\d.]+:(\d+)", process.log_path.read_text())
    return int(found.group(1)) if found else None


def test_operator_help_explains_its_commands() -> None:
    out = subprocess.run(
        [command("ws2kafka-operator"), "--help"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ},
    ).stdout
    assert "inline" in out
    assert "WS2KAFKA_OPERATOR_" in out


def test_operator_restart_catches_up_without_orphans(
    kube: ControlPlane, crd: None, tmp_path: Path
) -> None:
    ns = new_namespace(kube, "op-restart")

    def deployments() -> set[str]:
        return {d["metadata"]["name"] for d in kube.get_json(ns, "deployments")["items"]}

    def apply(name: str) -> None:
        manifest = source_manifest(name, "ws://feed:1/x", name, "kafka:9092")
        kube.kubectl("-n", ns, "apply", "-f", "-", input=manifest)

    operator = start_operator(kube, tmp_path, "pod", "op-restart-*")
    with operator:
        apply("first")
        wait_until(lambda: deployments() == {"first-bridge"}, 30, "the first Deployment")
        operator.kill()  # a crash: no cleanup, no goodbye
        apply("second")
        kube.kubectl("-n", ns, "delete", "wss", "first", "--wait=false")
    with start_operator(kube, tmp_path, "pod", "op-restart-*"):
        wait_until(lambda: deployments() == {"second-bridge"}, 60, "caught up, no orphan")
        wait_until(
            lambda: not kube.kubectl("-n", ns, "get", "wss", "first", check=False).stdout,
            30,
            "the deleted source released",
        )
        wait_until(
            lambda: condition(kube.get_json(ns, "wss", "second"), "Ready").get("reason"),
            30,
            "status of the source created while the operator was down",
        )


RESTART = "ws2kafka.dev/restart"
PAUSE = "ws2kafka.dev/pause-reconciliation"


def pod_template_annotations(kube: ControlPlane, ns: str, source: str) -> dict[str, str]:
    deployment = kube.get_json(ns, "deployment", f"{source}-bridge")
    return dict(deployment["spec"]["template"]["metadata"].get("annotations") or {})


def source_annotations(kube: ControlPlane, ns: str, source: str) -> dict[str, str]:
    return dict(kube.get_json(ns, "wss", source)["metadata"].get("annotations") or {})


def event_messages(kube: ControlPlane, ns: str, reason: str) -> list[str]:
    return [e["message"] for e in kube.get_json(ns, "events")["items"] if e["reason"] == reason]


def test_the_restart_annotation_rolls_the_bridge_pod_once_and_is_removed(
    kube: ControlPlane, pod_operator: ManagedProcess
) -> None:
    ns = new_namespace(kube, "op-pod")
    manifest = source_manifest("again", "ws://feed:1/a", "t1", "kafka:9092")
    kube.kubectl("-n", ns, "apply", "-f", "-", input=manifest)
    wait_until(
        lambda: kube.kubectl("-n", ns, "get", "deployment/again-bridge", check=False).stdout,
        30,
        "the Deployment",
    )
    kube.kubectl("-n", ns, "annotate", "wss", "again", f"{RESTART}=true")
    stamp = wait_until(
        lambda: pod_template_annotations(kube, ns, "again").get("ws2kafka.dev/restarted-at"),
        30,
        "the pod template's restarted-at",
    )
    wait_until(
        lambda: RESTART not in source_annotations(kube, ns, "again"), 30, "the annotation removed"
    )
    [message] = wait_until(lambda: event_messages(kube, ns, "Restarted"), 30, "a Restarted Event")
    assert f"restarted-at={stamp}" in message
    # the operator's own apply of a spec change keeps the restart's annotation
    kube.kubectl(
        "-n", ns, "patch", "wss", "again", "--type=merge",
        "-p", '{"spec": {"kafka": {"topic": "t2"}}}',
    )  # fmt: skip
    wait_until(
        lambda: "t2" in kube.get_json(ns, "configmap", "again-bridge")["data"]["source.yaml"],
        30,
        "the new config",
    )
    wait_until(
        lambda: pod_template_annotations(kube, ns, "again")["ws2kafka.dev/spec-hash"],
        10,
        "the new spec hash",
    )
    assert pod_template_annotations(kube, ns, "again")["ws2kafka.dev/restarted-at"] == stamp
    assert len(event_messages(kube, ns, "Restarted")) == 1


def test_a_paused_source_keeps_its_deployment_until_resumed(
    kube: ControlPlane, pod_operator: ManagedProcess
) -> None:
    ns = new_namespace(kube, "op-pod")
    manifest = source_manifest("frozen", "ws://feed:1/a", "t1", "kafka:9092")
    kube.kubectl("-n", ns, "apply", "-f", "-", input=manifest)

    def spec_hash() -> str:
        found = kube.kubectl("-n", ns, "get", "deployment/frozen-bridge", check=False)
        return (
            pod_template_annotations(kube, ns, "frozen")["ws2kafka.dev/spec-hash"]
            if (found.returncode == 0)
            else ""
        )

    first = wait_until(spec_hash, 30, "the first rollout")
    kube.kubectl("-n", ns, "annotate", "wss", "frozen", f"{PAUSE}=true")
    paused = wait_until(
        lambda: condition(kube.get_json(ns, "wss", "frozen"), "ReconciliationPaused"),
        30,
        "ReconciliationPaused",
    )
    assert (paused["status"], paused["reason"]) == ("True", "ReconciliationPaused")
    assert f"kubectl annotate wss frozen {PAUSE}-" in paused["message"]
    kube.kubectl(
        "-n", ns, "patch", "wss", "frozen", "--type=merge",
        "-p", '{"spec": {"kafka": {"topic": "t2"}}}',
    )  # fmt: skip
    kube.kubectl("-n", ns, "annotate", "wss", "frozen", f"{RESTART}=true")

    def seen() -> bool:
        source = kube.get_json(ns, "wss", "frozen")
        progressing = condition(source, "Progressing")
        return bool(
            source["status"].get("observedGeneration") == source["metadata"]["generation"]
            and progressing.get("reason") == "ReconciliationPaused"
        )

    wait_until(seen, 30, "the new generation observed, Progressing=False ReconciliationPaused")
    time.sleep(2)  # the operator's watch events of the patch and the annotation
    # the operator saw the new spec and left the Deployment alone
    assert spec_hash() == first
    assert "ws2kafka.dev/restarted-at" not in pod_template_annotations(kube, ns, "frozen")
    assert RESTART in source_annotations(kube, ns, "frozen")  # the restart waits for the resume
    kube.kubectl("-n", ns, "annotate", "wss", "frozen", f"{PAUSE}-")
    wait_until(lambda: spec_hash() not in ("", first), 30, "the change made while paused")
    wait_until(
        lambda: "ws2kafka.dev/restarted-at" in pod_template_annotations(kube, ns, "frozen"),
        30,
        "the restart that waited",
    )
    wait_until(
        lambda: not condition(kube.get_json(ns, "wss", "frozen"), "ReconciliationPaused"),
        30,
        "the condition gone",
    )
    assert RESTART not in source_annotations(kube, ns, "frozen")


async def test_inline_restart_pause_and_the_topics_a_source_writes(
    kube: ControlPlane, kafka: KafkaBroker, inline_operator: ManagedProcess
) -> None:
    ns = new_namespace(kube, "op-inline")
    topic = f"inline-{uuid.uuid4().hex[:8]}"
    kafka.create_topic(topic)
    async with SequenceFeed(rate=50) as feed:
        manifest = source_manifest(
            "ctl", feed.url, topic, kafka.bootstrap_servers,
            gaps={"record": True, "topic": f"{topic}-gaps"},
        )  # fmt: skip
        kube.kubectl("-n", ns, "apply", "-f", "-", input=manifest)

        def connected() -> bool:
            source = kube.get_json(ns, "wss", "ctl")
            return condition(source, "Connected").get("status") == "True"

        await until(connected, 60, "the inline bridge connected")
        status = kube.get_json(ns, "wss", "ctl")["status"]
        assert status["topics"] == [topic, f"{topic}-gaps"]
        assert status["connection"]["routedTopics"] == 0
        kube.kubectl("-n", ns, "annotate", "wss", "ctl", f"{RESTART}=now")
        await until(lambda: len(feed.connections) == 2, 30, "a second connection")
        await until(
            lambda: RESTART not in source_annotations(kube, ns, "ctl"), 30, "the annotation removed"
        )
        await until(lambda: event_messages(kube, ns, "Restarted"), 30, "a Restarted Event")
        assert "inline bridge stopped (drained)" in event_messages(kube, ns, "Restarted")[0]
        kube.kubectl("-n", ns, "annotate", "wss", "ctl", f"{PAUSE}=true")
        await until(
            lambda: condition(kube.get_json(ns, "wss", "ctl"), "ReconciliationPaused"),
            30,
            "ReconciliationPaused",
        )
        kube.kubectl(
            "-n", ns, "patch", "wss", "ctl", "--type=merge",
            "-p", '{"spec": {"gaps": {"record": false}}}',
        )  # fmt: skip
        await asyncio.sleep(3)  # the daemon looks every second
        assert len(feed.connections) == 2  # the bridge runs on as it was
        kube.kubectl("-n", ns, "annotate", "wss", "ctl", f"{PAUSE}-")
        await until(lambda: len(feed.connections) == 3, 30, "the change applied on resume")
        await until(
            lambda: kube.get_json(ns, "wss", "ctl")["status"].get("topics") == [topic],
            30,
            "the gap topic no longer written",
        )
        kube.kubectl("-n", ns, "delete", "wss", "ctl", "--timeout=60s")


async def test_inline_a_rotated_secret_is_taken_up_make_before_break_without_a_restart(
    kube: ControlPlane, kafka: KafkaBroker, inline_operator: ManagedProcess
) -> None:
    """``kubectl create secret ... --dry-run | kubectl apply``: the operator reads the Secret
    again (every second here, 30 s by default), the bridge opens a connection with the new
    token before it closes the old one (1000), no gap, and the bridge is not restarted."""
    ns = new_namespace(kube, "op-inline")
    topic = f"inline-{uuid.uuid4().hex[:8]}"
    kafka.create_topic(topic)

    def apply_secret(token: str) -> None:
        secret = kube.kubectl(
            "-n", ns, "create", "secret", "generic", "feed", f"--from-literal=token={token}",
            "--dry-run=client", "-o", "yaml",
        ).stdout  # fmt: skip
        kube.kubectl("-n", ns, "apply", "-f", "-", input=secret)

    apply_secret("first-token-6d2e")
    async with SequenceFeed(rate=50) as feed:
        manifest = source_manifest(
            "rekeyed", feed.url, topic, kafka.bootstrap_servers,
            auth={"bearerToken": {"secretKeyRef": {"name": "feed", "key": "token"}}},
        )  # fmt: skip
        kube.kubectl("-n", ns, "apply", "-f", "-", input=manifest)

        def connected() -> bool:
            return condition(kube.get_json(ns, "wss", "rekeyed"), "Connected").get("status") == (
                "True"
            )

        await until(connected, 60, "the inline bridge connected")
        apply_secret("second-token-91ab")
        await until(lambda: len(feed.connections) == 2, 30, "a connection with the new token")
        await until(lambda: feed.connections[0].close_code is not None, 30, "the old one closed")
        tokens = [conn.headers["Authorization"] for conn in feed.connections]
        assert tokens == ["Bearer first-token-6d2e", "Bearer second-token-91ab"]
        assert feed.connections[0].close_code == 1000
        await asyncio.sleep(3)  # three more looks at the unchanged Secret: nothing more
        assert len(feed.connections) == 2
        status = kube.get_json(ns, "wss", "rekeyed")["status"]
        assert "lastGap" not in status  # make-before-break
        log = inline_operator.log_path.read_text()
        assert f"{ns}/rekeyed: a secret changed: rotating the connections" in log
        assert f"{ns}/rekeyed: spec changed" not in log
        assert [token for token in ("first-token-6d2e", "second-token-91ab") if token in log] == []
        kube.kubectl("-n", ns, "delete", "wss", "rekeyed", "--timeout=60s")


def auto_restart_status(kube: ControlPlane, ns: str, name: str) -> dict[str, Any]:
    return dict(kube.get_json(ns, "wss", name).get("status", {}).get("autoRestart") or {})


async def test_inline_auto_restart_brings_a_bridge_that_gave_up_back(
    kube: ControlPlane, kafka: KafkaBroker, inline_operator: ManagedProcess
) -> None:
    """A feed that refuses connections makes the bridge give up at once (maxAttempts 1);
    spec.autoRestart starts it again after its delay, and once the feed is back it streams,
    counted; when the feed goes again the next restart waits twice as long."""
    ns = new_namespace(kube, "op-inline")
    topic = f"inline-{uuid.uuid4().hex[:8]}"
    kafka.create_topic(topic)
    port = free_port()  # nothing listens there yet: connections are refused
    manifest = source_manifest(
        "auto", f"ws://127.0.0.1:{port}/feed", topic, kafka.bootstrap_servers,
        reconnect={"initialDelaySeconds": 0.2, "maxDelaySeconds": 1, "maxAttempts": 1},
        autoRestart={"enabled": True, "initialDelaySeconds": 8, "maxDelaySeconds": 60},
    )  # fmt: skip
    kube.kubectl("-n", ns, "apply", "-f", "-", input=manifest)

    def restart_due(number: int) -> bool:
        ready = condition(kube.get_json(ns, "wss", "auto"), "Ready")
        return ready.get("reason") == "GaveUp" and (
            f"automatic restart {number} at" in ready.get("message", "")
        )

    await until(lambda: restart_due(1), 60, "Ready=False GaveUp, restart 1 due")
    assert auto_restart_status(kube, ns, "auto")["count"] == 0
    async with SequenceFeed(rate=50, port=port) as feed:

        def streaming() -> bool:
            source = kube.get_json(ns, "wss", "auto")
            produced = source.get("status", {}).get("connection", {}).get("messagesProduced", 0)
            return condition(source, "Ready").get("status") == "True" and produced >= 20

        await until(streaming, 60, "the restarted bridge streaming")
        auto = auto_restart_status(kube, ns, "auto")
        assert auto["count"] == 1
        assert auto["lastRestartTime"]
        assert auto.get("nextRestartTime") is None
        assert len(feed.connections) == 1
        (message,) = event_messages(kube, ns, "AutoRestarted")
        assert message.startswith("automatic restart 1 after a delay of 8 s")
    # the feed is gone again: the bridge gives up again, the next delay is doubled
    await until(lambda: restart_due(2), 60, "restart 2 due")
    auto = auto_restart_status(kube, ns, "auto")
    due = datetime.fromisoformat(auto["nextRestartTime"].replace("Z", "+00:00"))
    assert timedelta(seconds=10) < due - datetime.now(UTC) <= timedelta(seconds=16)
    assert len(kafka.consume_all(topic, expected=20)) >= 20
    kube.kubectl("-n", ns, "delete", "wss", "auto", "--timeout=60s")


async def test_inline_auto_restart_stops_at_max_restarts(
    kube: ControlPlane, inline_operator: ManagedProcess
) -> None:
    """With maxRestarts reached the source stays given up: a Warning, and Ready says so."""
    ns = new_namespace(kube, "op-inline")
    manifest = source_manifest(
        "limit", f"ws://127.0.0.1:{free_port()}/feed", "t", "127.0.0.1:1",
        reconnect={"initialDelaySeconds": 0.2, "maxDelaySeconds": 1, "maxAttempts": 1},
        autoRestart={"enabled": True, "maxRestarts": 1, "initialDelaySeconds": 1},
        drainTimeoutSeconds=1,
    )  # fmt: skip
    kube.kubectl("-n", ns, "apply", "-f", "-", input=manifest)

    def exhausted() -> bool:
        ready = condition(kube.get_json(ns, "wss", "limit"), "Ready")
        return "maxRestarts (1) reached" in ready.get("message", "")

    await until(exhausted, 60, "Ready=False: no more automatic restarts")
    assert condition(kube.get_json(ns, "wss", "limit"), "Ready")["reason"] == "GaveUp"
    assert auto_restart_status(kube, ns, "limit")["count"] == 1
    assert len(event_messages(kube, ns, "AutoRestarted")) == 1
    (warning,) = event_messages(kube, ns, "AutoRestartLimitReached")
    assert "no more automatic restarts" in warning
    kube.kubectl("-n", ns, "delete", "wss", "limit", "--timeout=60s")


def test_a_change_of_the_stream_names_updates_the_config_map_and_rolls_no_pod(
    kube: ControlPlane, pod_operator: ManagedProcess
) -> None:
    """The bridge applies it from its ConfigMap; and 1,600 streams in a pod of 1 CPU (the
    default limit) are more than the rule of thumb's 1,500: a Warning Event says so."""
    ns = new_namespace(kube, "op-pod")
    streams = {
        "names": [f"s{n:04d}" for n in range(1600)],
        "maxPerConnection": 200,
        "subscribeTemplate": '{"params":{streams}}',
    }
    manifest = source_manifest("many", "ws://feed:1/a", "t1", "kafka:9092", streams=streams)
    kube.kubectl("-n", ns, "apply", "-f", "-", input=manifest)
    (warning,) = wait_until(lambda: event_messages(kube, ns, "Oversized"), 30, "Oversized")
    assert warning.startswith("1600 streams at a planning rate of 10 msg/s each")
    assert "the bridge container has 1:" in warning

    def deployment() -> tuple[int, str] | None:
        found = kube.kubectl("-n", ns, "get", "deployment/many-bridge", check=False)
        if found.returncode != 0:
            return None
        generation = kube.get_json(ns, "deployment", "many-bridge")["metadata"]["generation"]
        return generation, pod_template_annotations(kube, ns, "many")["ws2kafka.dev/spec-hash"]

    first = wait_until(deployment, 30, "the first rollout")
    kube.kubectl(
        "-n", ns, "patch", "wss", "many", "--type=merge",
        "-p", json.dumps({"spec": {"streams": {"names": ["s0000", "new-stream"]}}}),
    )  # fmt: skip
    wait_until(
        lambda: (
            "- new-stream" in kube.get_json(ns, "configmap", "many-bridge")["data"]["source.yaml"]
        ),
        30,
        "the new names in the ConfigMap",
    )
    time.sleep(2)  # any Deployment change would have been applied with the ConfigMap
    assert deployment() == first, "the pod template is the same: no rollout"

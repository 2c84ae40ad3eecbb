"""The Helm chart in the real API server, and the container image's install recipe.

The chart is linted and rendered with each optional feature on its own and with all of them
at once; every rendered object must pass the API server's own validation (``kubectl apply
--dry-run=server``). It is installed, upgraded and uninstalled with the helm that the stack
builds. RBAC is proven with real tokens. No kubelet runs here, so the operator runs as a
local process in place of its pod: with the args and environment of the installed Deployment
and the token of the chart's ServiceAccount, it must turn a source into its children. The
bridge account it creates may patch its own source's status and nothing else.

The image cannot be built here (no container engine); its recipe is: install the project
into a fresh virtualenv the way the Dockerfile does, then run the image's commands.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from ws2kafka.bridge.podtemplate import BridgeTemplate
from ws2kafka.devstack.kube import K8S_VERSION, ControlPlane
from ws2kafka.devstack.processes import ManagedProcess, free_port
from ws2kafka.operator.__main__ import build_parser
from ws2kafka.operator.election import Timings
from ws2kafka.operator.resources import (
    build_role,
    build_role_binding,
    build_service_account,
    child_name,
)
from ws2kafka.operator.settings import BridgePod, OperatorSettings

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "ws2kafka"
CRDS = REPO / "crds"
EXAMPLE = REPO / "examples" / "echo.yaml"
GROUP, PLURAL = "ws2kafka.dev", "websocketsources"
CRD_NAME = f"{PLURAL}.{GROUP}"
INSTANCE = "app.kubernetes.io/instance"

#: The kinds every install renders, by RBAC scope.
BASE_KINDS = {
    "cluster": {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Deployment"},
    "namespaced": {
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Deployment",
    },
}
NETWORK_POLICY = {
    "enabled": True,
    "metricsFrom": [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}],
    "egress": [{"ports": [{"port": 443, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}]}],
}
EVERYTHING = {
    "rbac": {"scope": "namespaced"},
    "operator": {"mode": "inline"},
    "metrics": {"serviceMonitor": {"enabled": True}, "podMonitor": {"enabled": True}},
    "grafanaDashboard": {"enabled": True},
    "networkPolicy": NETWORK_POLICY,
    "podDisruptionBudget": {"enabled": True},
}
#: Values of each variant, and the kinds it adds to the base ones.
VARIANTS: dict[str, tuple[dict[str, Any], set[str]]] = {
    "defaults": ({}, set()),
    "service-monitor": (
        {"metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}}},
        {"Service", "ServiceMonitor"},
    ),
    "pod-monitor": ({"metrics": {"podMonitor": {"enabled": True}}}, {"PodMonitor"}),
    "grafana-dashboard": ({"grafanaDashboard": {"enabled": True}}, {"ConfigMap"}),
    "network-policy": ({"networkPolicy": NETWORK_POLICY}, {"NetworkPolicy"}),
    "pod-disruption-budget": ({"podDisruptionBudget": {"enabled": True}}, {"PodDisruptionBudget"}),
    "replicas": ({"replicaCount": 2}, {"PodDisruptionBudget", "Role", "RoleBinding"}),
    "namespaced-inline": ({"rbac": {"scope": "namespaced"}, "operator": {"mode": "inline"}}, set()),
    "everything": (
        EVERYTHING,
        {
            "Service",
            "ServiceMonitor",
            "PodMonitor",
            "ConfigMap",
            "NetworkPolicy",
            "PodDisruptionBudget",
        },
    ),
}
CHILD_VERBS = {"get", "list", "watch", "create", "patch", "update", "delete"}
#: The rules the operator needs in a namespace it watches (both modes).
SOURCE_RULES = {
    f"{PLURAL}.{GROUP}": {"get", "list", "watch", "patch"},
    f"{PLURAL}.{GROUP}/status": {"get", "patch"},
    "events": {"create", "patch"},
    "events.events.k8s.io": {"create", "patch"},
}
POD_MODE_RULES = {
    "deployments.apps": CHILD_VERBS,
    "deployments.apps/status": {"get"},
    "pods": {"list", "watch"},
    # a bridge pod stuck in ContainerCreating says why only in its Events
    "events": {"create", "patch", "list"},
    "configmaps": CHILD_VERBS,
    "serviceaccounts": CHILD_VERBS,
    "roles.rbac.authorization.k8s.io": CHILD_VERBS,
    "rolebindings.rbac.authorization.k8s.io": CHILD_VERBS,
}
INLINE_MODE_RULES = {"secrets": {"get"}, "configmaps": {"get"}}
#: What kopf reads at cluster level, in both RBAC scopes.
DISCOVERY_RULES = {
    "customresourcedefinitions.apiextensions.k8s.io": {"get", "list", "watch"},
    "namespaces": {"list", "watch"},
}


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)
    return result


def write_values(directory: Path, values: dict[str, Any]) -> Path:
    path = directory / f"values-{uuid.uuid4().hex[:8]}.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def new_namespace(kube: ControlPlane, prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    kube.kubectl("create", "namespace", name)
    return name


def get_json(kube: ControlPlane, *args: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(kube.kubectl("get", *args, "-o", "json").stdout)
    return found


def token_for(kube: ControlPlane, namespace: str, account: str) -> str:
    return kube.kubectl("create", "token", account, "-n", namespace).stdout.strip()


def rules_of(kube: ControlPlane, token: str, namespace: str) -> dict[str, set[str]]:
    """The account's rules in ``namespace`` (``kubectl auth can-i --list``) as
    {resource[/subresource]: verbs}; rules on URLs (not resources) are left out."""
    listing = kube.kubectl("auth", "can-i", "--list", "-n", namespace, token=token).stdout
    rules: dict[str, set[str]] = {}
    for line in listing.splitlines()[1:]:
        row = re.match(r"^(\S*)\s+\[(.*?)\]\s+\[(.*?)\]\s+\[(.*?)\]\s*$", line)
        assert row is not None, f"unexpected can-i line: {line!r}"
        resource, _, _, verbs = row.groups()
        if resource:
            rules.setdefault(resource, set()).update(verbs.split())
    return rules


def can_i(kube: ControlPlane, token: str, namespace: str, *args: str) -> bool:
    result = kube.kubectl("auth", "can-i", *args, "-n", namespace, token=token, check=False)
    return result.stdout.strip() == "yes"


def source_manifest(name: str, **spec: Any) -> str:
    return json.dumps(
        {
            "apiVersion": f"{GROUP}/v1alpha1",
            "kind": "WebSocketSource",
            "metadata": {"name": name},
            "spec": {
                "url": f"ws://127.0.0.1:{free_port()}/feed",
                "kafka": {"bootstrapServers": f"127.0.0.1:{free_port()}", "topic": name},
                **spec,
            },
        }
    )


def monitoring_crd(kind: str, plural: str) -> dict[str, Any]:
    """A minimal Prometheus Operator CRD: the kind exists, its schema accepts anything."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.monitoring.coreos.com"},
        "spec": {
            "group": "monitoring.coreos.com",
            "scope": "Namespaced",
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
            },
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "x-kubernetes-preserve-unknown-fields": True,
                        }
                    },
                }
            ],
        },
    }


@dataclass(frozen=True)
class Release:
    """An installed release; its operator objects are all named after it."""

    name: str
    namespace: str
    watched: list[str]
    notes: str


def install(kube: ControlPlane, directory: Path, values: dict[str, Any]) -> Release:
    """Install the chart into a new namespace that enforces the restricted Pod Security
    Standard (the operator's Pod is only created if it complies); ``watchNamespaces`` must
    exist already."""
    name = f"ws2kafka-{uuid.uuid4().hex[:8]}"
    namespace = new_namespace(kube, "helm")
    kube.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    path = write_values(directory, values)
    notes = kube.helm("install", name, str(CHART), "-n", namespace, "-f", str(path)).stdout
    kube.wait_established(f"crd/{CRD_NAME}")
    return Release(name, namespace, list(values.get("watchNamespaces", [])), notes)


def drop_release(kube: ControlPlane, release: Release) -> None:
    kube.helm("uninstall", release.name, "-n", release.namespace, check=False)
    for namespace in (release.namespace, *release.watched):
        kube.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


@pytest.fixture(scope="module")
def monitoring_crds(kube: ControlPlane) -> None:
    """ServiceMonitor and PodMonitor kinds, as the Prometheus Operator installs them."""
    for kind, plural in (("ServiceMonitor", "servicemonitors"), ("PodMonitor", "podmonitors")):
        crd = json.dumps(monitoring_crd(kind, plural))
        kube.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=crd)
        name = f"crd/{plural}.monitoring.coreos.com"
        kube.wait_established(name)


@pytest.fixture(scope="module")
def render_namespace(kube: ControlPlane) -> Iterator[str]:
    """Where rendered objects are dry-run applied."""
    name = new_namespace(kube, "helm-render")
    yield name
    kube.kubectl("delete", "namespace", name, "--wait=false")


@pytest.fixture(scope="module")
def granted(kube: ControlPlane, render_namespace: str) -> Callable[[str, str], dict[str, set[str]]]:
    """The rules of an account in a namespace, less those every account has (self reviews,
    public reads), which an account without any binding shows."""
    nobody = kube.service_account_token(render_namespace, "nobody")

    def rules(token: str, namespace: str) -> dict[str, set[str]]:
        everyone = rules_of(kube, nobody, namespace)
        return {
            resource: verbs - everyone.get(resource, set())
            for resource, verbs in rules_of(kube, token, namespace).items()
            if verbs - everyone.get(resource, set())
        }

    return rules


@pytest.fixture(scope="module")
def watched(kube: ControlPlane) -> Iterator[list[str]]:
    """Two namespaces for the namespaced-scope variants (their Roles need them to exist)."""
    names = [new_namespace(kube, "helm-watched") for _ in range(2)]
    yield names
    for name in names:
        kube.kubectl("delete", "namespace", name, "--wait=false")


@pytest.fixture(scope="module")
def pod_release(kube: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Release]:
    """Cluster scope, pod mode, sources in one namespace; quick timers for the tests."""
    values = {
        "watchNamespaces": [new_namespace(kube, "helm-sources")],
        "operator": {"conditionIntervalSeconds": 1, "reportIntervalSeconds": 1},
    }
    release = install(kube, tmp_path_factory.mktemp("helm"), values)
    yield release
    drop_release(kube, release)


@pytest.fixture(scope="module")
def inline_release(
    kube: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Release]:
    """Namespaced scope (a Role in each of two namespaces), inline mode."""
    values = {
        "watchNamespaces": [new_namespace(kube, "helm-inline") for _ in range(2)],
        "rbac": {"scope": "namespaced"},
        "operator": {"mode": "inline", "conditionIntervalSeconds": 1, "reportIntervalSeconds": 1},
    }
    release = install(kube, tmp_path_factory.mktemp("helm"), values)
    yield release
    drop_release(kube, release)


def variant_values(variant: str, watched: list[str]) -> dict[str, Any]:
    values, _ = VARIANTS[variant]
    if values.get("rbac", {}).get("scope") == "namespaced":
        return {**values, "watchNamespaces": watched}
    return values


def render(kube: ControlPlane, directory: Path, namespace: str, values: dict[str, Any]) -> str:
    """The chart's objects, for a release whose name YAML would read as a boolean unquoted.

    Rendered as offline and GitOps tools do: without ``--kube-version``, against helm's
    built-in default Kubernetes version."""
    path = write_values(directory, values)
    return kube.helm("template", "y", str(CHART), "-n", namespace, "-f", str(path)).stdout


def operator_container(kube: ControlPlane, release: Release) -> dict[str, Any]:
    deployment = get_json(kube, "deployment", release.name, "-n", release.namespace)
    container: dict[str, Any] = deployment["spec"]["template"]["spec"]["containers"][0]
    return container


def run_installed_operator(
    kube: ControlPlane, release: Release, workdir: Path, metrics_port: int
) -> ManagedProcess:
    """The installed Deployment's command and environment, with the account's token."""
    container = operator_container(kube, release)
    args = list(container["args"])
    args[0] = str(Path(sys.executable).parent / args[0])
    args[args.index("--metrics-port") + 1] = str(metrics_port)
    env = {variable["name"]: variable["value"] for variable in container["env"]}
    token = token_for(kube, release.namespace, release.name)
    env["KUBECONFIG"] = str(kube.write_kubeconfig(workdir / "operator-kubeconfig", token))
    return ManagedProcess("helm-operator", args, workdir / "operator.log", env=env, cwd=workdir)


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


def permission_problems(log: str) -> list[str]:
    """Log lines about a refused API request (the timestamp is left out: its milliseconds
    can read 403)."""
    return [
        line
        for line in log.splitlines()
        if re.search(r"forbidden|\b403\b", re.sub(r"^\S+ \S+ ", "", line), re.I)
    ]


@pytest.mark.k8s
@pytest.mark.parametrize("variant", VARIANTS)
def test_lint_is_clean(
    kube: ControlPlane, variant: str, watched: list[str], tmp_path: Path
) -> None:
    path = write_values(tmp_path, variant_values(variant, watched))
    result = kube.helm(
        "lint", "--strict", "--kube-version", K8S_VERSION, str(CHART), "-f", str(path)
    )
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.k8s
@pytest.mark.usefixtures("monitoring_crds")
@pytest.mark.parametrize("variant", VARIANTS)
def test_rendered_objects_pass_server_validation(
    kube: ControlPlane, variant: str, watched: list[str], render_namespace: str, tmp_path: Path
) -> None:
    values = variant_values(variant, watched)
    manifests = render(kube, tmp_path, render_namespace, values)
    docs = [doc for doc in yaml.safe_load_all(manifests) if doc]
    scope = values.get("rbac", {}).get("scope", "cluster")
    assert {doc["kind"] for doc in docs} == BASE_KINDS[scope] | VARIANTS[variant][1]
    applied = kube.kubectl("apply", "--dry-run=server", "-f", "-", input=manifests).stdout
    assert len(applied.splitlines()) == len(docs), applied


@pytest.mark.k8s
def test_operator_pod_is_hardened_and_runs_a_valid_command(
    kube: ControlPlane, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    toleration = {"key": "feeds", "operator": "Exists", "effect": "NoSchedule"}
    bridge = {
        "image": "registry.example/b:1",
        "imagePullSecrets": [{"name": "registry"}],
        "nodeSelector": {"pool": "feeds"},
        "tolerations": [toleration],
        "template": {"container": {"env": [{"name": "HTTPS_PROXY", "value": "http://proxy:3128"}]}},
    }
    values = {"watchNamespaces": ["team-a", "team-b"], "bridge": bridge}
    docs = yaml.safe_load_all(render(kube, tmp_path, "ops", values))
    [deployment] = [doc for doc in docs if doc and doc["kind"] == "Deployment"]
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "runAsGroup": 10001,
        "fsGroup": 10001,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    [container] = pod["containers"]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert container["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    assert pod["volumes"] == [{"name": "tmp", "emptyDir": {}}]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert container["ports"][0] == {"name": "metrics", "containerPort": 9401, "protocol": "TCP"}

    command, *args = container["args"]
    assert command == "ws2kafka-operator"
    parsed = build_parser().parse_args(args)
    assert (parsed.command, parsed.mode, parsed.namespaces) == ("run", "pod", ["team-a", "team-b"])
    assert (parsed.bridge_image, parsed.metrics_port) == ("registry.example/b:1", 9401)
    for variable in container["env"]:
        assert variable["name"].startswith("WS2KAFKA_OPERATOR_")
        monkeypatch.setenv(variable["name"], variable["value"])
    settings = OperatorSettings.from_env()
    expected = {
        "image_pull_policy": "IfNotPresent",
        "cpu_request": "100m",
        "memory_request": "128Mi",
        "cpu_limit": "1",
        "memory_limit": "512Mi",
        "heartbeat_timeout_seconds": 30.0,
        "report_interval_seconds": 5.0,
        "condition_interval_seconds": 5.0,
        "event_interval_seconds": 60.0,
        "api_qps": 100.0,
        "api_burst": 200,
        "secret_check_seconds": 30.0,
        "bridge_pod": BridgePod(
            image_pull_secrets=["registry"],
            node_selector={"pool": "feeds"},
            tolerations=[toleration],
        ),
        "bridge_template": BridgeTemplate.model_validate(bridge["template"]),
    }
    assert {field: getattr(settings, field) for field in expected} == expected
    assert len(container["env"]) == len(expected), "every variable is an operator setting"


@pytest.mark.k8s
def test_several_replicas_elect_a_leader_with_a_lease_role_and_a_disruption_budget(
    kube: ControlPlane, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    values = {"replicaCount": 3, "leaderElection": {"leaseDurationSeconds": 12}}
    docs = [doc for doc in yaml.safe_load_all(render(kube, tmp_path, "ops", values)) if doc]
    [deployment] = [doc for doc in docs if doc["kind"] == "Deployment"]
    assert deployment["spec"]["replicas"] == 3
    assert deployment["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    pod_fields = {"metadata.namespace": "ops", "metadata.name": "y-ws2kafka-5d8f9-x2x7q"}
    for variable in container["env"]:
        if "valueFrom" in variable:  # what the kubelet fills in
            value = pod_fields[variable["valueFrom"]["fieldRef"]["fieldPath"]]
        else:
            value = variable["value"]
        monkeypatch.setenv(variable["name"], value)
    settings = OperatorSettings.from_env()
    assert settings.leader_election
    assert (settings.lease_namespace, settings.lease_name) == ("ops", "y-ws2kafka")
    assert settings.lease_identity == "y-ws2kafka-5d8f9-x2x7q"
    assert settings.election_timings() == Timings(12, 7, 2)

    [role] = [doc for doc in docs if doc["kind"] == "Role"]
    assert role["metadata"] == {**role["metadata"], "name": "y-ws2kafka-leader-election"}
    assert role["metadata"]["namespace"] == "ops"
    assert role["rules"] == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
         "verbs": ["get", "create", "update"]},
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
    ]  # fmt: skip
    [budget] = [doc for doc in docs if doc["kind"] == "PodDisruptionBudget"]
    assert budget["spec"]["minAvailable"] == 1

    single = [doc for doc in yaml.safe_load_all(render(kube, tmp_path, "ops", {})) if doc]
    [deployment] = [doc for doc in single if doc["kind"] == "Deployment"]
    names = {
        variable["name"]
        for variable in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert "WS2KAFKA_OPERATOR_LEADER_ELECTION" not in names

    wrong = {"replicaCount": 2, "leaderElection": {"renewDeadlineSeconds": 10}}
    failed = kube.helm(
        "template", "y", str(CHART), "-f", str(write_values(tmp_path, wrong)), check=False
    )
    assert failed.returncode != 0
    assert "leaseDurationSeconds > renewDeadlineSeconds > retryPeriodSeconds" in failed.stderr


@pytest.mark.k8s
def test_packaged_chart_carries_the_repository_crds(kube: ControlPlane, tmp_path: Path) -> None:
    """helm follows the crds/ link when packaging: the archive holds the very same files."""
    kube.helm("package", str(CHART), "-d", str(tmp_path))
    [archive] = tmp_path.glob("ws2kafka-0.2.0.tgz")
    with tarfile.open(archive) as tar:
        packaged = {
            Path(member.name).name: tar.extractfile(member).read()  # type: ignore[union-attr]
            for member in tar.getmembers()
            if member.name.startswith("ws2kafka/crds/")
        }
    assert packaged == {path.name: path.read_bytes() for path in CRDS.iterdir()}


@pytest.mark.k8s
def test_install_then_sources_apply_and_list(kube: ControlPlane, pod_release: Release) -> None:
    assert "kubectl" in pod_release.notes
    assert "get wssources" in pod_release.notes
    ns = ("-n", pod_release.namespace)
    kube.kubectl(*ns, "apply", "-f", str(EXAMPLE))
    table = kube.kubectl(*ns, "get", "wssources").stdout.splitlines()
    assert [row.split()[0] for row in table] == ["NAME", "websocket-echo"]


@pytest.mark.k8s
def test_operator_account_holds_exactly_the_rules_it_needs(
    kube: ControlPlane,
    pod_release: Release,
    inline_release: Release,
    granted: Callable[[str, str], dict[str, set[str]]],
) -> None:
    pod_token = token_for(kube, pod_release.namespace, pod_release.name)
    cluster_wide = {**SOURCE_RULES, **POD_MODE_RULES, **DISCOVERY_RULES}
    for namespace in (pod_release.watched[0], "default"):
        assert granted(pod_token, namespace) == cluster_wide

    inline_token = token_for(kube, inline_release.namespace, inline_release.name)
    for namespace in inline_release.watched:
        expected = {**SOURCE_RULES, **INLINE_MODE_RULES, **DISCOVERY_RULES}
        assert granted(inline_token, namespace) == expected
    for namespace in (inline_release.namespace, "default"):
        assert granted(inline_token, namespace) == DISCOVERY_RULES


@pytest.mark.k8s
def test_bridge_account_created_by_the_operator_may_patch_only_its_status(
    kube: ControlPlane,
    pod_release: Release,
    granted: Callable[[str, str], dict[str, set[str]]],
) -> None:
    """The operator's account may grant the bridge Role (the API server refuses to let anyone
    grant what they do not hold); the bridge's account can do that one thing."""
    namespace = new_namespace(kube, "helm-bridge")
    ns = ("-n", namespace)
    for name in ("trades", "quotes"):
        kube.kubectl(*ns, "apply", "-f", "-", input=source_manifest(name))
    operator_token = token_for(kube, pod_release.namespace, pod_release.name)
    for build in (build_service_account, build_role, build_role_binding):
        kube.kubectl(
            "apply",
            "--server-side",
            "--field-manager=ws2kafka-operator",
            "-f",
            "-",
            input=json.dumps(build("trades", namespace)),
            token=operator_token,
        )
    token = token_for(kube, namespace, child_name("trades"))
    status = f"{PLURAL}.{GROUP}/status"
    assert granted(token, namespace) == {status: {"get", "patch"}}

    def allowed(*args: str) -> bool:
        return can_i(kube, token, namespace, *args)

    assert allowed("patch", f"{PLURAL}.{GROUP}/trades", "--subresource=status")
    assert allowed("get", f"{PLURAL}.{GROUP}/trades", "--subresource=status")
    assert not allowed("patch", f"{PLURAL}.{GROUP}/quotes", "--subresource=status")
    assert not allowed("patch", f"{PLURAL}.{GROUP}/trades")
    assert not allowed("list", f"{PLURAL}.{GROUP}")
    assert not allowed("get", "secrets")
    assert not allowed("create", "pods")
    assert not can_i(kube, token, "default", "patch", f"{PLURAL}.{GROUP}", "--subresource=status")

    report = '{"status":{"connection":{"state":"Connecting"}}}'
    patch = ("--subresource=status", "--type=merge", "-p", report)
    kube.kubectl(*ns, "patch", "wss", "trades", *patch, token=token)
    assert get_json(kube, *ns, "wss", "trades")["status"]["connection"]["state"] == "Connecting"
    denied = kube.kubectl(*ns, "patch", "wss", "quotes", *patch, token=token, check=False)
    assert "Forbidden" in denied.stderr
    kube.kubectl("delete", "namespace", namespace, "--wait=false")


@pytest.mark.k8s
def test_operator_runs_pod_mode_with_its_account(
    kube: ControlPlane, pod_release: Release, tmp_path: Path
) -> None:
    """The installed command, environment and token create every child of a source, keep its
    conditions, and the source deletes at once, without one refused request."""
    ns = ("-n", pod_release.watched[0])
    port = free_port()
    with run_installed_operator(kube, pod_release, tmp_path, port) as operator:
        kube.kubectl(*ns, "apply", "-f", "-", input=source_manifest("feed"))
        children = "deployment,configmap,serviceaccount,role,rolebinding"

        def created() -> bool:
            found = kube.kubectl(*ns, "get", children, "-o", "name").stdout.split()
            return len([item for item in found if item.endswith("/feed-bridge")]) == 5

        wait_for(created, 30, "the bridge's Deployment, ConfigMap, ServiceAccount and RBAC")
        wait_for(
            lambda: get_json(kube, *ns, "wss", "feed").get("status", {}).get("conditions"),
            30,
            "the source's conditions",
        )
        url = f"http://127.0.0.1:{port}/healthz"
        with urllib.request.urlopen(url, timeout=5) as response:
            assert response.status == 200, "the liveness probe's endpoint answers"
        wait_for(lambda: http_status(f"http://127.0.0.1:{port}/readyz") == 200, 30, "ready")
        kube.kubectl(*ns, "delete", "wss", "feed", "--timeout=30s")
        assert operator.running()
    assert permission_problems(operator.log_path.read_text()) == []


@pytest.mark.k8s
def test_operator_runs_inline_mode_with_namespaced_roles(
    kube: ControlPlane, inline_release: Release, tmp_path: Path
) -> None:
    """With a Role in each watched namespace, inline mode reads the source's Secret and
    reports its bridge's status."""
    ns = ("-n", inline_release.watched[0])
    kube.kubectl(*ns, "create", "secret", "generic", "feed", "--from-literal=token=t0k3n")
    secret_ref = {"secretKeyRef": {"name": "feed", "key": "token"}}
    manifest = source_manifest("feed", auth={"bearerToken": secret_ref})
    with run_installed_operator(kube, inline_release, tmp_path, free_port()) as operator:
        kube.kubectl(*ns, "apply", "-f", "-", input=manifest)

        def reported() -> bool:
            status = get_json(kube, *ns, "wss", "feed").get("status", {})
            return bool(status.get("connection", {}).get("state") and status.get("conditions"))

        wait_for(reported, 30, "the inline bridge's status report and the conditions")
        kube.kubectl(*ns, "delete", "wss", "feed", "--wait=false")
        wait_for(lambda: "final summary" in operator.log_path.read_text(), 30, "the drain")
        assert operator.running()
    assert permission_problems(operator.log_path.read_text()) == []
    # no finalizer: the source was gone at once, its daemon stopped by the operator's filter
    assert not source_exists(kube, inline_release.watched[0], "feed")


def source_exists(kube: ControlPlane, namespace: str, name: str) -> bool:
    return kube.kubectl("-n", namespace, "get", "wss", name, check=False).returncode == 0


@pytest.mark.k8s
@pytest.mark.parametrize("mode", ["pod", "inline"])
def test_after_uninstall_sources_and_their_namespaces_delete_at_once(
    kube: ControlPlane, mode: str, tmp_path: Path
) -> None:
    """No finalizer on the sources (kopf would set one for the timer, and for inline mode's
    daemon): once the release is uninstalled and its pod stopped, deleting a source or its
    whole namespace completes within seconds."""
    watched = [new_namespace(kube, "helm-after") for _ in range(2)]
    values: dict[str, Any] = {"watchNamespaces": watched, "operator": {"mode": mode}}
    if mode == "inline":
        values["rbac"] = {"scope": "namespaced"}
    release = install(kube, tmp_path, values)
    with run_installed_operator(kube, release, tmp_path, free_port()):
        for namespace in watched:
            kube.kubectl("-n", namespace, "apply", "-f", "-", input=source_manifest("feed"))

        def handled() -> bool:
            sources = [get_json(kube, "-n", ns, "wss", "feed") for ns in watched]
            return all(source.get("status", {}).get("conditions") for source in sources)

        wait_for(handled, 30, "both sources handled")
        for namespace in watched:
            assert (
                get_json(kube, "-n", namespace, "wss", "feed")["metadata"].get("finalizers", [])
                == []
            )
        kube.helm("uninstall", release.name, "-n", release.namespace, "--wait", "--timeout=60s")
    # the operator pod is gone (the with block stopped it as the kubelet would)
    kube.kubectl("-n", watched[0], "delete", "wss", "feed", "--timeout=20s")
    kube.kubectl("delete", "namespace", watched[1], "--wait=false")

    def namespace_gone() -> bool:
        return kube.kubectl("get", "namespace", watched[1], check=False).returncode != 0

    wait_for(namespace_gone, 60, "the deleted namespace, its source included, gone")
    drop_release(kube, Release(release.name, release.namespace, watched[:1], release.notes))


@pytest.mark.k8s
def test_upgrade_changes_a_value(kube: ControlPlane, pod_release: Release) -> None:
    where = (pod_release.name, "-n", pod_release.namespace)
    upgrade = ("--reuse-values", "--set", "operator.logLevel=DEBUG")
    kube.helm("upgrade", pod_release.name, str(CHART), "-n", pod_release.namespace, *upgrade)
    status = json.loads(kube.helm("status", *where, "-o", "json").stdout)
    assert (status["version"], status["info"]["status"]) == (2, "deployed")
    args = operator_container(kube, pod_release)["args"]
    assert args[args.index("--log-level") + 1] == "DEBUG"


@pytest.mark.k8s
@pytest.mark.usefixtures("monitoring_crds")
def test_uninstall_leaves_no_operator_objects_and_keeps_the_crd(
    kube: ControlPlane, tmp_path: Path
) -> None:
    watched = [new_namespace(kube, "helm-gone") for _ in range(2)]
    release = install(kube, tmp_path, {**EVERYTHING, "watchNamespaces": watched})
    kube.kubectl("-n", watched[0], "apply", "-f", "-", input=source_manifest("kept"))
    selector = f"{INSTANCE}={release.name}"
    namespaced = (
        "deployments,replicasets,pods,services,serviceaccounts,configmaps,roles,rolebindings,"
        "networkpolicies,poddisruptionbudgets,servicemonitors,podmonitors"
    )

    def leftovers() -> set[str]:
        items = [
            *get_json(kube, namespaced, "-A", "-l", selector)["items"],
            *get_json(kube, "clusterroles,clusterrolebindings", "-l", selector)["items"],
        ]
        return {item["kind"] for item in items}

    wait_for(lambda: "Pod" in leftovers(), 30, "the operator's Pod, admitted as restricted")
    assert leftovers() == {
        "Deployment",
        "ReplicaSet",
        "Pod",
        "Service",
        "ServiceAccount",
        "ConfigMap",
        "Role",
        "RoleBinding",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "ServiceMonitor",
        "PodMonitor",
        "ClusterRole",
        "ClusterRoleBinding",
    }
    kube.helm("uninstall", release.name, "-n", release.namespace, "--wait", "--timeout=60s")
    wait_for(lambda: not leftovers(), 60, "nothing of the release left")
    history = kube.kubectl("get", "secrets", "-n", release.namespace, "-l", "owner=helm")
    assert history.stdout == ""
    kube.kubectl("get", f"crd/{CRD_NAME}")
    kube.kubectl("-n", watched[0], "get", "wss", "kept")
    drop_release(kube, release)


def test_image_recipe_installs_commands_that_run(tmp_path: Path) -> None:
    """The Dockerfile's builder stage without Docker: copy what it copies, install it into a
    fresh pip-less virtualenv with the outer pip (not editable, with the dependencies), then
    run the image's command and the bridge pods' command from that virtualenv."""
    instructions = re.sub(r"\\\n\s*", " ", (REPO / "Dockerfile").read_text()).splitlines()
    copies = [line.split()[1:-1] for line in instructions if line.startswith("COPY ")]
    sources = [path for paths in copies if not paths[0].startswith("--from") for path in paths]
    build = tmp_path / "src"
    for source in sources:
        origin = REPO / source
        if origin.is_dir():
            shutil.copytree(origin, build / source, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (build / source).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(origin, build / source)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet"]
    subprocess.run([*pip, str(build)], check=True, timeout=240)

    def run(*argv: str) -> str:
        result = subprocess.run(
            argv, cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False
        )
        assert result.returncode == 0, f"{argv}: {result.stderr}"
        return result.stdout

    [cmd] = [json.loads(line[4:]) for line in instructions if line.startswith("CMD ")]
    assert "--mode" in run(str(venv / "bin" / cmd[0]), *cmd[1:], "--help")
    assert "--resource" in run(str(venv / "bin" / "ws2kafka-operator"), "bridge", "--help")
    assert "--config" in run(str(venv / "bin" / "ws2kafka-bridge"), "--help")
    where = run(str(python), "-c", "import ws2kafka.operator as m; print(m.__file__)")
    assert Path(where.strip()).is_relative_to(venv), "installed, not linked to the sources"
    assert not (venv / "bin" / "pip").exists()

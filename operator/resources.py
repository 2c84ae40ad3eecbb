"""Pure builders of the objects that run one WebSocketSource as a bridge pod.

Nothing here talks to the API server: each function takes the resource's facts and returns
plain dicts, so the rendering is tested without a cluster and applied by ``kube.py``.

Secrets never leave their Secret: every ``secretKeyRef`` in the spec becomes an ``env``
reference in the rendered bridge config, and the pod maps that variable to the Secret key.
TLS material (``spec.tls.ca``, ``clientCert``, ``clientKey``) is a file for the bridge: the
pod mounts the referenced Secret or ConfigMap keys, and the rendered config names the files.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

import yaml

from ws2kafka.bridge.config import WebSocketSourceSpec
from ws2kafka.bridge.podtemplate import DEFAULT_METRICS_PORT, BridgeTemplate, merged

from . import constants as c
from .settings import BridgePod, OperatorSettings

Manifest = dict[str, Any]


@dataclass(frozen=True)
class RenderedSource:
    """The bridge's view of a resource: its config file and the files it needs mounted."""

    config_yaml: str
    secret_sources: list[Manifest]
    """Sources of the pod's projected secrets volume: a file per Secret key the spec
    references (empty: none)."""
    spec_hash: str
    """What the pod depends on: the config but ``streams.names``, the secret and TLS sources.
    The names are left out: a running bridge applies their change from the updated
    ConfigMap (it follows its config file), so changing them rolls no pod."""
    grace_seconds: int
    """The pod's terminationGracePeriodSeconds: see :func:`grace_period`."""
    tls_sources: list[Manifest]
    """Sources of the pod's projected TLS volume (empty: the source references none)."""
    template: BridgeTemplate | None = None
    """The source's own ``spec.template`` (the pod's, not the bridge's business)."""
    stays_after_giving_up: bool = False
    """``spec.autoRestart.enabled``: the operator, not the kubelet, restarts a bridge that
    gave up, so the bridge stays (not ready) instead of exiting."""


def child_name(source: str) -> str:
    """Name of every child object of a source (Deployment, ConfigMap, ServiceAccount...)."""
    return f"{source}-bridge"


def labels(source: str) -> dict[str, str]:
    return {
        c.LABEL_NAME: c.APP_NAME,
        c.LABEL_INSTANCE: source,
        c.LABEL_COMPONENT: "bridge",
        c.LABEL_MANAGED_BY: c.MANAGED_BY,
    }


#: What a stopping bridge needs beyond ``spec.drainTimeoutSeconds``: the close handshake
#: (5 s at most, while the drain runs), closing the producer, the final summary and report.
STOP_MARGIN_SECONDS = 15


def grace_period(spec: dict[str, Any]) -> int:
    """Seconds the kubelet waits after SIGTERM before it kills the bridge: its whole drain
    timeout plus the stop margin, so a drain is never cut short by the pod's deletion."""
    default = WebSocketSourceSpec.model_fields["drain_timeout_seconds"].default
    return math.ceil(float(spec.get("drainTimeoutSeconds", default))) + STOP_MARGIN_SECONDS


def render_source(spec: dict[str, Any]) -> RenderedSource:
    """Replace secret references by the files the pod mounts; hash what the pod depends on
    (all but ``streams.names``, see :attr:`RenderedSource.spec_hash`)."""
    secret_sources: list[Manifest] = []
    tls_sources: list[Manifest] = []
    bridge_spec = _mount_secrets(_mount_tls(copy.deepcopy(spec), tls_sources), secret_sources)
    bridge_spec.pop("suspend", None)
    # the operator's business, not the bridge's: changing its delays (or the CRD's default
    # for it appearing in an old resource) must not roll the pod; only enabling it does
    auto_restart = bridge_spec.pop("autoRestart", None) or {}
    template = bridge_spec.pop("template", None)
    config_yaml = yaml.safe_dump(bridge_spec, sort_keys=True)
    pod_config = copy.deepcopy(bridge_spec)
    (pod_config.get("streams") or {}).pop("names", None)
    # the same text as the config's without streams: their pods keep their hash
    depends = yaml.safe_dump(pod_config, sort_keys=True) + json.dumps(
        [secret_sources, tls_sources], sort_keys=True
    )
    digest = hashlib.sha256(depends.encode())
    parsed = None if template is None else BridgeTemplate.model_validate(template)
    return RenderedSource(
        config_yaml,
        secret_sources,
        digest.hexdigest()[:16],
        grace_period(spec),
        tls_sources,
        parsed,
        stays_after_giving_up=bool(auto_restart.get("enabled")),
    )


#: The file each TLS reference becomes in the bridge pod, and the config field naming it.
_TLS_FILES = {"ca": "ca.pem", "clientCert": "client.pem", "clientKey": "client-key.pem"}


def _mount_tls(spec: dict[str, Any], sources: list[Manifest]) -> dict[str, Any]:
    """Replace each TLS reference by the path where the pod mounts the referenced key."""
    tls = spec.get("tls") or {}
    for field, filename in _TLS_FILES.items():
        reference = tls.pop(field, None)
        if reference is None:
            continue
        if "secretKeyRef" in reference:
            kind, ref = "secret", reference["secretKeyRef"]
        else:
            kind, ref = "configMap", reference["configMapKeyRef"]
        item = {"key": ref["key"], "path": filename}
        sources.append({kind: {"name": ref["name"], "items": [item]}})
        tls[f"{field}File"] = f"{c.TLS_DIR}/{filename}"
    return spec


def _mount_secrets(node: Any, sources: list[Manifest]) -> Any:
    """Replace each ``secretKeyRef`` by the file the pod mounts its key as. A file, not an
    env var: the kubelet updates it when the Secret changes, and the bridge takes the new
    value up (:mod:`ws2kafka.bridge.secret_watch`) without a restart."""
    if isinstance(node, dict):
        ref = node.get("secretKeyRef")
        if isinstance(ref, dict) and len(node) == 1:
            path = f"secret-{len(sources)}"
            sources.append(
                {"secret": {"name": ref["name"], "items": [{"key": ref["key"], "path": path}]}}
            )
            return {"file": f"{c.SECRETS_DIR}/{path}"}
        return {key: _mount_secrets(value, sources) for key, value in node.items()}
    if isinstance(node, list):
        return [_mount_secrets(item, sources) for item in node]
    return node


def build_configmap(source: str, namespace: str, rendered: RenderedSource) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": child_name(source), "namespace": namespace, "labels": labels(source)},
        "data": {c.CONFIG_FILE: rendered.config_yaml},
    }


def build_service_account(source: str, namespace: str) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": child_name(source), "namespace": namespace, "labels": labels(source)},
        "automountServiceAccountToken": True,
    }


def build_role(source: str, namespace: str) -> Manifest:
    """The bridge may read and patch the status of its own resource, and nothing else."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": child_name(source), "namespace": namespace, "labels": labels(source)},
        "rules": [
            {
                "apiGroups": [c.GROUP],
                "resources": [f"{c.PLURAL}/status"],
                "resourceNames": [source],
                "verbs": ["get", "patch"],
            }
        ],
    }


def build_role_binding(source: str, namespace: str) -> Manifest:
    name = child_name(source)
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": name, "namespace": namespace, "labels": labels(source)},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
    }


def build_deployment(
    source: str,
    namespace: str,
    rendered: RenderedSource,
    settings: OperatorSettings,
    *,
    suspended: bool,
) -> Manifest:
    """One replica of the bridge; a changed spec hash in the template rolls the pod."""
    name = child_name(source)
    pod_labels = labels(source)
    template = merged(settings.bridge_template, rendered.template)
    port = template.container.metrics_port or DEFAULT_METRICS_PORT
    deployment: Manifest = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": pod_labels},
        "spec": {
            "replicas": 0 if suspended else 1,
            # never two bridges on one feed at once: the old pod drains before the new starts
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": {c.LABEL_INSTANCE: source, c.LABEL_COMPONENT: "bridge"}},
            "template": {
                "metadata": {
                    "labels": pod_labels,
                    "annotations": {
                        c.ANNOTATION_SPEC_HASH: rendered.spec_hash,
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": str(port),
                        "prometheus.io/path": "/metrics",
                    },
                },
                "spec": _pod_spec(source, namespace, rendered, settings, port),
            },
        },
    }
    _customize(deployment["spec"]["template"], template)
    return deployment


def _pod_spec(
    source: str, namespace: str, rendered: RenderedSource, settings: OperatorSettings, port: int
) -> Manifest:
    name = child_name(source)
    return {
        "serviceAccountName": name,
        "terminationGracePeriodSeconds": rendered.grace_seconds,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 10001,
            "runAsGroup": 10001,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [
            {
                "name": "bridge",
                "image": settings.bridge_image,
                "imagePullPolicy": settings.image_pull_policy,
                "args": [
                    "ws2kafka-operator",
                    # one JSON object per line, for `kubectl logs` and log collectors
                    "--log-format",
                    "json",
                    "bridge",
                    "--config",
                    f"{c.CONFIG_DIR}/{c.CONFIG_FILE}",
                    "--resource",
                    f"{namespace}/{source}",
                    "--metrics-port",
                    str(port),
                    # on the pod's emptyDir: survives a container restart after a kill
                    "--state-file",
                    "/tmp/ws2kafka-run-state.json",
                    *(["--stay-after-giving-up"] if rendered.stays_after_giving_up else []),
                ],
                "env": [
                    {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                ],
                # a bridge that cannot start says why on stderr: the pod's termination
                # message, which the operator puts into the source's Ready condition
                "terminationMessagePolicy": "FallbackToLogsOnError",
                "ports": [{"name": "metrics", "containerPort": port}],
                # liveness starts once /healthz first answers: many bridges starting at once
                # on a busy node (a restart, a node drain) take a minute or more to listen,
                # and a liveness kill before that starts each of them over again
                "startupProbe": _probe("/healthz", period=2, failures=STARTUP_PROBE_FAILURES),
                "livenessProbe": _probe("/healthz", period=10, failures=3),
                "readinessProbe": _probe("/readyz", period=5, failures=2),
                "resources": {
                    "requests": {"cpu": settings.cpu_request, "memory": settings.memory_request},
                    "limits": {"cpu": settings.cpu_limit, "memory": settings.memory_limit},
                },
                "securityContext": {
                    "allowPrivilegeEscalation": False,
                    "readOnlyRootFilesystem": True,
                    "capabilities": {"drop": ["ALL"]},
                },
                "volumeMounts": [
                    {"name": "config", "mountPath": c.CONFIG_DIR, "readOnly": True},
                    {"name": "tmp", "mountPath": "/tmp"},
                    *_projected_mounts(rendered),
                ],
            }
        ],
        "volumes": [
            {"name": "config", "configMap": {"name": name}},
            {"name": "tmp", "emptyDir": {}},
            *_projected_volumes(rendered),
        ],
        **_placement(settings.bridge_pod),
    }


def _projected(rendered: RenderedSource) -> list[tuple[str, str, list[Manifest]]]:
    """The projected volumes the pod needs: (name, mount path, sources), if it needs any."""
    volumes = [
        ("tls", c.TLS_DIR, rendered.tls_sources),
        ("secrets", c.SECRETS_DIR, rendered.secret_sources),
    ]
    return [volume for volume in volumes if volume[2]]


def _projected_volumes(rendered: RenderedSource) -> list[Manifest]:
    return [
        {"name": name, "projected": {"sources": sources}}
        for name, _, sources in _projected(rendered)
    ]


def _projected_mounts(rendered: RenderedSource) -> list[Manifest]:
    return [
        {"name": name, "mountPath": path, "readOnly": True}
        for name, path, _ in _projected(rendered)
    ]


def _placement(pod: BridgePod) -> Manifest:
    """The operator's pod settings that are set (an empty one is left to the cluster)."""
    fields: Manifest = {
        "imagePullSecrets": [{"name": name} for name in pod.image_pull_secrets],
        "nodeSelector": dict(pod.node_selector),
        "tolerations": list(pod.tolerations),
        "affinity": dict(pod.affinity),
        "priorityClassName": pod.priority_class_name,
    }
    return {key: value for key, value in fields.items() if value}


#: Probes of a starting bridge's /healthz, 2 s apart, before the kubelet gives up on it
#: (restarts it): 5 minutes.
STARTUP_PROBE_FAILURES = 150


def _probe(path: str, *, period: int, failures: int) -> Manifest:
    return {
        "httpGet": {"path": path, "port": "metrics"},
        "periodSeconds": period,
        "failureThreshold": failures,
    }


# --- spec.template: what users add to the bridge pod (bridge/podtemplate.py) ---------------


def _customize(pod_template: Manifest, template: BridgeTemplate) -> None:
    """Apply the merged template to the rendered pod template, in place.

    The operator's labels and annotations win over the template's (its selector and the
    config-hash rollout depend on them); the template's env, volumes and mounts come after the
    operator's; a security context or resources in the template replace the defaults."""
    pod, container = template.pod, template.container
    metadata = pod_template["metadata"]
    metadata["labels"] = {**pod.metadata.labels, **metadata["labels"]}
    metadata["annotations"] = {**pod.metadata.annotations, **metadata["annotations"]}
    spec = pod_template["spec"]
    bridge = spec["containers"][0]
    if pod.security_context is not None:
        spec["securityContext"] = dict(pod.security_context)
    if pod.host_network is not None:
        spec["hostNetwork"] = pod.host_network
    if pod.host_network:
        # the kubelet shares the pod's network namespace: probe it on loopback, not on the
        # node's address (which the bridge may not even be reachable on)
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            bridge[probe]["httpGet"]["host"] = "127.0.0.1"
    if pod.dns_policy is not None:
        spec["dnsPolicy"] = pod.dns_policy
    spec["volumes"] = [*spec["volumes"], *pod.volumes]
    bridge["env"] = [*bridge["env"], *container.env]
    if container.env_from:
        bridge["envFrom"] = list(container.env_from)
    bridge["volumeMounts"] = [*bridge["volumeMounts"], *container.volume_mounts]
    if container.security_context is not None:
        bridge["securityContext"] = dict(container.security_context)
    if container.resources is not None:
        bridge["resources"] = dict(container.resources)

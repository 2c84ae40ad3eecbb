"""Every call the operator makes to the Kubernetes API, and nothing else.

Children are written with server-side apply (field manager ``ws2kafka-operator``), which
makes the reconcile idempotent: applying the same manifests twice changes nothing. The calls
are synchronous (the ``kubernetes`` client); async callers run them with ``asyncio.to_thread``.
Every call but the Lease's waits for a token of a client-side rate limit (:mod:`.ratelimit`).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, ParamSpec, TypeVar

import kubernetes
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient

from . import constants as c
from .ratelimit import DEFAULT_BURST, DEFAULT_QPS, TokenBucket

log = logging.getLogger(__name__)

FIELD_MANAGER = "ws2kafka-operator"
#: The field manager of restarts: the pod-template annotation it sets is not in the applied
#: manifests, and server-side apply leaves fields of another manager alone.
RESTART_FIELD_MANAGER = "ws2kafka-operator-restart"

Manifest = dict[str, Any]
P = ParamSpec("P")
R = TypeVar("R")


#: The operator's requests, bounded (:mod:`.ratelimit`); set from the settings at startup.
LIMIT = TokenBucket(DEFAULT_QPS, DEFAULT_BURST)


def limit_requests(rate: float, burst: int) -> None:
    """Bound the requests of this module to ``rate`` a second after a ``burst`` (0: none)."""
    global LIMIT
    LIMIT = TokenBucket(rate, burst)


def limited(call: Callable[P, R]) -> Callable[P, R]:
    """``call`` waits for a token of :data:`LIMIT` first."""

    @functools.wraps(call)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        LIMIT.take()
        return call(*args, **kwargs)

    return wrapper


@functools.cache
def api_client() -> ApiClient:
    """A client from ``$KUBECONFIG``/``~/.kube/config``, else the pod's service account."""
    try:
        kubernetes.config.load_kube_config()
    except kubernetes.config.ConfigException:
        kubernetes.config.load_incluster_config()
    return ApiClient()


@functools.cache
def _dynamic() -> DynamicClient:
    return DynamicClient(api_client())


@limited
def apply(manifest: Manifest) -> None:
    """Create or update one object to match ``manifest`` (server-side apply)."""
    resource = _dynamic().resources.get(api_version=manifest["apiVersion"], kind=manifest["kind"])
    resource.server_side_apply(
        body=manifest,
        name=manifest["metadata"]["name"],
        namespace=manifest["metadata"].get("namespace"),
        field_manager=FIELD_MANAGER,
        force_conflicts=True,
    )


@limited
def patch_status(namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
    """Merge-patch the status subresource of a WebSocketSource; returns the whole object."""
    custom = kubernetes.client.CustomObjectsApi(api_client())
    patched = custom.patch_namespaced_custom_object_status(
        c.GROUP, c.VERSION, namespace, c.PLURAL, name, {"status": status}
    )
    return patched if isinstance(patched, dict) else {}


@limited
def read_status(namespace: str, name: str) -> dict[str, Any]:
    """The status of a WebSocketSource (a bridge's Role allows reading its own)."""
    custom = kubernetes.client.CustomObjectsApi(api_client())
    found = custom.get_namespaced_custom_object_status(
        c.GROUP, c.VERSION, namespace, c.PLURAL, name
    )
    status = found.get("status") if isinstance(found, dict) else None
    return status if isinstance(status, dict) else {}


def list_sources(namespace: str | None) -> None:
    """List at most one WebSocketSource (cluster-wide for None): raises if the API server,
    the CRD or the permission is missing."""
    custom = kubernetes.client.CustomObjectsApi(api_client())
    if namespace is None:
        custom.list_cluster_custom_object(c.GROUP, c.VERSION, c.PLURAL, limit=1)
    else:
        custom.list_namespaced_custom_object(c.GROUP, c.VERSION, namespace, c.PLURAL, limit=1)


@limited
def secret_data(namespace: str, name: str) -> dict[str, str | bytes]:
    """A Secret's data, each value Base64-encoded as the API returns it."""
    core = kubernetes.client.CoreV1Api(api_client())
    return dict(core.read_namespaced_secret(name, namespace).data or {})


@limited
def config_map_data(namespace: str, name: str) -> dict[str, str]:
    """A ConfigMap's data."""
    core = kubernetes.client.CoreV1Api(api_client())
    return dict(core.read_namespaced_config_map(name, namespace).data or {})


@limited
def pod_warning_events(namespace: str, pod: str) -> list[dict[str, Any]]:
    """The Warning Events of one pod (the kubelet's ``FailedMount``...), as plain dicts."""
    core = kubernetes.client.CoreV1Api(api_client())
    selector = f"involvedObject.kind=Pod,involvedObject.name={pod},type=Warning"
    found = core.list_namespaced_event(namespace, field_selector=selector, limit=50)
    return [api_client().sanitize_for_serialization(event) for event in found.items]


@limited
def annotate(namespace: str, name: str, key: str, value: str) -> None:
    """Set one annotation of a WebSocketSource (a merge patch)."""
    custom = kubernetes.client.CustomObjectsApi(api_client())
    body = {"metadata": {"annotations": {key: value}}}
    custom.patch_namespaced_custom_object(c.GROUP, c.VERSION, namespace, c.PLURAL, name, body)


@limited
def remove_annotation(namespace: str, name: str, key: str, value: str) -> bool:
    """Remove an annotation of a WebSocketSource if it still has ``value``; True when this
    call removed it. A JSON patch that tests the value first makes the removal a claim: a
    stale event or a second look at the same request finds nothing left to claim."""
    custom = kubernetes.client.CustomObjectsApi(api_client())
    path = "/metadata/annotations/" + key.replace("~", "~0").replace("/", "~1")
    operations = [{"op": "test", "path": path, "value": value}, {"op": "remove", "path": path}]
    try:
        custom.patch_namespaced_custom_object(
            c.GROUP, c.VERSION, namespace, c.PLURAL, name, operations,
            _content_type="application/json-patch+json",
        )  # fmt: skip
    except ApiException as exc:
        if exc.status in (404, 409, 422):  # gone, or the test failed: claimed already
            return False
        raise
    return True


@limited
def restart_deployment(namespace: str, name: str, at: str) -> bool:
    """Roll a Deployment's pods by setting the pod-template annotation ``restarted-at``;
    False when there is no such Deployment."""
    apps = kubernetes.client.AppsV1Api(api_client())
    annotations = {c.ANNOTATION_RESTARTED_AT: at}
    body = {"spec": {"template": {"metadata": {"annotations": annotations}}}}
    try:
        apps.patch_namespaced_deployment(
            name, namespace, body, field_manager=RESTART_FIELD_MANAGER,
            _content_type="application/merge-patch+json",
        )  # fmt: skip
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


def read_lease(namespace: str, name: str, timeout: float) -> dict[str, Any] | None:
    """A Lease as the API serves it (camelCase keys), None when there is none."""
    coordination = kubernetes.client.CoordinationV1Api(api_client())
    try:
        lease = coordination.read_namespaced_lease(name, namespace, _request_timeout=timeout)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    found: dict[str, Any] = api_client().sanitize_for_serialization(lease)
    return found


def write_lease(
    namespace: str, name: str, spec: dict[str, Any], version: str | None, timeout: float
) -> None:
    """Create the Lease (``version`` None) or replace it if it is still at ``version``: a
    replica that read it before another wrote it gets a 409 (ApiException), not the Lease."""
    coordination = kubernetes.client.CoordinationV1Api(api_client())
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if version is not None:
        metadata["resourceVersion"] = version
    # a plain dict, as the client accepts: its models would turn the MicroTimes into datetimes
    body: Any = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata}
    body["spec"] = spec
    if version is None:
        coordination.create_namespaced_lease(namespace, body, _request_timeout=timeout)
    else:
        coordination.replace_namespaced_lease(name, namespace, body, _request_timeout=timeout)


def post_lease_event(
    namespace: str, lease: str, reason: str, message: str, source: str, timeout: float
) -> None:
    """A Normal Event about the Lease (client-go's ``LeaderElection`` Events)."""
    core = kubernetes.client.CoreV1Api(api_client())
    now = datetime.now(UTC)
    event: Any = {
        "metadata": {"generateName": f"{lease}.", "namespace": namespace},
        "involvedObject": {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "name": lease,
            "namespace": namespace,
        },
        "reason": reason,
        "message": message,
        "type": "Normal",
        "source": {"component": source},
        "firstTimestamp": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "lastTimestamp": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "count": 1,
    }
    core.create_namespaced_event(namespace, event, _request_timeout=timeout)

"""Every call the operator makes to the Kubernetes API, and nothing else.

Children are written with server-side apply (field manager ``ws2kafka-operator``), which
makes the reconcile idempotent: applying the same manifests twice changes nothing. The calls
are synchronous (the ``kubernetes`` client); async callers run them with ``asyncio.to_thread``.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import kubernetes
from kubernetes.client import ApiClient
from kubernetes.dynamic import DynamicClient

from . import constants as c

log = logging.getLogger(__name__)

FIELD_MANAGER = "ws2kafka-operator"

Manifest = dict[str, Any]


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


def patch_status(namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
    """Merge-patch the status subresource of a WebSocketSource; returns the whole object."""
    custom = kubernetes.client.CustomObjectsApi(api_client())
    patched = custom.patch_namespaced_custom_object_status(
        c.GROUP, c.VERSION, namespace, c.PLURAL, name, {"status": status}
    )
    return patched if isinstance(patched, dict) else {}


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


def pod_warning_events(namespace: str, pod: str) -> list[dict[str, Any]]:
    """The Warning Events of one pod (the kubelet's ``FailedMount``...), as plain dicts."""
    core = kubernetes.client.CoreV1Api(api_client())
    selector = f"involvedObject.kind=Pod,involvedObject.name={pod},type=Warning"
    found = core.list_namespaced_event(namespace, field_selector=selector, limit=50)
    return [api_client().sanitize_for_serialization(event) for event in found.items]

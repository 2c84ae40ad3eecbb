"""The local control plane behaves like a real cluster where the operator depends on it.

These tests pin what later tests take for granted: the CRD is accepted and enforces its CEL
rule, both the Python client and kubectl reach the server with verified TLS, the status
subresource and short names work, controllers turn Deployments into Pods and garbage-collect
them, and ServiceAccount tokens are subject to RBAC.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from ws2kafka.devstack.kube import ControlPlane

pytestmark = pytest.mark.k8s

CRD_PATH = Path(__file__).resolve().parents[2] / "crds" / "websocketsource.yaml"
GROUP, VERSION, PLURAL = "ws2kafka.dev", "v1alpha1", "websocketsources"
MERGE_PATCH = "application/merge-patch+json"


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Controllers act asynchronously; poll instead of sleeping a guessed time."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)


def source(name: str, url: str = "wss://feed.example/stream") -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "WebSocketSource",
        "metadata": {"name": name},
        "spec": {"url": url, "kafka": {"bootstrapServers": "kafka:9092", "topic": "trades"}},
    }


@pytest.fixture(scope="module")
def crd(kube: ControlPlane) -> None:
    kube.kubectl("apply", "-f", str(CRD_PATH))
    kube.wait_established(f"crd/{PLURAL}.{GROUP}")


@pytest.fixture
def namespace(kube: ControlPlane) -> Iterator[str]:
    name = f"test-{uuid.uuid4().hex[:12]}"
    kube.kubectl("create", "namespace", name)
    yield name
    kube.kubectl("delete", "namespace", name, "--wait=false")


@pytest.fixture
def custom_objects(kube: ControlPlane) -> Iterator[client.CustomObjectsApi]:
    with kube.api_client() as api_client:
        yield client.CustomObjectsApi(api_client)


@pytest.mark.usefixtures("crd")
def test_python_client_creates_patches_and_deletes_a_source(
    custom_objects: client.CustomObjectsApi, namespace: str
) -> None:
    api, where = custom_objects, (GROUP, VERSION, namespace, PLURAL)
    created = cast("dict[str, Any]", api.create_namespaced_custom_object(*where, source("s1")))
    assert created["spec"]["buffer"]["maxMessages"] == 10000, "the API server applies defaults"

    spec_patch = {"spec": {"kafka": {"topic": "quotes"}}}
    api.patch_namespaced_custom_object(*where, "s1", spec_patch, _content_type=MERGE_PATCH)
    status = {"conditions": [{"type": "Ready", "status": "True"}]}
    api.patch_namespaced_custom_object_status(
        *where, "s1", {"status": status}, _content_type=MERGE_PATCH
    )
    fetched = cast("dict[str, Any]", api.get_namespaced_custom_object(*where, "s1"))
    assert fetched["spec"]["kafka"]["topic"] == "quotes"
    assert fetched["status"] == status

    api.delete_namespaced_custom_object(*where, "s1")
    with pytest.raises(ApiException) as missing:
        api.get_namespaced_custom_object(*where, "s1")
    assert missing.value.status == 404


@pytest.mark.usefixtures("crd")
def test_kubectl_applies_patches_lists_and_deletes_a_source(
    kube: ControlPlane, namespace: str
) -> None:
    ns = ("-n", namespace)
    kube.kubectl("apply", *ns, "-f", "-", input=json.dumps(source("s2")))
    kube.kubectl("patch", *ns, "wss", "s2", "--type=merge", "-p", '{"spec":{"url":"ws://x"}}')
    kube.kubectl(
        "patch",
        *ns,
        "wss",
        "s2",
        "--subresource=status",
        "--type=merge",
        "-p",
        '{"status":{"conditions":[{"type":"Ready","status":"False"}]}}',
    )
    fetched = json.loads(kube.kubectl("get", *ns, "websocketsource", "s2", "-o", "json").stdout)
    assert fetched["spec"]["url"] == "ws://x"
    assert fetched["status"]["conditions"][0]["status"] == "False"

    for alias in ("wss", "wssources", "ws2kafka"):
        listed = kube.kubectl("get", *ns, alias, "-o", "name").stdout.split()
        assert listed == [f"websocketsource.{GROUP}/s2"], alias
    narrow = [line.split() for line in kube.kubectl("get", *ns, "wss").stdout.splitlines()]
    assert narrow[0] == [
        "NAME",
        "TOPIC",
        "STATE",
        "READY",
        "CONNECTIONS",
        "MESSAGES",
        "LAST",
        "MESSAGE",
        "AGE",
    ]
    assert narrow[1][:3] == ["s2", "trades", "False"]
    wide = kube.kubectl("get", *ns, "wss", "-o", "wide").stdout.splitlines()
    assert wide[0].split()[:3] == ["NAME", "URL", "TOPIC"]

    kube.kubectl("delete", *ns, "wss", "s2")
    assert kube.kubectl("get", *ns, "wss", "-o", "name").stdout == ""


@pytest.mark.usefixtures("crd")
def test_cel_rule_rejects_a_non_websocket_url(kube: ControlPlane, namespace: str) -> None:
    bad = json.dumps(source("bad", url="http://x"))
    result = kube.kubectl("apply", "-n", namespace, "-f", "-", input=bad, check=False)
    assert result.returncode != 0
    assert "spec.url: Invalid value" in result.stderr
    assert "must start with ws:// or wss://" in result.stderr


def test_controllers_create_and_garbage_collect_deployment_children(
    kube: ControlPlane, namespace: str
) -> None:
    ns = ("-n", namespace)
    kube.kubectl("create", "deployment", "web", *ns, "--image=registry.invalid/web", "--replicas=2")

    def owned(kind: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = json.loads(
            kube.kubectl("get", kind, *ns, "-o", "json").stdout
        )["items"]
        return [item for item in items if item["metadata"].get("ownerReferences")]

    wait_for(lambda: len(owned("pods")) == 2, 60, "the ReplicaSet's two Pods")
    [replica_set] = owned("replicasets")
    assert replica_set["metadata"]["ownerReferences"][0]["kind"] == "Deployment"
    assert owned("pods")[0]["metadata"]["ownerReferences"][0]["kind"] == "ReplicaSet"

    kube.kubectl("delete", "deployment", "web", *ns)
    wait_for(lambda: not owned("replicasets") and not owned("pods"), 60, "garbage collection")


def test_service_account_token_is_limited_by_rbac(kube: ControlPlane, namespace: str) -> None:
    ns = ("-n", namespace)
    token = kube.service_account_token(namespace, "reader")
    whoami = kube.kubectl("auth", "whoami", "-o", "json", token=token).stdout
    username = json.loads(whoami)["status"]["userInfo"]["username"]
    assert username == f"system:serviceaccount:{namespace}:reader"

    def can_i(verb: str, resource: str) -> str:
        result = kube.kubectl("auth", "can-i", verb, resource, *ns, token=token, check=False)
        return result.stdout.strip()

    assert can_i("list", "secrets") == "no"
    kube.kubectl("create", "role", "read-cm", *ns, "--verb=list", "--resource=configmaps")
    kube.kubectl(
        "create",
        "rolebinding",
        "read-cm",
        *ns,
        "--role=read-cm",
        f"--serviceaccount={namespace}:reader",
    )
    assert can_i("list", "configmaps") == "yes"
    assert can_i("list", "secrets") == "no"

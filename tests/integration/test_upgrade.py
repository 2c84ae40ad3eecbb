"""An upgrade as a user makes it: the previous release running, then this tree's CRD and chart.

The previous release (`CHANGELOG.md`, :data:`ws2kafka.devstack.previous.PREVIOUS`) is taken
from git history: its CRD, its chart, and its image built from its own tree. A source created
under it must keep streaming through the documented upgrade (README, "Upgrading": apply the
new CRD, then ``helm upgrade``) with no frame lost, stay valid under the new schema, and
restart nothing that does not need to.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from ws2kafka.devstack import previous, release
from ws2kafka.devstack.feeds import FeedThread
from ws2kafka.devstack.harness import frame_seqs, record_count
from ws2kafka.devstack.kafka import KafkaBroker
from ws2kafka.devstack.kube import ControlPlane
from ws2kafka.devstack.node import Node
from ws2kafka.devstack.waiting import wait_until

pytestmark = [pytest.mark.k8s, pytest.mark.kafka, pytest.mark.timeout(900)]

RELEASE = "wsk-up"
CRD_NAME = "crd/websocketsources.ws2kafka.dev"
CRD_PATH = previous.REPO / "crds" / "websocketsource.yaml"
BRIDGE_PODS = "app.kubernetes.io/instance={},app.kubernetes.io/component=bridge"


class Cluster:
    """kubectl in one namespace, and the facts the upgrade is judged by."""

    def __init__(self, kube: ControlPlane, namespace: str) -> None:
        self.kube = kube
        self.namespace = namespace

    def kubectl(self, *args: str, input: str | None = None) -> str:
        return self.kube.kubectl("-n", self.namespace, *args, input=input).stdout

    def get(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json"))

    def bridge_pods(self, source: str) -> list[dict[str, Any]]:
        """The source's bridge pods that are not being deleted."""
        items = self.get("pods", "-l", BRIDGE_PODS.format(source))["items"]
        return [pod for pod in items if not pod["metadata"].get("deletionTimestamp")]

    def ready_bridge(self, source: str, image: str) -> dict[str, Any]:
        """The source's one bridge pod, Ready and running ``image``."""

        def ready() -> dict[str, Any]:
            pods = self.bridge_pods(source)
            if len(pods) != 1 or pods[0]["spec"]["containers"][0]["image"] != image:
                return {}
            conditions = pods[0].get("status", {}).get("conditions", [])
            ready = any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
            return pods[0] if ready else {}

        return wait_until(ready, 240, f"{source}'s bridge Ready with {image}", interval=1)

    def status(self, source: str) -> dict[str, Any]:
        return dict(self.get("wss", source).get("status", {}))

    def condition(self, source: str, kind: str) -> dict[str, Any]:
        conditions = self.status(source).get("conditions", [])
        return next((dict(c) for c in conditions if c["type"] == kind), {})

    def streaming(self, source: str, pod: str) -> bool:
        """Whether ``pod`` reports the source Connected, and the operator says Ready."""
        connection = self.status(source).get("connection", {})
        return (
            connection.get("podName") == pod
            and connection.get("state") == "Connected"
            and self.condition(source, "Ready").get("status") == "True"
        )

    def replica_sets(self, source: str) -> int:
        """How many ReplicaSets the source's bridge Deployment has had (one per rollout)."""
        return len(self.get("replicasets", "-l", BRIDGE_PODS.format(source))["items"])


def source(cluster: Cluster, kafka: KafkaBroker, url: str, topic: str) -> dict[str, Any]:
    """A source written for the previous release (no field it does not know)."""
    return {
        "apiVersion": "ws2kafka.dev/v1alpha1",
        "kind": "WebSocketSource",
        "metadata": {"name": "carried", "namespace": cluster.namespace},
        "spec": {
            "url": url,
            "kafka": {"bootstrapServers": kafka.bootstrap_servers, "topic": topic},
            "reconnect": {"initialDelaySeconds": 0.2, "maxDelaySeconds": 1},
        },
    }


@pytest.fixture
def old_crd(kube: ControlPlane) -> Iterator[str]:
    """The previous release's CRD in place; this tree's again afterwards, for later tests."""
    crd = previous.file_at(previous.PREVIOUS, "crds/websocketsource.yaml")
    apply_crd(kube, crd)
    try:
        yield crd
    finally:
        apply_crd(kube, CRD_PATH.read_text())


def apply_crd(kube: ControlPlane, crd: str) -> None:
    """What the README's upgrade section tells users to run."""
    kube.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=crd)
    kube.wait_established(CRD_NAME)


def test_a_source_of_the_previous_release_streams_on_through_the_upgrade(
    kube: ControlPlane, node: Node, kafka: KafkaBroker, feed: FeedThread, old_crd: str
) -> None:
    old = previous.PREVIOUS
    node.import_image(previous.image_archive(old))
    cluster = Cluster(kube, f"upgrade-{uuid.uuid4().hex[:6]}")
    values = release.node_values(node, [cluster.namespace], image=old.image)
    chart = previous.tree(old) / "helm" / "ws2kafka"
    release.install(kube, node, RELEASE, cluster.namespace, chart=chart, values=values)
    try:
        topic = f"upgrade-{uuid.uuid4().hex[:8]}"
        kafka.create_topic(topic)
        manifest = json.dumps(source(cluster, kafka, feed.url, topic))
        cluster.kubectl("apply", "-f", "-", input=manifest)
        before = cluster.ready_bridge("carried", old.image)["metadata"]["name"]
        wait_until(lambda: cluster.streaming("carried", before), 120, "streaming under the old")
        wait_until(lambda: record_count(kafka, topic) >= 20, 60, "frames in Kafka")

        apply_crd(kube, CRD_PATH.read_text())
        crd_version = kube.kubectl("get", CRD_NAME, "-o", "jsonpath={.metadata.resourceVersion}")
        upgraded = {**values, "image": release.image_values(node.image)}
        release.upgrade(kube, RELEASE, cluster.namespace, upgraded)

        after = cluster.ready_bridge("carried", node.image)["metadata"]["name"]
        wait_until(lambda: cluster.streaming("carried", after), 120, "streaming under the new")
        sent = feed.hold()
        wait_until(lambda: len(frame_seqs(kafka, topic)) >= sent, 60, f"{sent} frames in Kafka")
        assert sorted(set(frame_seqs(kafka, topic))) == list(range(1, sent + 1)), "a frame lost"
        assert cluster.replica_sets("carried") == 2, "the bridge rolled more than once"
        unchanged = kube.kubectl("get", CRD_NAME, "-o", "jsonpath={.metadata.resourceVersion}")
        assert unchanged.stdout == crd_version.stdout, "helm upgrade changed the CRD"
        cluster.kubectl("apply", "--dry-run=server", "-f", "-", input=manifest)

        cluster.kubectl("rollout", "restart", f"deployment/{RELEASE}-ws2kafka")
        cluster.kubectl("rollout", "status", f"deployment/{RELEASE}-ws2kafka", "--timeout=120s")
        wait_until(lambda: cluster.streaming("carried", after), 60, "Ready after the restart")
        assert [pod["metadata"]["name"] for pod in cluster.bridge_pods("carried")] == [after]
        assert cluster.replica_sets("carried") == 2, "an operator restart rolled the bridge"
    finally:
        cluster.kubectl("delete", "wss", "--all", "--wait=true")
        kube.helm("uninstall", RELEASE, "-n", cluster.namespace, "--wait", check=False)
        kube.kubectl("delete", "namespace", cluster.namespace, "--wait=false", check=False)

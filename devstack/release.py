"""The Helm chart installed on the devstack's node, with the image the node imported.

Shared by the node's tests and ``make demo-node``. The values are what any cluster without
kube-proxy and with host networking needs; nothing here is specific to tests: the image
from the node's containerd (never pulled), the operator and the bridges on the host network
and tolerating the node's taint, and the API server's loopback address for every pod.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any, Final

from .kube import ControlPlane
from .node import TOLERATION, Node
from .processes import free_port

#: The chart, in the repository next to this package.
CHART: Final = Path(__file__).resolve().parent.parent / "helm" / "ws2kafka"


def image_values(image: str) -> dict[str, str]:
    """The chart's ``image`` values for an image the node has imported (never pulled)."""
    repository, tag = image.rsplit(":", 1)
    return {"repository": repository, "tag": tag, "pullPolicy": "Never"}


def node_values(node: Node, namespaces: list[str], image: str | None = None) -> dict[str, Any]:
    """Chart values that run the operator (watching ``namespaces``) and its bridges on
    ``node``, on loopback only, from ``image`` (the node's own image by default)."""
    return {
        "image": image_values(image or node.image),
        "watchNamespaces": namespaces,
        "kubernetesService": {"host": "127.0.0.1", "port": node.kube.server.rsplit(":", 1)[1]},
        "operator": {
            "hostNetwork": True,
            "metricsPort": free_port(),
            "tolerations": [TOLERATION],
            "logFormat": "json",
            "reportIntervalSeconds": 1,
            "conditionIntervalSeconds": 1,
        },
        "bridge": {
            "tolerations": [TOLERATION],
            # on the host network, 9400 may be taken: a free port (sources may set their own)
            "template": {"pod": {"hostNetwork": True}, "container": {"metricsPort": free_port()}},
        },
    }


def install(
    kube: ControlPlane,
    node: Node,
    release: str,
    namespace: str,
    *,
    chart: Path = CHART,
    values: dict[str, Any] | None = None,
) -> None:
    """``helm install --wait`` of ``chart`` into ``namespace`` (created), watching it, with
    ``values`` (by default :func:`node_values` for the node's image)."""
    values = values or node_values(node, [namespace])
    _helm(kube, "install", release, namespace, chart, values, "--create-namespace")


def upgrade(kube: ControlPlane, release: str, namespace: str, values: dict[str, Any]) -> None:
    """``helm upgrade --wait`` of ``release`` to this tree's chart. The CRD is left as it
    is: Helm never upgrades what a chart's crds/ installed (README, "Upgrading")."""
    _helm(kube, "upgrade", release, namespace, CHART, values)


def _helm(
    kube: ControlPlane,
    verb: str,
    release: str,
    namespace: str,
    chart: Path,
    values: dict[str, Any],
    *extra: str,
) -> None:
    with tempfile.TemporaryDirectory(prefix="ws2kafka-values-") as scratch:
        path = Path(scratch) / "values.json"
        path.write_text(json.dumps(values))
        kube.helm(
            verb, release, str(chart), "-n", namespace, *extra,
            "-f", str(path), "--wait", "--timeout=110s",
        )  # fmt: skip

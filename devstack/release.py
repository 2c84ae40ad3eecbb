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


def node_values(node: Node, namespaces: list[str]) -> dict[str, Any]:
    """Chart values that run the operator (watching ``namespaces``) and its bridges on
    ``node``, on loopback only."""
    repository, tag = node.image.rsplit(":", 1)
    return {
        "image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},
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


def install(kube: ControlPlane, node: Node, release: str, namespace: str) -> None:
    """``helm install --wait`` of the chart into ``namespace`` (created), watching it."""
    with tempfile.TemporaryDirectory(prefix="ws2kafka-values-") as scratch:
        values = Path(scratch) / "values.json"
        values.write_text(json.dumps(node_values(node, [namespace])))
        kube.helm(
            "install", release, str(CHART), "-n", namespace, "--create-namespace",
            "-f", str(values), "--wait", "--timeout=110s",
        )  # fmt: skip

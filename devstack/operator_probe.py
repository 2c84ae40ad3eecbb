"""Wait until an operator watching a namespace pattern really sees new namespaces.

kopf lists the namespaces once and then starts a watch whose own initial listing it ignores,
so a namespace created in the moment between the two is not watched until it next changes.
A test that creates its namespace right after the operator starts can land in that moment
and wait in vain for a source the operator never saw. This probe proves that a namespace
created *now* is picked up: it applies a suspended source in a fresh matching namespace and
waits for its conditions, with a new namespace each try, so one created inside the gap
cannot hold it up.
"""

from __future__ import annotations

import time
import uuid

import yaml

from .kube import ControlPlane
from .processes import ManagedProcess, StackError, tail

_PROBE_SECONDS = 10.0


def wait_until_watching(
    kube: ControlPlane, operator: ManagedProcess, pattern: str, timeout: float = 90.0
) -> None:
    """Return once ``operator``, watching ``pattern`` (one ``*``), reconciles a source in a
    namespace created now; StackError with its log's tail if it dies or never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        namespace = pattern.replace("*", f"probe-{uuid.uuid4().hex[:6]}", 1)
        kube.kubectl("create", "namespace", namespace)
        try:
            kube.kubectl("-n", namespace, "apply", "-f", "-", input=_suspended_source())
            if _conditions_within(kube, operator, namespace):
                return
        finally:
            kube.kubectl("delete", "namespace", namespace, "--wait=false")
    raise StackError(
        f"{operator.name} did not reconcile a source in a new {pattern} namespace within "
        f"{timeout:.0f} s; log: {operator.log_path}\n{tail(operator.log_path)}"
    )


def _conditions_within(kube: ControlPlane, operator: ManagedProcess, namespace: str) -> bool:
    deadline = time.monotonic() + _PROBE_SECONDS
    while time.monotonic() < deadline:
        if not operator.running():
            raise StackError(f"{operator.name} exited; log: {operator.log_path}")
        if kube.get_json(namespace, "wss", "probe").get("status", {}).get("conditions"):
            return True
        time.sleep(0.2)
    return False


def _suspended_source() -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "ws2kafka.dev/v1alpha1",
            "kind": "WebSocketSource",
            "metadata": {"name": "probe"},
            "spec": {
                "url": "ws://127.0.0.1:9/probe",
                "kafka": {"bootstrapServers": "127.0.0.1:9", "topic": "probe"},
                "suspend": True,
            },
        }
    )

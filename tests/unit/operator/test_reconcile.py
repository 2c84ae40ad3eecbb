"""The pod-mode reconcile: the children applied, and a resume that applies nothing when the
source records the hash of the children it would apply again."""

from __future__ import annotations

from typing import Any

import kopf
import pytest

from ws2kafka.operator import kube, reconcile
from ws2kafka.operator.events import EventLimiter
from ws2kafka.operator.settings import OperatorSettings


def test_a_resume_applies_nothing_when_the_recorded_children_hash_matches(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An operator restarted with thousands of sources waiting: a source that records the
    hash of the children it would apply again costs no API request."""
    applied: list[dict[str, Any]] = []
    events: list[str] = []
    monkeypatch.setattr(kube, "apply", applied.append)
    monkeypatch.setattr(kopf, "event", lambda body, type, reason, message: events.append(reason))
    body = {
        "apiVersion": "ws2kafka.dev/v1alpha1",
        "kind": "WebSocketSource",
        "metadata": {"namespace": "ns", "name": "s", "uid": "u"},
    }
    spec = {"url": "wss://feed/ws", "kafka": {"bootstrapServers": "k:9092", "topic": "t"}}

    def reconcile_with(recorded: str | None, spec: dict[str, Any] = spec) -> str | None:
        return reconcile.reconcile_source(
            body, spec, "s", "ns", OperatorSettings(), EventLimiter(0), {}, applied=recorded
        )

    recorded = reconcile_with(None)
    assert [manifest["kind"] for manifest in applied] == [
        "ServiceAccount", "Role", "RoleBinding", "ConfigMap", "Deployment",
    ]  # fmt: skip
    assert recorded is not None
    assert events == ["RolledOut"]
    applied.clear()
    assert reconcile_with(recorded) is None
    assert (applied, events) == ([], ["RolledOut"])  # nothing applied, nothing said
    changed = reconcile_with(recorded, {**spec, "suspend": True})
    assert [manifest["kind"] for manifest in applied][-1] == "Deployment"
    assert changed not in (None, recorded)

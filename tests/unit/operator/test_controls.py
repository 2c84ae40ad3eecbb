"""The restart and pause annotations: what the operator does with them, without an API server."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import kopf
import pytest
from kubernetes.client.exceptions import ApiException

from ws2kafka.operator import inline, kube
from ws2kafka.operator.conditions import Facts, derive, merge_conditions
from ws2kafka.operator.constants import ANNOTATION_PAUSE, ANNOTATION_RESTART
from ws2kafka.operator.controls import PodControls, is_paused, paused_message, restart_request

BODY = {"metadata": {"namespace": "ns", "name": "src"}}
PAUSED = {"annotations": {ANNOTATION_PAUSE: "true"}}


def meta(**annotations: str) -> dict[str, Any]:
    return {"name": "src", "annotations": annotations}


def test_only_true_pauses_and_a_pause_holds_a_restart_back() -> None:
    assert is_paused(PAUSED)
    assert not is_paused(meta(**{ANNOTATION_PAUSE: "false"}))
    assert not is_paused({})
    assert restart_request(meta(**{ANNOTATION_RESTART: "now"})) == "now"
    assert restart_request(meta(**{ANNOTATION_RESTART: "now", ANNOTATION_PAUSE: "true"})) is None
    assert restart_request({}) is None
    assert f"kubectl annotate wss src {ANNOTATION_PAUSE}-" in paused_message("src")


@dataclass
class FakeCluster:
    """The annotations of one source and the restarts of its Deployment, as kube.py sees them."""

    annotations: dict[str, str] = field(default_factory=dict)
    restarts: list[tuple[str, str]] = field(default_factory=list)
    deployment: bool = True
    events: list[tuple[str, str, str]] = field(default_factory=list)

    def remove_annotation(self, namespace: str, name: str, key: str, value: str) -> bool:
        if self.annotations.get(key) != value:
            return False
        del self.annotations[key]
        return True

    def restart_deployment(self, namespace: str, name: str, at: str) -> bool:
        if self.deployment:
            self.restarts.append((namespace, name))
        return self.deployment

    def event(self, body: Any, *, type: str, reason: str, message: str) -> None:
        self.events.append((type, reason, message))


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch) -> FakeCluster:
    fake = FakeCluster()
    monkeypatch.setattr(kube, "remove_annotation", fake.remove_annotation)
    monkeypatch.setattr(kube, "restart_deployment", fake.restart_deployment)
    monkeypatch.setattr(kopf, "event", fake.event)
    return fake


def test_a_restart_rolls_the_deployment_once_and_says_so(cluster: FakeCluster) -> None:
    applied: list[dict[str, Any]] = []
    pod = PodControls(lambda body, spec, namespace, name: applied.append(spec))
    cluster.annotations[ANNOTATION_RESTART] = "true"
    asked = meta(**{ANNOTATION_RESTART: "true"})
    pod.observe(BODY, {}, asked, "ns", "src")
    pod.observe(BODY, {}, asked, "ns", "src")  # a stale event of the same request
    assert cluster.restarts == [("ns", "src-bridge")]
    assert ANNOTATION_RESTART not in cluster.annotations
    [(kind, reason, message)] = cluster.events
    assert (kind, reason) == ("Normal", "Restarted")
    assert "rolled the bridge pod (ws2kafka.dev/restarted-at=" in message
    assert not applied  # a restart is no reconcile


def test_a_restart_of_nothing_is_answered_and_removed(cluster: FakeCluster) -> None:
    pod = PodControls(lambda body, spec, namespace, name: None)
    cluster.annotations[ANNOTATION_RESTART] = "1"
    pod.observe(BODY, {"suspend": True}, meta(**{ANNOTATION_RESTART: "1"}), "ns", "src")
    cluster.deployment = False
    cluster.annotations[ANNOTATION_RESTART] = "2"
    pod.observe(BODY, {}, meta(**{ANNOTATION_RESTART: "2"}), "ns", "src")
    assert not cluster.restarts
    assert not cluster.annotations
    assert [message for _, _, message in cluster.events] == [
        "nothing to restart: spec.suspend is true, no bridge runs",
        "nothing to restart: the bridge Deployment does not exist",
    ]


def test_a_failed_restart_is_a_warning(
    cluster: FakeCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refused(namespace: str, name: str, at: str) -> bool:
        raise ApiException(status=500, reason="Internal Server Error")

    monkeypatch.setattr(kube, "restart_deployment", refused)
    cluster.annotations[ANNOTATION_RESTART] = "x"
    PodControls(lambda *_: None).observe(BODY, {}, meta(**{ANNOTATION_RESTART: "x"}), "ns", "src")
    [(kind, reason, message)] = cluster.events
    assert (kind, reason) == ("Warning", "RestartFailed")
    assert "Internal Server Error" in message


def test_paused_nothing_happens_and_the_resume_applies_the_spec(cluster: FakeCluster) -> None:
    applied: list[dict[str, Any]] = []
    pod = PodControls(lambda body, spec, namespace, name: applied.append(spec))
    cluster.annotations[ANNOTATION_RESTART] = "r"
    while_paused = meta(**{ANNOTATION_PAUSE: "true", ANNOTATION_RESTART: "r"})
    pod.observe(BODY, {"v": 1}, while_paused, "ns", "src")
    pod.observe(BODY, {"v": 2}, while_paused, "ns", "src")
    assert (applied, cluster.restarts) == ([], [])
    pod.observe(BODY, {"v": 2}, meta(**{ANNOTATION_RESTART: "r"}), "ns", "src")
    pod.observe(BODY, {"v": 2}, meta(), "ns", "src")
    assert applied == [{"v": 2}]  # the spec as it is at the resume, once
    assert cluster.restarts == [("ns", "src-bridge")]  # the restart that waited


def test_a_resume_the_api_server_refused_is_tried_again(cluster: FakeCluster) -> None:
    calls: list[int] = []

    def flaky(body: Any, spec: dict[str, Any], namespace: str, name: str) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise ApiException(status=409, reason="Conflict")

    pod = PodControls(flaky)
    pod.observe(BODY, {}, PAUSED, "ns", "src")
    pod.observe(BODY, {}, meta(), "ns", "src")
    pod.observe(BODY, {}, meta(), "ns", "src")
    pod.observe(BODY, {}, meta(), "ns", "src")
    assert len(calls) == 2


def test_a_deleted_source_is_forgotten(cluster: FakeCluster) -> None:
    applied: list[dict[str, Any]] = []
    pod = PodControls(lambda body, spec, namespace, name: applied.append(spec))
    pod.observe(BODY, {}, PAUSED, "ns", "src")
    pod.forget("ns", "src")
    pod.observe(BODY, {}, meta(), "ns", "src")  # a new source of the same name
    assert not applied


def paused_facts(paused: str | None) -> Facts:
    connected = {"state": "Connected", "since": "2026-11-28T00:00:00Z"}
    return Facts(3, None, False, connected, 1.0, 30.0, True, paused=paused)


def test_the_paused_condition_says_how_to_resume_and_goes_with_the_pause() -> None:
    now = datetime(2026, 12, 1, tzinfo=UTC)
    verdicts = derive(paused_facts(paused_message("src")))
    paused = verdicts["ReconciliationPaused"]
    assert (paused.status, paused.reason) == ("True", "ReconciliationPaused")
    assert "kubectl annotate wss src" in paused.message
    assert verdicts["Progressing"].reason == "ReconciliationPaused"
    assert verdicts["Ready"].status == "True"  # the bridge runs on
    before = merge_conditions([], verdicts, 3, now)
    after = merge_conditions(before, derive(paused_facts(None)), 3, now)
    assert "ReconciliationPaused" in [c["type"] for c in before]
    assert "ReconciliationPaused" not in [c["type"] for c in after]


def test_inline_mode_keeps_a_paused_bridge_as_it_runs() -> None:
    spec = {"url": "ws://a"}
    running = inline.spec_fingerprint(spec)
    changed = {"url": "ws://b"}
    assert inline._changed({"metadata": meta()}, changed, running)
    assert not inline._changed({"metadata": PAUSED}, changed, running)
    assert not inline._changed({"metadata": meta()}, spec, running)


async def test_inline_mode_claims_a_restart_once(
    cluster: FakeCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(inline, "VIEW_LAG_SECONDS", 0.3)
    cluster.annotations[ANNOTATION_RESTART] = "now"
    body = {"metadata": meta(**{ANNOTATION_RESTART: "now"})}  # the live view lags behind
    await inline._claim_restart(body, "ns", "src")
    await inline._claim_restart(body, "ns", "src")
    assert not cluster.annotations
    assert [reason for _, reason, _ in cluster.events] == ["Restarted"]
    await inline._claim_restart({"metadata": meta()}, "ns", "src")  # nothing asked
    assert len(cluster.events) == 1


def test_only_an_event_with_something_to_carry_out_concerns_the_controls() -> None:
    """A bridge's status report (no pause, no restart) is answered without a thread; a
    pause, its end and a restart request are not."""
    pod = PodControls(lambda *_: None)
    assert not pod.concerns(meta(), "ns", "src")
    assert pod.concerns(meta(**{ANNOTATION_RESTART: "now"}), "ns", "src")
    assert pod.concerns(PAUSED, "ns", "src")
    pod.observe(BODY, {}, PAUSED, "ns", "src")
    assert pod.concerns(meta(), "ns", "src")  # the resume
    pod.observe(BODY, {}, meta(), "ns", "src")
    assert not pod.concerns(meta(), "ns", "src")

"""The operator's status reporter: what it patches, and rotation requests it relays."""

from typing import Any

from ws2kafka.bridge.reporting import StatusSnapshot
from ws2kafka.bridge.stats import BridgeStats
from ws2kafka.operator.reporter import ROTATE_ANNOTATION, KubeStatusReporter


class FakeApi:
    def __init__(self) -> None:
        self.annotations: dict[str, str] = {}
        self.patches: list[dict[str, Any]] = []

    def patch(self, namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
        self.patches.append(status)
        return {"metadata": {"annotations": dict(self.annotations)}, "status": status}


async def test_reports_connection_and_relays_annotation_changes() -> None:
    api = FakeApi()
    reporter = KubeStatusReporter("ns", "src", pod_name="p-1", interval=5, patch=api.patch)
    snapshot = StatusSnapshot.of(BridgeStats(), "c1", 1_800_000_000.0)
    api.annotations[ROTATE_ANNOTATION] = "before-start"
    first = await reporter.report(snapshot)
    assert first is not None
    assert not first.rotate  # the value at start is the baseline
    assert api.patches[0]["connection"]["podName"] == "p-1"
    assert api.patches[0]["connection"]["connectionId"] == "c1"
    again = await reporter.report(snapshot)
    assert again is not None
    assert not again.rotate
    api.annotations[ROTATE_ANNOTATION] = "2026-11-28T03:00:00Z"
    asked = await reporter.report(snapshot)
    assert asked is not None
    assert asked.rotate
    after = await reporter.report(snapshot)
    assert after is not None
    assert not after.rotate


async def test_a_failing_api_is_not_fatal() -> None:
    def broken(namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
        raise ConnectionRefusedError("api server away")

    reporter = KubeStatusReporter("ns", "src", pod_name=None, interval=5, patch=broken)
    assert await reporter.report(StatusSnapshot.of(BridgeStats(), None, 0.0)) is None

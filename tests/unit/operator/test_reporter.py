"""The operator's status reporter: what it patches, and rotation requests it relays."""

import asyncio
import threading
from datetime import UTC, datetime
from typing import Any

import pytest

from ws2kafka.bridge.reporting import StatusSnapshot
from ws2kafka.bridge.stats import BridgeStats, ConnectionState
from ws2kafka.operator import reporter as reporter_module
from ws2kafka.operator.reporter import (
    ROTATE_ANNOTATION,
    KubeStatusReporter,
    alive_within,
    previous_unclean_exit,
)


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


async def test_the_topics_go_to_status_topics_and_none_erase_nothing() -> None:
    api = FakeApi()
    reporter = KubeStatusReporter("ns", "src", pod_name=None, interval=5, patch=api.patch)
    stats = BridgeStats()
    await reporter.report(StatusSnapshot.of(stats, "c1", 0.0, topics=("t", "t.gaps")))
    await reporter.report(StatusSnapshot.of(stats, "c1", 0.0))
    assert api.patches[0]["topics"] == ["t", "t.gaps"]
    assert "topics" not in api.patches[1]  # a merge patch with [] would erase the list


async def test_a_failing_api_is_not_fatal() -> None:
    def broken(namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
        raise ConnectionRefusedError("api server away")

    reporter = KubeStatusReporter("ns", "src", pod_name=None, interval=5, patch=broken)
    assert await reporter.report(StatusSnapshot.of(BridgeStats(), None, 0.0)) is None


def _snapshot(state: ConnectionState) -> StatusSnapshot:
    stats = BridgeStats()
    stats.set_state(state)
    return StatusSnapshot.of(stats, "c1", 0.0)


async def test_a_cancelled_report_still_in_flight_cannot_overwrite_the_last_word() -> None:
    """The bridge cancels its routine report task at its end, but the task's thread goes on:
    its patch must not land after the final report's."""
    api = FakeApi()
    inside, release = threading.Event(), threading.Event()

    def slow_first(namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
        if not inside.is_set():
            inside.set()
            release.wait(5)
        return api.patch(namespace, name, status)

    reporter = KubeStatusReporter("ns", "src", pod_name=None, interval=5, patch=slow_first)
    routine = asyncio.create_task(reporter.report(_snapshot(ConnectionState.BACKOFF)))
    await asyncio.to_thread(inside.wait, 5)
    routine.cancel()
    final = asyncio.create_task(reporter.report(_snapshot(ConnectionState.GAVE_UP)))
    await asyncio.sleep(0.05)
    release.set()
    await final
    states = [patch["connection"]["state"] for patch in api.patches]
    assert states == ["Backoff", "GaveUp"]


async def test_the_last_word_is_retried_and_a_routine_report_is_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(reporter_module, "LAST_WORD_RETRY_SECONDS", 0.0)
    api, refusals = FakeApi(), [ConnectionResetError("away"), TimeoutError("slow")]

    def flaky(namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
        if refusals:
            raise refusals.pop(0)
        return api.patch(namespace, name, status)

    reporter = KubeStatusReporter("ns", "src", pod_name=None, interval=5, patch=flaky)
    assert await reporter.report(_snapshot(ConnectionState.CONNECTED)) is None
    assert await reporter.report(_snapshot(ConnectionState.GAVE_UP)) is not None
    assert [patch["connection"]["state"] for patch in api.patches] == ["GaveUp"]
    assert not refusals


KILLED = {
    "state": "Connected",
    "podName": "src-bridge-a",
    "connectionId": "c-old",
    "heartbeatTime": "2026-11-28T03:00:00Z",
    "messagesReceived": 750,
    "messagesProduced": 0,
    "messagesFailed": 0,
    "messagesDropped": 0,
}


def test_a_replacement_pod_learns_its_predecessor_was_killed() -> None:
    crash = previous_unclean_exit(KILLED, "src-bridge-b")
    assert crash is not None
    assert (crash.connection_id, crash.received, crash.unaccounted) == ("c-old", 750, 750)
    assert crash.last_alive == datetime(2026, 11, 28, 3, tzinfo=UTC).timestamp()
    assert crash.describe() == (
        "the previous bridge (pod src-bridge-a) ended without a clean stop, last reported as "
        "Connected after 750 frames; 750 of them were not acknowledged by Kafka then and may "
        "be lost"
    )


def test_what_is_settled_is_not_counted_as_lost() -> None:
    partly = {**KILLED, "messagesProduced": 700, "messagesFailed": 5, "messagesDropped": 15}
    crash = previous_unclean_exit(partly, "src-bridge-b")
    assert crash is not None
    assert crash.unaccounted == 30


@pytest.mark.parametrize(
    ("connection", "pod"),
    [
        (None, "b"),  # the first bridge of the source
        ({**KILLED, "state": "Stopped", "messagesProduced": 750}, "b"),  # drained
        ({**KILLED, "state": "GaveUp", "messagesProduced": 750}, "b"),
        ({**KILLED, "state": "StartupFailed", "messagesReceived": 0}, "b"),
        (KILLED, "src-bridge-a"),  # the same pod: its state file tells
    ],
)
def test_a_clean_end_leaves_no_trace(connection: dict[str, Any] | None, pod: str) -> None:
    assert previous_unclean_exit(connection, pod) is None


def test_a_drain_cut_short_is_unclean_too() -> None:
    cut = {**KILLED, "state": "Stopped", "messagesProduced": 700}
    crash = previous_unclean_exit(cut, "src-bridge-b")
    assert crash is not None
    assert crash.unaccounted == 50


def test_a_predecessor_that_still_reports_is_not_judged() -> None:
    """``kubectl delete pod``: the replacement starts while the old pod drains; its recent
    report (``Connected``, records in flight) is no trace of a crash."""
    last_alive = datetime(2026, 11, 28, 3, tzinfo=UTC).timestamp()
    assert (
        previous_unclean_exit(KILLED, "src-bridge-b", alive_within=17, now=last_alive + 8) is None
    )
    late = previous_unclean_exit(KILLED, "src-bridge-b", alive_within=17, now=last_alive + 18)
    assert late is not None
    assert alive_within(5.0) == 17.0


def test_inline_bridges_compare_with_any_previous_report() -> None:
    """An inline bridge has no pod name; a restart inside a running operator follows a clean
    stop, so an unclean report means the operator's process was killed."""
    inline = {**KILLED, "podName": None}
    assert previous_unclean_exit(inline, None) is not None


def test_the_previous_report_is_read_once_and_a_failure_is_no_trace() -> None:
    def read(namespace: str, name: str) -> dict[str, Any]:
        return {"connection": KILLED}

    def unreadable(namespace: str, name: str) -> dict[str, Any]:
        raise ConnectionRefusedError("api server away")

    api = FakeApi()
    reporter = KubeStatusReporter(
        "ns", "src", pod_name="src-bridge-b", interval=5, patch=api.patch, read=read
    )
    crash = reporter.previous_unclean_exit()
    assert crash is not None
    assert crash.pod_name == "src-bridge-a"
    broken = KubeStatusReporter(
        "ns", "src", pod_name="b", interval=5, patch=api.patch, read=unreadable
    )
    assert broken.previous_unclean_exit() is None


def test_a_startup_failure_is_reported_with_nothing_received() -> None:
    api = FakeApi()
    reporter = KubeStatusReporter("ns", "src", pod_name="p-1", interval=5, patch=api.patch)
    reporter.report_startup_failure("spec.tls.caFile: cannot read /x: No such file or directory")
    [patch] = api.patches
    connection = patch["connection"]
    assert connection["state"] == "StartupFailed"
    assert connection["lastError"].startswith("spec.tls.caFile")
    assert (connection["podName"], connection["messagesReceived"]) == ("p-1", 0)
    assert previous_unclean_exit(connection, "p-2") is None  # its successor sees a clean end

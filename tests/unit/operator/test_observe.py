"""Facts from the operator's indexes of bridge Deployments and Pods, without an API server."""

import asyncio
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ws2kafka.operator.conditions import PodCreating, PodProblem
from ws2kafka.operator.events import EventLimiter
from ws2kafka.operator.observe import (
    ConditionWrites,
    DeploymentIndex,
    PodEvents,
    PodIndex,
    bridge_pod_problem,
    deployment_available,
    gather_facts,
    is_available,
    pod_problem_of,
    refresh_conditions,
)
from ws2kafka.operator.settings import Mode, OperatorSettings


@pytest.mark.parametrize(
    ("status", "available"),
    [({}, False), ({"availableReplicas": 0}, False), ({"availableReplicas": 1}, True)],
)
def test_available_means_an_available_replica(status: dict[str, int], available: bool) -> None:
    assert is_available(status) is available


def test_the_index_answers_for_the_sources_own_deployment() -> None:
    index: DeploymentIndex = {("ns", "up-bridge"): [True], ("ns", "down-bridge"): [False]}
    assert deployment_available(index, "ns", "up") is True
    assert deployment_available(index, "ns", "down") is False
    assert deployment_available(index, "other", "up") is None  # not created (yet)
    assert deployment_available(None, "ns", "up") is None  # inline mode: no Deployments


def test_the_pod_index_gives_the_first_problem_of_the_sources_pods() -> None:
    stuck = PodProblem("up-bridge-1", "CrashLoopBackOff", "pod up-bridge-1: CrashLoopBackOff")
    index: PodIndex = {("ns", "up"): [None, stuck], ("ns", "fine"): [None]}
    assert bridge_pod_problem(index, "ns", "up") == stuck
    assert bridge_pod_problem(index, "ns", "fine") is None
    assert bridge_pod_problem(index, "ns", "absent") is None
    assert bridge_pod_problem(None, "ns", "up") is None  # inline mode: no pods


FAILED_MOUNT = {
    "reason": "FailedMount",
    "message": 'MountVolume.SetUp failed for volume "tls" : secret "ca" not found',
    "lastTimestamp": "2026-11-28T00:00:09+00:00",
}


class RecordedEvents:
    """The Events an API server would list, and which pods were asked about."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, str]] = []

    def __call__(self, namespace: str, pod: str) -> list[dict[str, Any]]:
        self.asked.append((namespace, pod))
        return [FAILED_MOUNT]


def test_a_pod_stuck_creating_gets_the_reason_of_its_events() -> None:
    fetch = RecordedEvents()
    events = PodEvents(fetch)
    long_ago = PodCreating("s-bridge-1", datetime.now(UTC) - timedelta(minutes=1))
    pods: PodIndex = {("ns", "s"): [long_ago]}
    down: DeploymentIndex = {("ns", "s-bridge"): [False]}

    async def checks() -> list[PodProblem | None]:
        # the first check starts the read and answers at once; a later one has its result
        first = pod_problem_of(pods, down, "ns", "s", events)
        for _ in range(100):
            await asyncio.sleep(0.01)
            found = pod_problem_of(pods, down, "ns", "s", events)
            if found is not None:
                return [first, found]
        return [first, None]

    first, problem = asyncio.run(checks())
    assert first is None
    assert problem is not None
    assert problem.reason == "FailedMount"
    assert 'secret "ca" not found' in problem.message
    # looked up again within 10 s: from memory, no second API call
    assert fetch.asked == [("ns", "s-bridge-1")]


def test_no_check_waits_for_the_api_server_and_few_reads_run_at_once() -> None:
    """50 pods starting on a busy node are all stuck for a while, and each list of Events
    takes seconds: the checks answer at once, and the reads go two at a time."""
    release = threading.Event()
    running: list[int] = []
    most = 0

    def slow(namespace: str, pod: str) -> list[dict[str, Any]]:
        nonlocal most
        running.append(1)
        most = max(most, len(running))
        release.wait(5)
        running.pop()
        return [FAILED_MOUNT]

    events = PodEvents(slow)
    started = datetime.now(UTC) - timedelta(minutes=1)
    pods: PodIndex = {("ns", f"s{i}"): [PodCreating(f"s{i}-bridge-1", started)] for i in range(6)}
    down: DeploymentIndex = {("ns", f"s{i}-bridge"): [False] for i in range(6)}

    async def checks() -> tuple[float, list[PodProblem | None]]:
        begun = time.monotonic()
        answers = [pod_problem_of(pods, down, "ns", f"s{i}", events) for i in range(6)]
        waited = time.monotonic() - begun
        await asyncio.sleep(0.2)
        release.set()
        for _ in range(200):
            await asyncio.sleep(0.01)
            answers = [pod_problem_of(pods, down, "ns", f"s{i}", events) for i in range(6)]
            if all(answers):
                break
        return waited, answers

    waited, answers = asyncio.run(checks())
    assert waited < 0.1
    assert most == 2
    assert [answer.reason if answer else None for answer in answers] == ["FailedMount"] * 6


@pytest.mark.parametrize(
    ("created_ago", "available"),
    [
        (timedelta(seconds=2), False),  # a normal start
        (timedelta(minutes=1), True),  # an old pod serves while a new one starts
    ],
)
def test_events_are_read_only_for_a_stuck_pod_of_an_unavailable_deployment(
    created_ago: timedelta, available: bool
) -> None:
    fetch = RecordedEvents()
    pods: PodIndex = {("ns", "s"): [PodCreating("s-bridge-1", datetime.now(UTC) - created_ago)]}
    deployments: DeploymentIndex = {("ns", "s-bridge"): [available]}
    assert pod_problem_of(pods, deployments, "ns", "s", PodEvents(fetch)) is None
    assert fetch.asked == []


@pytest.mark.parametrize(
    ("mode", "auto", "expected"),
    [
        (Mode.INLINE, {}, None),  # off: status.autoRestart is not looked at
        (Mode.INLINE, {"enabled": False}, None),
        (Mode.INLINE, {"enabled": True}, {"count": 2}),
        (Mode.POD, {"enabled": False}, None),
        (Mode.POD, {"enabled": True}, {"count": 2}),  # the pod stays, the operator restarts it
    ],
)
def test_auto_restart_facts_only_when_enabled(
    mode: Mode, auto: dict[str, Any], expected: dict[str, Any] | None
) -> None:
    spec = {"autoRestart": {**auto, "maxRestarts": 5}}
    status = {"autoRestart": {"count": 2}}
    meta = {"name": "s", "generation": 1}
    settings = OperatorSettings(mode=mode)
    found = gather_facts(spec, status, meta, settings, datetime.now(UTC), None, None)
    assert found.auto_restart == expected


@pytest.mark.parametrize(
    ("spec", "checked"),
    [
        ({}, False),
        ({"tokens": []}, False),
        ({"tokens": [{"name": "listenKey"}]}, True),
        ({"login": {"message": "m"}}, True),
    ],
)
def test_a_login_or_a_token_makes_authentication_a_fact(
    spec: dict[str, Any], checked: bool
) -> None:
    meta = {"name": "s", "generation": 1}
    found = gather_facts(spec, {}, meta, OperatorSettings(), datetime.now(UTC), None, None)
    assert found.authentication_checked is checked


class Patch:
    def __init__(self) -> None:
        self.status: dict[str, Any] = {}


def test_conditions_just_patched_are_not_patched_again_from_a_lagging_view() -> None:
    """kopf's view of the status lags behind the timer's own patch under load: the next
    check, still seeing the old status, patches nothing (and posts no Event again); once
    the record is old, the view decides again."""
    now = [0.0]
    writes = ConditionWrites(trust_seconds=60.0, clock=lambda: now[0])
    spec = {"url": "ws://feed/ws", "kafka": {"bootstrapServers": "k:9092", "topic": "t"}}
    meta = {"generation": 1, "namespace": "ns", "name": "s"}

    def check(status: dict[str, Any]) -> dict[str, Any]:
        patch = Patch()
        refresh_conditions(
            {}, spec, status, meta, "ns", "s", patch, OperatorSettings(mode=Mode.POD),
            EventLimiter(0), {}, {}, writes,
        )  # fmt: skip
        return patch.status

    first = check({})
    assert first["observedGeneration"] == 1
    assert check({}) == {}, "the view still shows no conditions: the patch is not repeated"
    now[0] = 61.0
    assert check({})["conditions"] == first["conditions"], "an old record: the view decides"
    assert check(dict(first)) == {}, "the view shows them"


class PostedEvents(EventLimiter):
    """The reasons of the Events the conditions timer posts, in order."""

    def __init__(self) -> None:
        super().__init__(0)
        self.reasons: list[str] = []

    def post(self, body: Any, *, reason: str, message: str, warning: bool = False) -> bool:
        self.reasons.append(reason)
        return True


def test_a_bridge_that_gives_up_after_backing_off_gets_one_gave_up_event() -> None:
    """Connected is False while the bridge backs off and once it gave up: only the reason
    changes, and that change is the give-up users must be told of (once)."""
    events, writes = PostedEvents(), ConditionWrites(trust_seconds=0.0)
    spec = {"url": "ws://feed/ws", "kafka": {"bootstrapServers": "k:9092", "topic": "t"}}
    meta = {"generation": 1, "namespace": "ns", "name": "s"}
    status: dict[str, Any] = {}
    for state in ("Backoff", "GaveUp", "GaveUp"):
        beat = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        status["connection"] = {"state": state, "heartbeatTime": beat, "lastError": "refused"}
        patch = Patch()
        refresh_conditions(
            {}, spec, status, meta, "ns", "s", patch, OperatorSettings(mode=Mode.POD),
            events, {}, {}, writes,
        )  # fmt: skip
        status = {**status, **patch.status}
    connected = {c["type"]: c for c in status["conditions"]}["Connected"]
    assert (connected["status"], connected["reason"]) == ("False", "GaveUp")
    assert events.reasons.count("GaveUp") == 1

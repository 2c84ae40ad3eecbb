"""The election loop on an in-memory Lease (the API calls faked): acquire, stand by, take
over, lose the Lease when the API server stops answering, release."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Coroutine
from typing import Any

import kopf
import pytest
from kubernetes.client.exceptions import ApiException
from prometheus_client import CollectorRegistry

from ws2kafka.operator import __main__ as operator_main
from ws2kafka.operator import kube
from ws2kafka.operator.inline import InlineBridges
from ws2kafka.operator.leadership import Leadership
from ws2kafka.operator.readiness import Readiness
from ws2kafka.operator.settings import OperatorSettings


class FakeLeases:
    """One Lease with resourceVersions (a stale write gets a 409), and a partition that
    makes the calls of one identity hang until their timeout."""

    def __init__(self) -> None:
        self.lease: dict[str, Any] | None = None
        self.version = 0
        self.events: list[str] = []
        self.cut = threading.Event()
        self.refused = False

    def read(self, namespace: str, name: str, timeout: float) -> dict[str, Any] | None:
        self._partition(timeout)
        return None if self.lease is None else {**self.lease}

    def write(
        self, namespace: str, name: str, spec: dict[str, Any], version: str | None, timeout: float
    ) -> None:
        self._partition(timeout)
        current = None if self.lease is None else self.lease["metadata"]["resourceVersion"]
        if version != current:
            raise ApiException(status=409, reason="Conflict")
        self.version += 1
        self.lease = {"metadata": {"resourceVersion": str(self.version)}, "spec": spec}

    def event(self, namespace: str, lease: str, reason: str, message: str, *_: Any) -> None:
        self.events.append(f"{reason}: {message}")

    def _partition(self, timeout: float) -> None:
        if self.refused:
            raise ConnectionRefusedError("connection refused")
        if self.cut.is_set() and threading.current_thread().name.startswith("asyncio"):
            time.sleep(timeout)
            raise TimeoutError("read timed out")

    @property
    def holder(self) -> str | None:
        return None if self.lease is None else self.lease["spec"]["holderIdentity"]


@pytest.fixture
def leases(monkeypatch: pytest.MonkeyPatch) -> FakeLeases:
    fake = FakeLeases()
    monkeypatch.setattr(kube, "read_lease", fake.read)
    monkeypatch.setattr(kube, "write_lease", fake.write)
    monkeypatch.setattr(kube, "post_lease_event", fake.event)
    return fake


def replica(identity: str, metrics: CollectorRegistry | None = None) -> Leadership:
    settings = OperatorSettings(
        leader_election=True,
        lease_identity=identity,
        lease_namespace="ops",
        lease_duration_seconds=0.6,
        renew_deadline_seconds=0.4,
        retry_period_seconds=0.1,
    )
    return Leadership(settings, metrics=metrics)


def leader_gauge(metrics: CollectorRegistry, identity: str) -> float | None:
    labels = {"lease": "ops/ws2kafka-operator", "identity": identity}
    return metrics.get_sample_value("ws2kafka_operator_leader", labels)


async def test_the_first_replica_leads_at_once_and_the_second_takes_over_when_it_stops(
    leases: FakeLeases,
) -> None:
    metrics = CollectorRegistry()
    first, second = replica("a", metrics), replica("b")
    started = time.monotonic()
    await first.acquire(asyncio.Event())
    assert time.monotonic() - started < 0.1  # no wait when nobody holds the Lease
    assert leases.holder == "a"
    assert leases.events == ["LeaderElection: a became leader"]
    assert leader_gauge(metrics, "a") == 1
    holding = asyncio.create_task(first.hold())
    standing_by = asyncio.Event()
    taking = asyncio.create_task(second.acquire(standing_by))
    await asyncio.sleep(1.0)  # longer than a lease: the renewals keep it
    assert standing_by.is_set()
    assert not taking.done()
    holding.cancel()  # the leader dies without a goodbye
    died = time.monotonic()
    await asyncio.wait_for(taking, 2.0)
    took = time.monotonic() - died
    # a lease duration after the last renewal it saw, plus a retry (and a noisy machine)
    assert 0.4 < took < 1.5
    assert leases.holder == "b"
    assert leases.lease is not None
    assert leases.lease["spec"]["leaseTransitions"] == 1


async def test_a_leader_cut_off_from_the_api_server_stops_within_the_renew_deadline(
    leases: FakeLeases,
) -> None:
    metrics = CollectorRegistry()
    leader = replica("a", metrics)
    await leader.acquire(asyncio.Event())
    holding = asyncio.create_task(leader.hold())
    await asyncio.sleep(0.3)
    assert not holding.done()
    leases.cut.set()  # every call now hangs
    cut = time.monotonic()
    await asyncio.wait_for(holding, 1.0)
    assert time.monotonic() - cut <= 0.4 + 0.15  # the deadline, from the last renewal
    assert leader_gauge(metrics, "a") == 0


async def test_renewals_refused_at_once_end_the_leadership_at_the_deadline(
    leases: FakeLeases,
) -> None:
    settings = OperatorSettings(
        leader_election=True, lease_identity="a", lease_duration_seconds=1.5,
        renew_deadline_seconds=1.0, retry_period_seconds=0.9,
    )  # fmt: skip
    leader = Leadership(settings)
    await leader.acquire(asyncio.Event())
    leases.refused = True
    refused = time.monotonic()
    await asyncio.wait_for(leader.hold(), 2.0)
    # not a retry period late: the last sleep ends at the deadline
    assert time.monotonic() - refused < 1.0 + 0.4


async def test_a_clean_stop_releases_the_lease_for_an_immediate_takeover(
    leases: FakeLeases,
) -> None:
    first, second = replica("a"), replica("b")
    await first.acquire(asyncio.Event())
    await first.release()
    assert leases.holder is None
    started = time.monotonic()
    await second.acquire(asyncio.Event())
    assert time.monotonic() - started < 0.1
    assert leases.holder == "b"


async def test_a_standby_that_cannot_read_the_lease_keeps_trying(
    leases: FakeLeases,
) -> None:
    leases.cut.set()
    standing_by = asyncio.Event()
    taking = asyncio.create_task(replica("a").acquire(standing_by))
    await asyncio.sleep(0.5)
    assert not standing_by.is_set()
    leases.cut.clear()
    await asyncio.wait_for(taking, 2.0)
    assert leases.holder == "a"


class FakeKopf:
    """``kopf.operator`` as ``run_elected`` uses it: runs until its stop flag is set, or
    until ``finish`` (a signal)."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.finish = asyncio.Event()
        self.stopped_by_flag = False

    async def operator(self, *, stop_flag: asyncio.Event | None, **_: Any) -> None:
        assert stop_flag is not None
        self.started.set()
        flag = asyncio.create_task(stop_flag.wait())
        finish = asyncio.create_task(self.finish.wait())
        await asyncio.wait({flag, finish}, return_when=asyncio.FIRST_COMPLETED)
        self.stopped_by_flag = stop_flag.is_set()
        flag.cancel()
        finish.cancel()


@pytest.fixture
def fake_kopf(monkeypatch: pytest.MonkeyPatch) -> FakeKopf:
    fake = FakeKopf()
    monkeypatch.setattr(kopf, "operator", fake.operator)
    return fake


def elected(leadership: Leadership) -> Coroutine[Any, Any, int]:
    settings = OperatorSettings(leader_election=True)
    registry = kopf.OperatorRegistry()
    readiness = Readiness([])
    return operator_main.run_elected(settings, registry, readiness, leadership, InlineBridges())


async def test_kopf_runs_only_once_the_lease_is_held_and_stops_when_it_is_lost(
    leases: FakeLeases, fake_kopf: FakeKopf
) -> None:
    leases.lease = {
        "metadata": {"resourceVersion": "0"},
        "spec": {"holderIdentity": "other", "leaseDurationSeconds": 1},
    }
    running = asyncio.create_task(elected(replica("a")))
    await asyncio.sleep(0.5)
    assert not fake_kopf.started.is_set(), "a standby does not act"
    await asyncio.wait_for(fake_kopf.started.wait(), 2.0)  # "other" never renewed
    assert leases.holder == "a"
    leases.cut.set()
    assert await asyncio.wait_for(running, 2.0) == operator_main.LOST_LEADERSHIP
    assert fake_kopf.stopped_by_flag


async def test_an_operator_stopped_by_a_signal_hands_the_lease_over(
    leases: FakeLeases, fake_kopf: FakeKopf
) -> None:
    running = asyncio.create_task(elected(replica("a")))
    await asyncio.wait_for(fake_kopf.started.wait(), 1.0)
    fake_kopf.finish.set()
    assert await asyncio.wait_for(running, 2.0) == 0
    assert not fake_kopf.stopped_by_flag
    assert leases.holder is None

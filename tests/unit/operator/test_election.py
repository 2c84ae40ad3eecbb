"""Leader election's decisions on a Lease, on a scripted clock: no API server."""

from datetime import UTC, datetime

import pytest

from ws2kafka.operator.election import (
    Election,
    LeaseRecord,
    Timings,
    Wait,
    Write,
    lease_from_api,
    micro_time,
)

TIMINGS = Timings(lease_duration=10, renew_deadline=7, retry_period=2)
WALL = datetime(2026, 12, 2, 7, 0, 0, 123456, tzinfo=UTC)


def held_by(holder: str, version: str = "1", transitions: int = 0) -> LeaseRecord:
    return LeaseRecord(holder, 10, "2026-12-02T06:00:00.000000Z", transitions, version)


def test_a_missing_lease_is_created_with_this_replica_as_holder() -> None:
    election = Election("a", TIMINGS)
    decision = election.decide(None, now=0.0, wall=WALL)
    assert isinstance(decision, Write)
    assert decision.version is None
    assert decision.acquiring
    assert decision.spec == {
        "holderIdentity": "a",
        "leaseDurationSeconds": 10,
        "acquireTime": "2026-12-02T07:00:00.123456Z",
        "renewTime": "2026-12-02T07:00:00.123456Z",
        "leaseTransitions": 0,
    }
    assert not election.leading
    election.written(started=0.0)
    assert election.leading


def test_a_standby_waits_a_lease_duration_from_when_it_saw_the_lease_change() -> None:
    election = Election("b", TIMINGS)
    assert election.decide(held_by("a", "1"), now=100.0, wall=WALL) == Wait("a", 10.0)
    # the holder renewed at 104 (a new resourceVersion): the wait starts again from then
    assert election.decide(held_by("a", "2"), now=104.0, wall=WALL) == Wait("a", 10.0)
    assert election.decide(held_by("a", "2"), now=113.0, wall=WALL) == Wait("a", 1.0)
    taken = election.decide(held_by("a", "2", transitions=3), now=114.0, wall=WALL)
    assert isinstance(taken, Write)
    assert taken.acquiring
    assert taken.version == "2"  # refused if "a" renewed meanwhile
    assert taken.spec["holderIdentity"] == "b"
    assert taken.spec["leaseTransitions"] == 4
    assert taken.spec["acquireTime"] == micro_time(WALL)


def test_the_holders_wall_clock_is_not_trusted() -> None:
    """A renewTime an hour old (a clock behind) does not make a live Lease expired."""
    election = Election("b", TIMINGS)
    lease = lease_from_api(
        {
            "metadata": {"resourceVersion": "7"},
            "spec": {
                "holderIdentity": "a",
                "leaseDurationSeconds": 10,
                "renewTime": "2026-12-02T06:00:00.000000Z",
            },
        }
    )
    assert isinstance(election.decide(lease, now=0.0, wall=WALL), Wait)


def test_a_released_lease_is_taken_at_once() -> None:
    election = Election("b", TIMINGS)
    released = LeaseRecord("", 1, None, 2, "5")
    decision = election.decide(released, now=0.0, wall=WALL)
    assert isinstance(decision, Write)
    assert decision.spec["leaseTransitions"] == 3


def test_the_leader_renews_keeping_its_acquire_time() -> None:
    election = Election("a", TIMINGS)
    election.written(started=0.0)
    renewal = election.decide(held_by("a", "3", transitions=1), now=2.0, wall=WALL)
    assert isinstance(renewal, Write)
    assert not renewal.acquiring
    assert renewal.spec["acquireTime"] == "2026-12-02T06:00:00.000000Z"
    assert renewal.spec["renewTime"] == micro_time(WALL)
    assert renewal.spec["leaseTransitions"] == 1


def test_its_own_name_in_the_lease_from_an_earlier_run_starts_a_new_term() -> None:
    election = Election("a", TIMINGS)
    decision = election.decide(held_by("a", "3", transitions=1), now=0.0, wall=WALL)
    assert isinstance(decision, Write)
    assert decision.acquiring
    assert decision.spec["leaseTransitions"] == 1


def test_a_leader_that_misses_the_renew_deadline_has_lost() -> None:
    election = Election("a", TIMINGS)
    election.written(started=10.0)
    assert election.deadline() == 17.0
    assert not election.lost(16.9)
    assert election.lost(17.0)
    assert not election.leading


def test_a_leader_that_finds_another_holder_has_lost() -> None:
    election = Election("a", TIMINGS)
    election.written(started=0.0)
    assert election.decide(held_by("b", "9"), now=1.0, wall=WALL) == Wait("b", 10.0)
    assert election.lost(1.0)


def test_release_empties_the_holder_only_for_the_holder() -> None:
    election = Election("a", TIMINGS)
    assert election.release(WALL, held_by("a")) is None  # not leading
    election.written(started=0.0)
    assert election.release(WALL, held_by("b")) is None
    released = election.release(WALL, held_by("a", "4", transitions=2))
    assert released is not None
    assert released.version == "4"
    assert released.spec["holderIdentity"] is None
    assert released.spec["leaseDurationSeconds"] == 1
    assert released.spec["leaseTransitions"] == 2
    assert not election.leading


@pytest.mark.parametrize(("duration", "deadline", "retry"), [(10, 10, 2), (10, 7, 7), (5, 7, 2)])
def test_timings_must_nest(duration: float, deadline: float, retry: float) -> None:
    with pytest.raises(ValueError, match="lease duration > renew deadline > retry period"):
        Timings(duration, deadline, retry)


def test_an_identity_is_required() -> None:
    with pytest.raises(ValueError, match="identity"):
        Election("", TIMINGS)

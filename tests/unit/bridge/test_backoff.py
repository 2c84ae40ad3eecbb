"""Backoff: capped, jittered, and never overflowing (the seed's hot-loop defect)."""

from ws2kafka.bridge.backoff import delay_bound, full_jitter


def test_bound_doubles_from_the_initial_interval_up_to_the_cap() -> None:
    assert [delay_bound(n, 5.0, 60.0) for n in range(1, 7)] == [5, 10, 20, 40, 60, 60]


def test_no_overflow_after_any_number_of_attempts() -> None:
    for attempt in (51, 52, 64, 1_000, 10**9):
        assert delay_bound(attempt, 5.0, 300.0) == 300.0
        assert 0.0 <= full_jitter(attempt, 5.0, 300.0) <= 300.0


def test_full_jitter_spans_zero_to_the_bound() -> None:
    assert full_jitter(3, 5.0, 300.0, rand=lambda: 0.0) == 0.0
    assert full_jitter(3, 5.0, 300.0, rand=lambda: 0.5) == 10.0

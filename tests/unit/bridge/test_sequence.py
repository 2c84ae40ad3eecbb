"""Sequence-gap detection, dedupe and gap markers, without I/O."""

from __future__ import annotations

import json

import pytest

from ws2kafka.bridge.config import DedupeSpec, SequenceSpec
from ws2kafka.bridge.gaps import Gap
from ws2kafka.bridge.sequence import DedupeWindow, FrameChecks, SequenceGap, SequenceTracker
from ws2kafka.bridge.stats import BridgeStats


def test_consecutive_numbers_are_quiet_and_a_jump_reports_the_missing_range() -> None:
    tracker = SequenceTracker(10)
    assert [tracker.observe(None, n, "c1", 0.0) for n in (1, 2, 3)] == [None] * 3
    gap = tracker.observe(None, 7, "c1", 5.0)
    assert gap == SequenceGap(None, 4, 7, "c1", 5.0)
    assert (gap.missing, gap.regression) == (3, False)
    assert gap.describe() == "the feed: expected 4, got 7 (3 missing: 4..6; connection c1)"
    assert tracker.observe(None, 8, "c1", 6.0) is None


def test_a_duplicate_is_one_regression_and_the_high_water_mark_stays() -> None:
    tracker = SequenceTracker(10)
    for n in (1, 2, 3):
        tracker.observe("BTC", n, "c1", 0.0)
    duplicate = tracker.observe("BTC", 2, "c1", 0.0)
    assert duplicate is not None
    assert (duplicate.regression, duplicate.missing) == (True, 0)
    assert tracker.observe("BTC", 4, "c1", 0.0) is None  # not a second event


def test_a_new_connection_may_restart_the_numbering() -> None:
    tracker = SequenceTracker(10)
    tracker.observe(None, 500, "c1", 0.0)
    tracker.new_connection()
    restart = tracker.observe(None, 1, "c2", 0.0)
    assert restart is not None
    assert restart.regression
    assert tracker.observe(None, 2, "c2", 0.0) is None


def test_partitions_are_independent_and_bounded_least_recently_seen_first() -> None:
    tracker = SequenceTracker(2)
    tracker.observe("A", 1, "c", 0.0)
    tracker.observe("B", 1, "c", 0.0)
    tracker.observe("A", 2, "c", 0.0)  # A is now the most recent
    tracker.observe("C", 1, "c", 0.0)  # evicts B
    assert (len(tracker), tracker.evicted) == (2, 1)
    assert tracker.observe("B", 9, "c", 0.0) is None  # forgotten: starts afresh
    assert tracker.observe("C", 2, "c", 0.0) is None


def test_dedupe_window_remembers_the_last_ids_only() -> None:
    window = DedupeWindow(2)
    assert [window.seen(k) for k in (b"1", b"2", b"1", b"3", b"1")] == [
        False,
        False,
        True,
        False,
        False,  # b"1" left the window when b"3" came
    ]


def test_frame_checks_skip_duplicates_then_track_partitions() -> None:
    stats = BridgeStats()
    events: list[SequenceGap] = []
    checks = FrameChecks(
        SequenceSpec(pointer="/u", partition_pointer="/s"),
        DedupeSpec(pointer="/id", window_size=100),
        stats,
        events.append,
    )
    checks.new_connection("c1")

    def frame(**fields: object) -> dict[str, object]:
        return fields

    admitted = [
        checks.admit(frame(id=1, s="BTC", u=10)),
        checks.admit(frame(id=2, s="ETH", u="5")),
        checks.admit(frame(id=1, s="BTC", u=10)),  # duplicate id: skipped, not a regression
        checks.admit(frame(id=3, s="BTC", u=13)),
        checks.admit(None),  # not JSON
        checks.admit(frame(s="ETH", u=6)),  # no id: always admitted
    ]
    assert admitted == [True, True, False, True, True, True]
    assert (stats.dedupe_skipped, stats.sequence_gaps, stats.sequence_missing) == (1, 1, 2)
    assert (stats.sequence_regressions, stats.sequence_unreadable) == (0, 1)
    assert [(e.partition, e.expected, e.received) for e in events] == [("BTC", 11, 13)]
    assert stats.last_sequence_gap == events[0]


def test_a_gap_as_status_and_control_record() -> None:
    gap = Gap("src", "a1", "b2", 1_700_000_000.0, 1_700_000_001.2345, 1006, "no pong", "X", 42, 3)
    assert gap.seconds == pytest.approx(1.2345)
    status = gap.to_status()
    assert status["disconnectedAt"] == "2023-11-14T22:13:20.000Z"
    assert status["reconnectedAt"] == "2023-11-14T22:13:21.234Z"
    assert status["durationSeconds"] == 1.234
    assert json.loads(gap.to_json()) == {"type": "gap", **status}
    assert "between connection a1" in gap.describe()
    first = Gap("src", None, "b2", 10.0, 5.0, None, None, None, 0, 2)
    assert (first.seconds, first.to_status()["oldConnectionId"]) == (0.0, None)

"""Repeated events are logged as a rate, not one line each."""

import logging

import pytest

from ws2kafka.bridge.ratelog import RateLimitedLog


def test_many_events_make_one_line(caplog: pytest.LogCaptureFixture) -> None:
    rate = RateLimitedLog(logging.getLogger("t"), "frames dropped", interval=3600)
    for n in range(10_000):
        rate.add(f"drop {n}")
        rate.flush()
    rate.flush(force=True)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1
    assert lines[0].startswith("10000 frames dropped")
    assert "drop 9999" in lines[0]


def test_counts_add_up_and_the_prefix_names_the_source(caplog: pytest.LogCaptureFixture) -> None:
    rate = RateLimitedLog(logging.getLogger("t"), "frames dropped", prefix="feed: ")
    rate.add("buffer full", 2500)
    rate.add("buffer full", 3)
    rate.flush(force=True)
    assert [r.getMessage()[:33] for r in caplog.records] == ["feed: 2503 frames dropped in the "]

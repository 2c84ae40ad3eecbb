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

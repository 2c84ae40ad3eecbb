"""Buffer bounds and overflow policies, without sockets."""

import pytest

from ws2kafka.bridge.config import BufferSpec
from ws2kafka.bridge.flow import FlowControl
from ws2kafka.bridge.framing import Record
from ws2kafka.bridge.stats import BridgeStats


def record(n: int) -> Record:
    return Record(value=str(n).encode(), key=None, timestamp_ms=0, headers=None)


def flow(overflow: str, max_messages: int = 10) -> tuple[FlowControl, BridgeStats]:
    stats = BridgeStats()
    spec = BufferSpec.model_validate({"maxMessages": max_messages, "overflow": overflow})
    return FlowControl(spec, stats), stats


def fill(control: FlowControl, stats: BridgeStats, count: int) -> list[bytes]:
    handed: list[bytes] = []
    for n in range(count):
        stats.received += 1
        control.admit(record(n))
        handed += [r.value for r in control.take()]
    return handed


def test_block_pauses_when_full_and_resumes_below_the_watermark() -> None:
    control, stats = flow("block")
    assert len(fill(control, stats, 10)) == 10
    assert control.must_pause()
    stats.delivered = 1
    assert not control.must_pause()
    assert not control.may_resume()
    stats.delivered = 2
    assert control.may_resume()


@pytest.mark.parametrize("overflow", ["block", "dropNewest", "dropOldest"])
def test_admit_says_whether_the_reader_must_pause_now(overflow: str) -> None:
    control, _ = flow(overflow)
    answers = [control.admit(record(n)) for n in range(12)]
    expected = [False] * 9 + [True] * 3 if overflow == "block" else [False] * 12
    assert answers == expected
    assert answers[-1] == control.must_pause()


def test_drop_newest_discards_arrivals_and_counts_them() -> None:
    control, stats = flow("dropNewest")
    handed = fill(control, stats, 15)
    assert handed == [str(n).encode() for n in range(10)]
    assert stats.dropped_newest == 5
    assert stats.held == 10


def test_drop_oldest_keeps_the_newest_records_outside_the_producer_window() -> None:
    control, stats = flow("dropOldest", max_messages=10)
    assert control.window == 1
    handed = fill(control, stats, 15)
    assert handed == [b"0"]  # only the window is inside the producer
    assert stats.dropped_oldest == 5
    stats.delivered = 1
    rest = [r.value for r in control.take()]
    assert rest == [b"6"]
    assert control.pending == 8


def test_records_given_back_are_handed_again_first_and_stay_held() -> None:
    control, stats = flow("block", max_messages=10)
    batch = fill(control, stats, 4)
    assert batch == [b"0", b"1", b"2", b"3"]
    control.give_back([record(2), record(3)])  # the producer's queue took only two
    assert (stats.handed, stats.in_producer, stats.held, control.pending) == (2, 2, 4, 2)
    assert [r.value for r in control.take()] == [b"2", b"3"]


def test_refused_records_leave_the_buffer_and_the_producer_window() -> None:
    control, stats = flow("block", max_messages=10)
    fill(control, stats, 3)
    stats.refused, stats.refused_bytes = 1, 1
    assert (stats.held, stats.held_bytes, stats.in_producer, stats.rejected) == (2, 2, 2, 1)

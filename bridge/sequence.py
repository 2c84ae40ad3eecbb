"""Sequence-gap detection and id-based dedupe, without I/O.

Both read a field of the JSON frame (so they need it parsed, and only run when configured)
and both keep bounded state: the sequence tracker at most ``maxPartitions`` streams (least
recently seen forgotten first), the dedupe window the last ``windowSize`` ids.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .config import DedupeSpec, SequenceSpec
from .framing import MISSING, compile_pointer, scalar_to_bytes
from .gaps import rfc3339_ms
from .stats import BridgeStats


@dataclass(frozen=True, slots=True)
class SequenceGap:
    """A jump (``received > expected``) or a regression (``received < expected``)."""

    partition: str | None
    expected: int
    """The sequence number that should have come next."""
    received: int
    connection_id: str
    at: float
    """Epoch seconds."""

    @property
    def missing(self) -> int:
        """Numbers skipped: ``expected .. received - 1`` (0 for a regression)."""
        return max(0, self.received - self.expected)

    @property
    def regression(self) -> bool:
        return self.received < self.expected

    def to_status(self) -> dict[str, object]:
        """``status.lastSequenceGap``."""
        return {
            "partition": self.partition,
            "kind": "regression" if self.regression else "gap",
            "expected": self.expected,
            "received": self.received,
            "missing": self.missing,
            "connectionId": self.connection_id,
            "at": rfc3339_ms(self.at),
        }

    def describe(self) -> str:
        where = f"partition {self.partition}" if self.partition is not None else "the feed"
        if self.regression:
            return (
                f"{where}: expected {self.expected}, got {self.received} "
                f"(went back; connection {self.connection_id})"
            )
        last = self.received - 1
        span = str(self.expected) if last == self.expected else f"{self.expected}..{last}"
        return (
            f"{where}: expected {self.expected}, got {self.received} "
            f"({self.missing} missing: {span}; connection {self.connection_id})"
        )


class SequenceTracker:
    """The last sequence number per partition, and what a new one says about the stream.

    Within a connection the high-water mark stays, so a duplicate is one regression and not
    also a gap at the next frame. On a new connection a lower number is adopted (counted as
    one regression): a feed that restarts its numbering is then tracked from there.
    """

    def __init__(self, max_partitions: int) -> None:
        self._max = max_partitions
        self._marks: OrderedDict[str | None, tuple[int, int]] = OrderedDict()
        self._epoch = 0
        self.evicted = 0
        """Partitions forgotten because ``max_partitions`` were tracked."""

    def new_connection(self) -> None:
        self._epoch += 1

    def __len__(self) -> int:
        return len(self._marks)

    def observe(
        self, partition: str | None, number: int, connection_id: str, now: float
    ) -> SequenceGap | None:
        """Record ``number``; returns the gap or regression it reveals, else None."""
        marks = self._marks
        mark = marks.get(partition)
        epoch = self._epoch
        if mark is None:
            marks[partition] = (epoch, number)
            if len(marks) > self._max:
                marks.popitem(last=False)
                self.evicted += 1
            return None
        marks.move_to_end(partition)
        mark_epoch, last = mark
        if number == last + 1:
            marks[partition] = (epoch, number)
            return None
        if number > last or mark_epoch != epoch:
            marks[partition] = (epoch, number)
        return SequenceGap(partition, last + 1, number, connection_id, now)


class DedupeWindow:
    """The last ``size`` ids seen; :meth:`seen` answers and remembers in one step."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._ids: set[bytes] = set()
        self._order: deque[bytes] = deque()

    def seen(self, key: bytes) -> bool:
        ids = self._ids
        if key in ids:
            return True
        ids.add(key)
        self._order.append(key)
        if len(self._order) > self._size:
            ids.discard(self._order.popleft())
        return False


def sequence_number(value: Any) -> int | None:
    """An integer sequence field (also a string of ASCII digits, as some feeds send it).

    ``str.isdigit`` alone also accepts "²" and other digits ``int()`` refuses; a string longer
    than Python converts to an int is unreadable too.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit():
        try:
            return int(value)
        except ValueError:
            return None
    return None


class FrameChecks:
    """The per-frame continuity checks of one bridge: dedupe first, then the sequence.

    :meth:`admit` runs on the event loop for every frame while configured and writes the
    counters of ``stats``; each gap or regression also goes to ``on_gap`` (the bridge adds it
    to a rate-limited log: a broken feed must not write a line per frame).
    """

    def __init__(
        self,
        sequence: SequenceSpec | None,
        dedupe: DedupeSpec | None,
        stats: BridgeStats,
        on_gap: Callable[[SequenceGap], None],
    ) -> None:
        self._tracker = SequenceTracker(sequence.max_partitions) if sequence else None
        self._dedupe_key = compile_pointer(dedupe.pointer) if dedupe else None
        self._number_at = compile_pointer(sequence.pointer) if sequence else None
        partition = sequence.partition_pointer if sequence else None
        self._partition_at = compile_pointer(partition) if partition is not None else None
        self._window = DedupeWindow(dedupe.window_size) if dedupe else None
        self._stats = stats
        self._on_gap = on_gap
        self.connection_id = ""

    def new_connection(self, connection_id: str) -> None:
        self.connection_id = connection_id
        if self._tracker is not None:
            self._tracker.new_connection()

    def admit(self, document: Any) -> bool:
        """Whether the frame, parsed as ``document``, goes on to Kafka (False: a duplicate
        within the window). The caller parses it, once for every feature that reads it."""
        if self._window is not None:
            assert self._dedupe_key is not None
            key = scalar_to_bytes(_present(self._dedupe_key(document)))
            if key is not None and self._window.seen(key):
                self._stats.dedupe_skipped += 1
                return False
        if self._tracker is not None:
            self._check_sequence(document)
        return True

    def _check_sequence(self, document: Any) -> None:
        tracker = self._tracker
        assert tracker is not None
        assert self._number_at is not None
        stats = self._stats
        number = sequence_number(_present(self._number_at(document)))
        if number is None:
            stats.sequence_unreadable += 1
            return
        partition = None
        if self._partition_at is not None:
            raw = scalar_to_bytes(_present(self._partition_at(document)))
            partition = raw.decode(errors="replace") if raw is not None else None
        gap = tracker.observe(partition, number, self.connection_id, time.time())
        if gap is None:
            return
        if gap.regression:
            stats.sequence_regressions += 1
        else:
            stats.sequence_gaps += 1
            stats.sequence_missing += gap.missing
        stats.last_sequence_gap = gap
        self._on_gap(gap)


def _present(value: Any) -> Any:
    """A looked-up value, or None for a path the frame does not have."""
    return None if value is MISSING else value

"""The bounded buffer between the socket and Kafka, and its overflow policy, without I/O.

A record is *held* from the moment it is admitted until Kafka acknowledges it (or its delivery
fails for good, or the overflow policy drops it). Held records are bounded in count and bytes.

- ``block``: the reader stops taking frames while the buffer is full (``must_pause``) and
  resumes below the low watermark, so TCP pushes back on the server.
- ``dropNewest``: a frame arriving at a full buffer is discarded and counted.
- ``dropOldest``: the oldest record not yet handed to the producer is discarded and counted.
  To keep such records droppable, only a window of the buffer is handed to the producer at a
  time; records inside librdkafka cannot be taken back.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from .config import BufferSpec, Overflow
from .framing import Record
from .stats import BridgeStats

#: Reading resumes once the buffer has drained below this fraction of its bounds.
LOW_WATERMARK = 0.9
#: Under ``dropOldest``, the fraction of the buffer that may sit inside the producer.
DROP_OLDEST_WINDOW = 0.1
#: Admitted records handed to the producer at once while frames keep arriving without a pause.
HAND_OVER_BATCH = 512


def _nothing() -> None:
    """No hand-over to schedule (a buffer without a producer, in tests and benchmarks)."""


class FlowControl:
    """Admission, overflow and hand-over decisions for one bridge (event-loop thread only)."""

    def __init__(
        self,
        spec: BufferSpec,
        stats: BridgeStats,
        *,
        on_first_pending: Callable[[], None] = _nothing,
        on_batch_pending: Callable[[], None] = _nothing,
    ) -> None:
        """``on_first_pending``: a record waits for the producer and none did before (schedule
        a hand-over); ``on_batch_pending``: :data:`HAND_OVER_BATCH` wait (hand them over now)."""
        self._spec = spec
        self._stats = stats
        self._block = spec.overflow is Overflow.BLOCK
        self._max_messages = spec.max_messages
        self._max_bytes = spec.max_bytes
        self._pending: deque[Record] = deque()
        self._on_first_pending = on_first_pending
        self._on_batch_pending = on_batch_pending
        if spec.overflow is Overflow.DROP_OLDEST:
            self.window = max(1, int(spec.max_messages * DROP_OLDEST_WINDOW))
        else:
            self.window = spec.max_messages
        self._resume_messages = max(0, int(spec.max_messages * LOW_WATERMARK) - 1)
        self._resume_bytes = int(spec.max_bytes * LOW_WATERMARK)
        self._room = 0
        self._room_bytes = 0
        self._refresh_room()

    @property
    def pending(self) -> int:
        """Records admitted but not yet handed to the producer."""
        return len(self._pending)

    def full(self) -> bool:
        stats = self._stats
        return stats.held >= self._max_messages or stats.held_bytes >= self._max_bytes

    def must_pause(self) -> bool:
        """Under ``block``: stop reading the socket now."""
        return self._block and self.full()

    def may_resume(self) -> bool:
        """Under ``block``: the buffer has drained enough to read again."""
        stats = self._stats
        return stats.held <= self._resume_messages and stats.held_bytes <= self._resume_bytes

    def admit(self, record: Record) -> bool:
        """Take a new record into the buffer, applying the overflow policy when it is full.

        Returns :meth:`must_pause` as it stands after the admission. This runs for every
        frame, so it looks at the counters only when the room it last saw is used up: held
        records only leave between two looks (deliveries), so that room is never more than
        the real one. Under ``block`` a frame is always kept: it was read before the buffer
        filled, and the reader pauses before the next one.
        """
        stats = self._stats
        if (self._room <= 0 or self._room_bytes <= 0) and self._refresh_room() and not self._block:
            if self._spec.overflow is Overflow.DROP_OLDEST and self._pending:
                self._drop_oldest()
            else:
                stats.dropped_newest += 1
                return False
        size = len(record.value)
        stats.admitted += 1
        stats.admitted_bytes += size
        self._room -= 1
        self._room_bytes -= size
        pending = self._pending
        pending.append(record)
        waiting = len(pending)
        if waiting == 1:
            self._on_first_pending()
        elif waiting >= HAND_OVER_BATCH:
            self._on_batch_pending()
        return self._block and (self._room <= 0 or self._room_bytes <= 0) and self._refresh_room()

    def _refresh_room(self) -> bool:
        """The room left, from the counters; whether the buffer is full."""
        stats = self._stats
        self._room = self._max_messages - stats.held
        self._room_bytes = self._max_bytes - stats.held_bytes
        return self._room <= 0 or self._room_bytes <= 0

    def take(self) -> list[Record]:
        """Records to hand to the producer now, oldest first, within the window."""
        room = self.window - self._stats.in_producer
        if room <= 0 or not self._pending:
            return []
        if room >= len(self._pending):
            batch = list(self._pending)
            self._pending.clear()
        else:
            batch = [self._pending.popleft() for _ in range(room)]
        self._stats.handed += len(batch)
        return batch

    def give_back(self, records: list[Record]) -> None:
        """Return taken records that the producer had no room for, to the front, in order.

        They are handed again by a later :meth:`take`, once deliveries have made room; until
        then they stay in the buffer (and ``dropOldest`` may still drop them).
        """
        self._pending.extendleft(reversed(records))
        self._stats.handed -= len(records)

    def _drop_oldest(self) -> None:
        oldest = self._pending.popleft()
        self._stats.dropped_oldest += 1
        self._stats.dropped_bytes += len(oldest.value)

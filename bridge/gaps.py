"""Gap markers, without I/O: the interval between one connection's end and the next one's start.

Whatever the feed published in that interval never reached the bridge. A gap is therefore not
an error to hide but a fact to hand on: to consumers as a control record in Kafka, to the
operator in ``status.lastGap``, to Prometheus and to the log.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

#: Header of control records; its value says what the record is (``gap``).
HEADER_CONTROL = "ws2kafka.control"
CONTROL_GAP = b"gap"

#: Streams a gap names in ``status.lastGap`` and in its log line, at most (a share may hold
#: thousands; the control record, the audit trail, names them all).
MAX_GAP_STREAMS_SHOWN = 10


@dataclass(frozen=True, slots=True)
class Gap:
    """One interval without a connection. Times are epoch seconds."""

    source: str
    old_connection_id: str | None
    """The connection that ended (None: the bridge's first connection, after failed attempts)."""
    new_connection_id: str
    disconnected_at: float
    """When the old connection ended (or the bridge started)."""
    reconnected_at: float
    """When the new connection was open (before its subscription was sent)."""
    close_code: int | None
    """The close code that ended the old connection (1006: no close frame)."""
    close_reason: str | None
    """Why it ended, as logged: ``closed with 1011 overloaded``, ``no pong within 20 s``."""
    error: str | None
    """The kind of ending: ``ConnectionClosedError``, ``PingTimeout``, ``StaleData``..."""
    frames_on_old_connection: int
    """Data frames the old connection delivered."""
    failed_attempts: int
    """Connection attempts that failed inside the gap."""
    connection: int | None = None
    """Which of the source's connections (its share's index); None for a source without
    ``streams``, whose one connection needs no name."""
    streams: tuple[str, ...] = ()
    """The streams that connection carries, every one of them: what the gap cost."""

    @property
    def seconds(self) -> float:
        return max(0.0, self.reconnected_at - self.disconnected_at)

    def to_status(self) -> dict[str, object]:
        """camelCase, as in ``status.lastGap``: the connection's streams bounded to the first
        :data:`MAX_GAP_STREAMS_SHOWN` (``streamCount`` counts them all)."""
        return {**self._fields(), **self._scope(self.streams[:MAX_GAP_STREAMS_SHOWN])}

    def to_json(self) -> bytes:
        """The value of the gap's control record: every stream of the connection, so a
        consumer knows exactly which streams to backfill."""
        value = {"type": "gap", **self._fields(), **self._scope(self.streams)}
        return json.dumps(value, separators=(",", ":")).encode()

    def _fields(self) -> dict[str, object]:
        """The fields every gap has, a source with ``streams`` or not."""
        return {
            "source": self.source,
            "oldConnectionId": self.old_connection_id,
            "newConnectionId": self.new_connection_id,
            "disconnectedAt": rfc3339_ms(self.disconnected_at),
            "reconnectedAt": rfc3339_ms(self.reconnected_at),
            "durationSeconds": round(self.seconds, 3),
            "closeCode": self.close_code,
            "closeReason": self.close_reason,
            "error": self.error,
            "framesOnOldConnection": self.frames_on_old_connection,
            "failedAttempts": self.failed_attempts,
        }

    def _scope(self, streams: tuple[str, ...]) -> dict[str, object]:
        """Which connection and streams, for a source with ``streams`` (nothing otherwise:
        a single connection's gap reads as it always did)."""
        if self.connection is None:
            return {}
        return {
            "connectionIndex": self.connection,
            "streams": list(streams),
            "streamCount": len(self.streams),
        }

    def describe(self) -> str:
        """The log line's text (without the source name)."""
        old = self.old_connection_id or "none (first connection)"
        return (
            f"gap of {self.seconds:.3f} s{self._describe_scope()} between connection {old} "
            f"({self.error or 'no error'}: {self.close_reason or 'no reason'}, "
            f"{self.frames_on_old_connection} frames) and connection {self.new_connection_id} "
            f"after {self.failed_attempts} failed attempts"
        )

    def _describe_scope(self) -> str:
        """`` on connection 3 (streams a, b and 198 more)``; empty without ``streams``."""
        if self.connection is None:
            return ""
        shown = ", ".join(self.streams[:MAX_GAP_STREAMS_SHOWN])
        more = len(self.streams) - MAX_GAP_STREAMS_SHOWN
        if more > 0:
            shown += f" and {more} more"
        return f" on connection {self.connection} (streams {shown})"


def rfc3339(epoch: float | None) -> str | None:
    """Status times: RFC 3339, whole seconds, UTC (None stays None)."""
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def rfc3339_ms(epoch: float) -> str:
    """Millisecond precision: gaps are often shorter than a second."""
    moment = datetime.fromtimestamp(epoch, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")

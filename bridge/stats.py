"""Counters of one bridge, readable at any time by metrics, status reports and logs.

Each counter is written by exactly one thread (the event loop, or the producer's poll thread)
and only read by others, so the hot path takes no lock: a plain attribute increment costs
nanoseconds, where a Prometheus counter's lock costs about a microsecond per message. The
Prometheus collector reads these values at scrape time.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .gaps import Gap
    from .sequence import SequenceGap


class ConnectionState(StrEnum):
    """The bridge's connection state, as shown in status and metrics."""

    STARTING = "Starting"
    CONNECTING = "Connecting"
    CONNECTED = "Connected"
    BACKOFF = "Backoff"
    AUTH_FAILED = "AuthenticationFailed"
    GAVE_UP = "GaveUp"
    DRAINING = "Draining"
    STOPPED = "Stopped"
    STARTUP_FAILED = "StartupFailed"
    """It never ran: bad config, an unreadable file, a missing secret (reported by the
    operator's bridge command before it exits)."""


#: Produce latency histogram bucket bounds, seconds.
LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)


class Fallback(StrEnum):
    """Why a record went to the default topic instead of its routed one."""

    FIELD_MISSING = "FieldMissing"
    NOT_ALLOWED = "NotAllowed"
    TOO_MANY_TOPICS = "TooManyTopics"


@dataclass
class LatencyHistogram:
    """Cumulative-at-read histogram written by the poll thread only."""

    counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    total: float = 0.0

    def observe(self, seconds: float) -> None:
        """Count one latency (called per delivered record: a C bisect, not a Python loop)."""
        self.counts[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.total += seconds


@dataclass(slots=True)
class BridgeStats:
    """Everything the bridge counts. Written by the loop unless marked (poll thread)."""

    received: int = 0
    """Data frames read from the socket."""
    received_bytes: int = 0
    """Their payload bytes, as received."""
    rejected_frames: int = 0
    """Frames that could not become records (corrupt compressed data, or any other error)."""
    rejections: dict[str, int] = field(default_factory=dict)
    """``rejected_frames`` by reason: ``FrameRejected`` (corrupt compressed data) or the class
    name of the unexpected error (a bounded set: the exception classes of the code)."""
    dropped_newest: int = 0
    """Frames discarded on arrival because the buffer was full."""
    dropped_oldest: int = 0
    """Buffered records discarded to make room for newer ones."""
    admitted: int = 0
    """Records that entered the buffer."""
    admitted_bytes: int = 0
    dropped_bytes: int = 0
    """Value bytes of the records dropped from the buffer."""
    handed: int = 0
    """Records handed to the producer."""
    refused: int = 0
    """Handed records that librdkafka refused outright (e.g. larger than message.max.bytes)."""
    refused_bytes: int = 0
    delivered: int = 0
    """(poll thread) Records acknowledged by Kafka."""
    failed: int = 0
    """(poll thread) Records whose delivery failed for good."""
    settled_bytes: int = 0
    """(poll thread) Value bytes of the records delivered or failed."""
    connects: int = 0
    connect_failures: int = 0
    auth_failures: int = 0
    reconnects: int = 0
    close_codes: dict[int, int] = field(default_factory=dict)
    """Connections closed, by close code (at most 65,536 keys; metrics bucket them)."""
    errors: dict[str, int] = field(default_factory=dict)
    """Failed attempts and lost connections by exception class name."""
    delivery_errors: dict[str, int] = field(default_factory=dict)
    """(poll thread) Failed deliveries by librdkafka error name (``Delivery<NAME>``)."""
    state: ConnectionState = ConnectionState.STARTING
    state_since: float = field(default_factory=time.time)
    longest_connected: float = 0.0
    """The longest stretch this run stayed connected, up to the last time it left
    ``Connected`` (:meth:`connected_stretch` adds the current one)."""
    started_at: float = field(default_factory=time.time)
    last_frame_ns: int = 0
    """Wall-clock time of the last frame, epoch ns (0: none yet); an int, as the hot path
    reads the clock (no division per frame)."""
    last_error: str | None = None
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)
    """(poll thread) produce() to acknowledgement."""
    gaps: int = 0
    """Intervals between a connection's end (or the start) and the next connection."""
    gap_seconds: float = 0.0
    """Their total duration."""
    last_gap: Gap | None = None
    gap_records: int = 0
    """(poll thread) Gap control records acknowledged by Kafka."""
    gap_records_failed: int = 0
    """(poll thread) Gap control records whose delivery failed."""
    gap_records_refused: int = 0
    """Gap control records librdkafka did not take (its queue full, or the record invalid)."""
    sequence_gaps: int = 0
    """Jumps in a frame sequence (``sequence`` configured)."""
    sequence_missing: int = 0
    """Sequence numbers skipped by those jumps."""
    sequence_regressions: int = 0
    """Sequence numbers lower than or equal to the last one (duplicates, restarts)."""
    sequence_unreadable: int = 0
    """Frames without a readable integer at the sequence pointer."""
    last_sequence_gap: SequenceGap | None = None
    dedupe_skipped: int = 0
    """Frames skipped because their id was produced within the dedupe window."""
    rotations: int = 0
    """Make-before-break rotations completed."""
    rotation_failures: int = 0
    """Rotations abandoned (the new connection failed or sent no data in time)."""
    rule_matches: dict[tuple[str, str], int] = field(default_factory=dict)
    """Frames matched by a message rule (or answering the subscription), by (rule, kind)."""
    control_frames: int = 0
    """Frames a rule, the subscription or the login took out of the data stream (dropped or
    sent to the control topic)."""
    replies_sent: int = 0
    """Replies sent back by rules (answers to application pings)."""
    reply_failures: int = 0
    """Replies that could not be sent (the connection was closing)."""
    control_records: int = 0
    """(poll thread) Control-topic records acknowledged by Kafka."""
    control_records_failed: int = 0
    """(poll thread) Control-topic records whose delivery failed."""
    control_records_refused: int = 0
    """Control-topic records librdkafka did not take."""
    split_records: int = 0
    """Records beyond the first that splitting made out of frames."""
    split_empty: int = 0
    """Frames whose split array was empty: no record."""
    routed_topics: set[str] = field(default_factory=set)
    """Topics ``kafka.routing`` named so far (at most its ``maxTopics``)."""
    routing_fallbacks: dict[Fallback, int] = field(default_factory=dict)
    """Records that went to ``kafka.topic`` instead of a routed topic, by reason."""
    subscription: str | None = None
    """The current connection's subscription state (``spec.subscription``): Pending,
    Subscribed, SubscriptionRejected or SubscriptionTimeout."""
    subscription_message: str = ""
    subscription_failures: int = 0
    """Subscriptions rejected or unacknowledged in time."""
    last_subscription_failure: tuple[str, str] | None = None
    """The last failure's state and message: it stays visible while the next connection
    waits for its answer (a reconnect after a refusal takes only the backoff)."""
    authentication: str | None = None
    """The last login's state (``spec.login``): Pending, Authenticated, LoginRejected or
    LoginTimeout."""
    authentication_message: str = ""
    """The server's words (never a secret), or why none came."""
    last_authentication_failure: tuple[str, str] | None = None
    """The last refused or unanswered login: visible until a login succeeds again."""
    logins: dict[str, int] = field(default_factory=dict)
    """Logins by outcome (Authenticated, LoginRejected, LoginTimeout)."""
    token_requests: dict[tuple[str, str, str], int] = field(default_factory=dict)
    """Token requests (``spec.tokens``) by token, request (fetch, keepAlive) and outcome
    (ok, failed)."""
    token_expiries: dict[str, int] = field(default_factory=dict)
    """Tokens the server refused or said expired, by token."""
    next_token_refresh: float | None = None
    """When a token is next kept alive or fetched anew (epoch seconds)."""

    @property
    def dropped(self) -> int:
        return self.dropped_oldest + self.dropped_newest

    @property
    def rejected(self) -> int:
        """Frames that never became Kafka records: unreadable, or refused by the producer."""
        return self.rejected_frames + self.refused

    @property
    def last_frame_at(self) -> float | None:
        """Wall-clock time of the last frame, epoch seconds (None: none yet)."""
        return self.last_frame_ns / 1e9 if self.last_frame_ns else None

    @property
    def settled(self) -> int:
        """Handed records that left the producer, one way or the other."""
        return self.delivered + self.failed + self.refused

    @property
    def held(self) -> int:
        """Records in the buffer: admitted and not yet dropped, delivered, failed or refused."""
        return self.admitted - self.dropped_oldest - self.settled

    @property
    def held_bytes(self) -> int:
        return self.admitted_bytes - self.dropped_bytes - self.settled_bytes - self.refused_bytes

    @property
    def in_producer(self) -> int:
        """Records handed to the producer and not yet settled."""
        return self.handed - self.settled

    def set_state(self, state: ConnectionState, error: str | None = None) -> bool:
        """Change the state; returns whether it changed (callers report changes at once)."""
        if error is not None:
            self.last_error = error
        if state is self.state:
            return False
        now = time.time()
        self.longest_connected = self.connected_stretch(now)
        self.state = state
        self.state_since = now
        return True

    def connected_stretch(self, now: float) -> float:
        """The longest stretch this run has stayed connected, the current one included: a
        run that streamed for hours before it gave up was not part of a failure streak."""
        if self.state is not ConnectionState.CONNECTED:
            return self.longest_connected
        return max(self.longest_connected, now - self.state_since)

    def reject(self, reason: str) -> None:
        self.rejected_frames += 1
        self.rejections[reason] = self.rejections.get(reason, 0) + 1

    def count_rule(self, rule: str, kind: str) -> None:
        key = (rule, kind)
        self.rule_matches[key] = self.rule_matches.get(key, 0) + 1

    def count_error(self, name: str) -> None:
        self.errors[name] = self.errors.get(name, 0) + 1

    def count_delivery_error(self, name: str) -> None:
        """(poll thread) One failed delivery; the loop never writes this dict."""
        key = f"Delivery{name}"
        self.delivery_errors[key] = self.delivery_errors.get(key, 0) + 1

    def count_close(self, code: int) -> None:
        self.close_codes[code] = self.close_codes.get(code, 0) + 1


#: Close codes the WebSocket RFCs and IANA's registry define: counted as themselves.
_REGISTERED_CLOSE_CODES = frozenset(range(1000, 1016))


def close_code_label(code: int) -> str:
    """The metric label of a close code: any peer may send any number, so the label values
    stay bounded: registered codes as themselves, then ``3xxx`` (libraries, frameworks),
    ``4xxx`` (applications) and ``other``."""
    if code in _REGISTERED_CLOSE_CODES:
        return str(code)
    if 3000 <= code <= 3999:
        return "3xxx"
    if 4000 <= code <= 4999:
        return "4xxx"
    return "other"

"""The state-reporting hook: how a bridge tells the outside world what it is doing.

The operator implements :class:`StateReporter` to merge-patch a WebSocketSource's status; the
CLI uses :class:`NullReporter`. The bridge calls ``report`` at once on every state change and
otherwise at most every ``interval`` seconds, so the API server is not flooded with counters.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Protocol

from .gaps import Gap, rfc3339
from .kafka_health import KafkaVerdict
from .sequence import SequenceGap
from .stats import BridgeStats, ConnectionState


@dataclass(frozen=True)
class StatusSnapshot:
    """The facts a status report carries (camelCase keys in :meth:`to_status`)."""

    state: ConnectionState
    since: float
    longest_connected: float
    last_message_time: float | None
    messages_received: int
    messages_produced: int
    messages_dropped: int
    messages_failed: int
    reconnects: int
    last_error: str | None
    connection_id: str | None
    reported_at: float
    last_gap: Gap | None = None
    last_sequence_gap: SequenceGap | None = None
    kafka: KafkaVerdict | None = None
    subscription: str | None = None
    """``spec.subscription``'s state on the current connection (None: not checked)."""
    subscription_message: str = ""
    last_subscription_failure: tuple[str, str] | None = None
    control_frames: int = 0
    authentication: str | None = None
    """``spec.login``'s state (None: no login)."""
    authentication_message: str = ""
    last_authentication_failure: tuple[str, str] | None = None
    next_token_refresh: float | None = None
    """When a token (``spec.tokens``) is next kept alive or fetched anew."""
    connections: dict[str, object] | None = None
    """The connections' summary (:func:`connections_summary`)."""
    topics: tuple[str, ...] = ()
    """The Kafka topics the bridge writes (:func:`topics_written`; empty: not reported)."""
    routed_topics: int = 0
    """Distinct topics ``kafka.routing`` has named (``topics`` lists the first of them)."""

    @classmethod
    def of(
        cls,
        stats: BridgeStats,
        connection_id: str | None,
        now: float,
        kafka: KafkaVerdict | None = None,
        connections: dict[str, object] | None = None,
        topics: tuple[str, ...] = (),
    ) -> StatusSnapshot:
        return cls(
            state=stats.state,
            since=stats.state_since,
            longest_connected=stats.connected_stretch(now),
            last_message_time=stats.last_frame_at,
            messages_received=stats.received,
            messages_produced=stats.delivered,
            messages_dropped=stats.dropped + stats.rejected,
            messages_failed=stats.failed,
            reconnects=stats.reconnects,
            last_error=stats.last_error,
            connection_id=connection_id,
            reported_at=now,
            last_gap=stats.last_gap,
            last_sequence_gap=stats.last_sequence_gap,
            kafka=kafka,
            subscription=stats.subscription,
            subscription_message=stats.subscription_message,
            last_subscription_failure=stats.last_subscription_failure,
            control_frames=stats.control_frames,
            authentication=stats.authentication,
            authentication_message=stats.authentication_message,
            last_authentication_failure=stats.last_authentication_failure,
            next_token_refresh=stats.next_token_refresh,
            connections=connections,
            topics=topics,
            routed_topics=len(stats.routed_topics),
        )

    def to_status(self) -> dict[str, object]:
        """The ``status.connection`` block of a WebSocketSource."""
        return {
            "state": self.state.value,
            "since": rfc3339(self.since),
            "longestConnectedSeconds": round(self.longest_connected),
            "lastMessageTime": rfc3339(self.last_message_time),
            "messagesReceived": self.messages_received,
            "messagesProduced": self.messages_produced,
            "messagesDropped": self.messages_dropped,
            "messagesFailed": self.messages_failed,
            "reconnects": self.reconnects,
            "lastError": self.last_error,
            "connectionId": self.connection_id,
            "heartbeatTime": rfc3339(self.reported_at),
            "kafka": self.kafka.to_status() if self.kafka is not None else None,
            "controlMessages": self.control_frames,
            "subscription": self._subscription_status(),
            "authentication": self._authentication_status(),
            "connections": self.connections,
            "routedTopics": self.routed_topics,
        }

    def _subscription_status(self) -> dict[str, object] | None:
        if self.subscription is None:
            return None
        failure = self.last_subscription_failure
        return {
            "state": self.subscription,
            "message": self.subscription_message,
            "lastFailure": {"state": failure[0], "message": failure[1]} if failure else None,
        }

    def _authentication_status(self) -> dict[str, object] | None:
        if self.authentication is None:
            return None
        failure = self.last_authentication_failure
        return {
            "state": self.authentication,
            "message": self.authentication_message,
            "lastFailure": {"state": failure[0], "message": failure[1]} if failure else None,
            "nextRefreshTime": rfc3339(self.next_token_refresh),
        }

    def to_gap_status(self) -> dict[str, object]:
        """``status.lastGap`` and ``status.lastSequenceGap``, for those that happened.

        An absent one is left out rather than sent as null: a merge patch with null would
        erase the last gap that a previous run of the bridge (a killed pod) reported.
        """
        blocks: dict[str, object] = {}
        if self.last_gap is not None:
            blocks["lastGap"] = self.last_gap.to_status()
        if self.last_sequence_gap is not None:
            blocks["lastSequenceGap"] = self.last_sequence_gap.to_status()
        return blocks


#: Topics listed in ``status.topics`` at most: routing may name up to 10,000 (each up to 249
#: characters), more than a resource can hold; ``status.connection.routedTopics`` counts them.
MAX_TOPICS_LISTED = 100


def topics_written(
    data: str, gaps: str | None, control: str | None, routed: set[str]
) -> tuple[str, ...]:
    """``status.topics``: the data topic, the gap and control topics when configured, then
    the routed topics in name order, without repeats and at most :data:`MAX_TOPICS_LISTED`:
    what a consumer, an ACL or a retention policy has to cover."""
    fixed = [topic for topic in (data, gaps, control) if topic is not None]
    listed = list(dict.fromkeys(fixed))
    room = MAX_TOPICS_LISTED - len(listed)
    listed += heapq.nsmallest(room, routed - set(listed))
    return tuple(listed)


#: Connections named one by one in ``status.connection.connections.unhealthy``, at most.
MAX_UNHEALTHY_LISTED = 10


@dataclass(frozen=True)
class LinkState:
    """What status says of one connection that is not connected."""

    index: int
    state: ConnectionState
    last_error: str | None
    streams: tuple[str, ...]


def connections_summary(states: list[LinkState], total: int) -> dict[str, object]:
    """``status.connection.connections``: how many of ``total`` are connected, backing off,
    and the first few that are not connected with their streams (bounded, whatever the
    number of connections)."""
    down = [link for link in states if link.state is not ConnectionState.CONNECTED]
    return {
        "total": total,
        "connected": total - len(down),
        "backingOff": sum(link.state is ConnectionState.BACKOFF for link in down),
        "ready": f"{total - len(down)}/{total}",
        "unhealthy": [
            {
                "index": link.index,
                "state": link.state.value,
                "lastError": link.last_error,
                "streams": list(link.streams[:5]),
                "streamCount": len(link.streams),
            }
            for link in down[:MAX_UNHEALTHY_LISTED]
        ],
    }


@dataclass(frozen=True)
class Requests:
    """What the outside world asks of the bridge in answer to a report."""

    rotate: bool = False
    """Replace the connection now, make-before-break (see ``Bridge.rotate``)."""


class StateReporter(Protocol):
    """Receives status snapshots; implementations must not raise for transient failures.

    A report may return :class:`Requests` (e.g. an operator relaying an annotation).
    """

    interval: float
    """Seconds between two routine reports (state changes are reported at once)."""

    async def report(self, snapshot: StatusSnapshot) -> Requests | None: ...


class NullReporter:
    """Reports nothing: the CLI's default."""

    interval = 3600.0

    async def report(self, snapshot: StatusSnapshot) -> None:
        return None

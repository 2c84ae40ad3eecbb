"""Prometheus metrics of one or more bridges, read from their counters at scrape time.

A custom collector instead of per-message Counter objects: the hot path only increments plain
integers, and one process (the operator's inline mode) can expose many bridges, labelled by
``source``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from .login import LOGIN_OUTCOMES, LoginState
from .stats import LATENCY_BUCKETS, BridgeStats, ConnectionState, close_code_label
from .subscription import SubscriptionState

Sources = Callable[[], Iterable[tuple[str, BridgeStats]]]


class BridgeCollector(Collector):
    """Exposes ``ws2kafka_*`` metrics for every (name, stats) pair ``sources()`` returns."""

    def __init__(self, sources: Sources) -> None:
        self._sources = sources

    def collect(self) -> Iterator[Metric]:
        counters = {
            "received": CounterMetricFamily(
                "ws2kafka_frames_received",
                "Data frames read from the WebSocket.",
                labels=["source"],
            ),
            "received_bytes": CounterMetricFamily(
                "ws2kafka_frames_received_bytes", "Payload bytes received.", labels=["source"]
            ),
            "delivered": CounterMetricFamily(
                "ws2kafka_records_produced", "Records acknowledged by Kafka.", labels=["source"]
            ),
            "failed": CounterMetricFamily(
                "ws2kafka_delivery_failures", "Records whose delivery failed.", labels=["source"]
            ),
            "reconnects": CounterMetricFamily(
                "ws2kafka_reconnects", "Connections opened after the first.", labels=["source"]
            ),
            "connect_failures": CounterMetricFamily(
                "ws2kafka_connect_failures", "Failed connection attempts.", labels=["source"]
            ),
            "gaps": CounterMetricFamily(
                "ws2kafka_gaps",
                "Intervals without a connection between two connections (or after the start).",
                labels=["source"],
            ),
            "gap_seconds": CounterMetricFamily(
                "ws2kafka_gap_seconds", "Total duration of those gaps.", labels=["source"]
            ),
            "sequence_gaps": CounterMetricFamily(
                "ws2kafka_sequence_gaps", "Jumps in the frames' sequence field.", labels=["source"]
            ),
            "sequence_missing": CounterMetricFamily(
                "ws2kafka_sequence_missing",
                "Sequence numbers skipped by those jumps.",
                labels=["source"],
            ),
            "sequence_regressions": CounterMetricFamily(
                "ws2kafka_sequence_regressions",
                "Sequence numbers not above the last one (duplicates, restarts).",
                labels=["source"],
            ),
            "dedupe_skipped": CounterMetricFamily(
                "ws2kafka_dedupe_skipped",
                "Frames skipped: their id was produced within the dedupe window.",
                labels=["source"],
            ),
            "rotations": CounterMetricFamily(
                "ws2kafka_rotations", "Make-before-break rotations completed.", labels=["source"]
            ),
            "control_frames": CounterMetricFamily(
                "ws2kafka_control_frames",
                "Frames a message rule or the subscription took out of the data stream.",
                labels=["source"],
            ),
            "replies_sent": CounterMetricFamily(
                "ws2kafka_replies_sent",
                "Replies message rules sent (answers to application pings).",
                labels=["source"],
            ),
            "split_records": CounterMetricFamily(
                "ws2kafka_split_records",
                "Records beyond the first that splitting made out of frames.",
                labels=["source"],
            ),
            "subscription_failures": CounterMetricFamily(
                "ws2kafka_subscription_failures",
                "Subscriptions the server rejected or did not acknowledge in time.",
                labels=["source"],
            ),
        }
        last_gap = GaugeMetricFamily(
            "ws2kafka_last_gap_seconds",
            "Duration of the last gap (0 before the first).",
            labels=["source"],
        )
        dropped = CounterMetricFamily(
            "ws2kafka_frames_dropped",
            "Frames discarded, by reason.",
            labels=["source", "reason"],
        )
        rejected = CounterMetricFamily(
            "ws2kafka_frames_rejected",
            "Frames that could not become records, by reason.",
            labels=["source", "reason"],
        )
        errors = CounterMetricFamily(
            "ws2kafka_connection_errors",
            "Failed attempts and lost connections, by error.",
            labels=["source", "error"],
        )
        closes = CounterMetricFamily(
            "ws2kafka_close_codes", "Connections closed, by close code.", labels=["source", "code"]
        )
        depth = GaugeMetricFamily(
            "ws2kafka_buffer_records", "Records received and not yet settled.", labels=["source"]
        )
        depth_bytes = GaugeMetricFamily(
            "ws2kafka_buffer_bytes", "Bytes of those records.", labels=["source"]
        )
        state = GaugeMetricFamily(
            "ws2kafka_connection_state",
            "1 for the current connection state.",
            labels=["source", "state"],
        )
        silence = GaugeMetricFamily(
            "ws2kafka_seconds_since_last_frame",
            "Seconds since the last data frame (since start when none arrived).",
            labels=["source"],
        )
        latency = HistogramMetricFamily(
            "ws2kafka_produce_latency_seconds",
            "Time from produce() to Kafka's acknowledgement.",
            labels=["source"],
        )
        now = time.time()
        for name, stats in self._sources():
            for attr, family in counters.items():
                family.add_metric([name], getattr(stats, attr))
            dropped.add_metric([name, "overflowOldest"], stats.dropped_oldest)
            dropped.add_metric([name, "overflowNewest"], stats.dropped_newest)
            dropped.add_metric([name, "rejected"], stats.rejected_frames)
            for reason, count in sorted(stats.rejections.items()):
                rejected.add_metric([name, reason], count)
            dropped.add_metric([name, "refused"], stats.refused)
            for error, count in sorted({**stats.errors, **stats.delivery_errors}.items()):
                errors.add_metric([name, error], count)
            for label, count in sorted(close_code_counts(stats.close_codes).items()):
                closes.add_metric([name, label], count)
            depth.add_metric([name], stats.held)
            depth_bytes.add_metric([name], stats.held_bytes)
            for candidate in ConnectionState:
                state.add_metric([name, candidate.value], float(candidate is stats.state))
            last = stats.last_frame_at if stats.last_frame_at is not None else stats.started_at
            silence.add_metric([name], max(0.0, now - last))
            latency.add_metric([name], _buckets(stats), stats.latency.total)
            last_gap.add_metric([name], stats.last_gap.seconds if stats.last_gap else 0.0)
        yield from counters.values()
        yield from _message_families(self._sources())
        yield from (
            dropped,
            rejected,
            errors,
            closes,
            depth,
            depth_bytes,
            state,
            silence,
            latency,
            last_gap,
        )


def _message_families(sources: Iterable[tuple[str, BridgeStats]]) -> Iterator[Metric]:
    """Message rules, control records, routing and the subscription: every label value
    comes from the spec (rule names, at most ``maxTopics`` topics) or from a fixed set."""
    matched = CounterMetricFamily(
        "ws2kafka_messages_matched",
        "Frames matched by a message rule or answering the subscription, by rule and kind.",
        labels=["source", "rule", "kind"],
    )
    control = CounterMetricFamily(
        "ws2kafka_control_records",
        "Records for the control topic, by outcome.",
        labels=["source", "outcome"],
    )
    fallbacks = CounterMetricFamily(
        "ws2kafka_routing_fallbacks",
        "Records that went to kafka.topic instead of their routed topic, by reason.",
        labels=["source", "reason"],
    )
    topics = GaugeMetricFamily(
        "ws2kafka_routed_topics", "Topics kafka.routing has named.", labels=["source"]
    )
    subscribed = GaugeMetricFamily(
        "ws2kafka_subscription_state",
        "1 for the current connection's subscription state (spec.subscription).",
        labels=["source", "state"],
    )
    logins = CounterMetricFamily(
        "ws2kafka_logins", "Logins (spec.login) by outcome.", labels=["source", "outcome"]
    )
    authenticated = GaugeMetricFamily(
        "ws2kafka_authentication_state",
        "1 for the authentication's state (spec.login, spec.tokens).",
        labels=["source", "state"],
    )
    token_requests = CounterMetricFamily(
        "ws2kafka_token_requests",
        "Token requests (spec.tokens) by token, request (fetch, keepAlive) and outcome.",
        labels=["source", "token", "request", "outcome"],
    )
    token_expiries = CounterMetricFamily(
        "ws2kafka_token_expiries",
        "Tokens the server refused or said expired (a new one is fetched), by token.",
        labels=["source", "token"],
    )
    for name, stats in sources:
        for (rule, kind), count in sorted(stats.rule_matches.items()):
            matched.add_metric([name, rule, kind], count)
        control.add_metric([name, "delivered"], stats.control_records)
        control.add_metric([name, "failed"], stats.control_records_failed)
        control.add_metric([name, "refused"], stats.control_records_refused)
        for reason, count in sorted(stats.routing_fallbacks.items()):
            fallbacks.add_metric([name, reason.value], count)
        topics.add_metric([name], len(stats.routed_topics))
        if stats.subscription is not None:
            for candidate in SubscriptionState:
                subscribed.add_metric(
                    [name, candidate.value], float(candidate == stats.subscription)
                )
        if stats.authentication is not None:
            _add_logins(name, stats, logins, authenticated)
        for (token, request, outcome), count in sorted(stats.token_requests.items()):
            token_requests.add_metric([name, token, request, outcome], count)
        for token, count in sorted(stats.token_expiries.items()):
            token_expiries.add_metric([name, token], count)
    yield from (matched, control, fallbacks, topics, subscribed, logins, authenticated)
    yield from (token_requests, token_expiries)


def _add_logins(
    name: str, stats: BridgeStats, logins: CounterMetricFamily, state: GaugeMetricFamily
) -> None:
    """Every outcome and state, zero or not: a fixed set of label values."""
    for outcome in LOGIN_OUTCOMES:
        logins.add_metric([name, outcome.value], stats.logins.get(outcome, 0))
    for candidate in LoginState:
        state.add_metric([name, candidate.value], float(candidate == stats.authentication))


def close_code_counts(close_codes: dict[int, int]) -> dict[str, int]:
    """Close counts by :func:`close_code_label`: bounded label values whatever peers send."""
    counts: dict[str, int] = {}
    for code, count in close_codes.items():
        label = close_code_label(code)
        counts[label] = counts.get(label, 0) + count
    return counts


def _buckets(stats: BridgeStats) -> list[tuple[str, float]]:
    cumulative = 0
    buckets: list[tuple[str, float]] = []
    for bound, count in zip((*LATENCY_BUCKETS, float("inf")), stats.latency.counts, strict=True):
        cumulative += count
        buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
    return buckets

"""Conditions from facts: one summary (Ready), truthful reasons, stable transition times."""

from datetime import UTC, datetime, timedelta

import pytest

from ws2kafka.operator.conditions import Facts, derive, merge_conditions

CONNECTED = {"state": "Connected", "since": "2026-11-28T00:00:00Z", "messagesDropped": 0}


def facts(**overrides: object) -> Facts:
    base: dict[str, object] = {
        "generation": 3,
        "spec_error": None,
        "suspended": False,
        "connection": CONNECTED,
        "heartbeat_age": 1.0,
        "heartbeat_timeout": 30.0,
        "deployment_available": True,
    }
    return Facts(**{**base, **overrides})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("overrides", "status", "reason"),
    [
        ({}, "True", "Streaming"),
        ({"spec_error": "spec.url: bad"}, "False", "SpecInvalid"),
        ({"suspended": True}, "False", "Suspended"),
        ({"deployment_available": False}, "False", "DeploymentUnavailable"),
        ({"heartbeat_age": None, "connection": None}, "False", "BridgeStarting"),
        ({"heartbeat_age": 31.0}, "False", "BridgeNotReporting"),
        ({"connection": {"state": "Backoff", "lastError": "refused"}}, "False", "Backoff"),
        ({"connection": {"state": "GaveUp"}}, "False", "GaveUp"),
        ({"deployment_available": None}, "True", "Streaming"),
    ],
)
def test_ready(overrides: dict[str, object], status: str, reason: str) -> None:
    ready = derive(facts(**overrides))["Ready"]
    assert (ready.status, ready.reason) == (status, reason)


UNREACHABLE = {
    "reason": "BrokersUnreachable",
    "message": "no Kafka broker reachable (last error: refused); 574 records wait in the buffer",
}


@pytest.mark.parametrize(
    ("kafka", "ready", "producing"),
    [
        ({"reason": "Producing", "message": "ok"}, ("True", "Streaming"), ("True", "Producing")),
        (UNREACHABLE, ("False", "BrokersUnreachable"), ("False", "BrokersUnreachable")),
        (
            {"reason": "TopicAuthorizationFailed", "message": "denied"},
            ("False", "TopicAuthorizationFailed"),
            ("False", "TopicAuthorizationFailed"),
        ),
        (None, ("True", "Streaming"), ("Unknown", "BridgeNotReporting")),
    ],
)
def test_ready_covers_the_kafka_side(
    kafka: dict[str, str] | None, ready: tuple[str, str], producing: tuple[str, str]
) -> None:
    """A bridge connected to its feed is not Ready while nothing reaches Kafka (an older
    bridge that reports no Kafka side is judged by its connection alone)."""
    verdicts = derive(facts(connection={**CONNECTED, "kafka": kafka}))
    assert (verdicts["Ready"].status, verdicts["Ready"].reason) == ready
    assert (verdicts["Producing"].status, verdicts["Producing"].reason) == producing
    if kafka is UNREACHABLE:
        assert "574 records wait" in verdicts["Ready"].message


def test_degraded_on_losses_and_terminal_states() -> None:
    assert derive(facts())["Degraded"].status == "False"
    lossy = derive(facts(connection={**CONNECTED, "messagesDropped": 4}))["Degraded"]
    assert (lossy.status, lossy.reason) == ("True", "MessagesLost")
    assert derive(facts(connection={"state": "AuthenticationFailed"}))["Degraded"].status == "True"


def test_stale_heartbeat_makes_connected_unknown() -> None:
    connected = derive(facts(heartbeat_age=99.0))["Connected"]
    assert (connected.status, connected.reason) == ("Unknown", "BridgeNotReporting")


def test_transition_time_moves_only_when_status_changes() -> None:
    t0 = datetime(2026, 11, 28, tzinfo=UTC)
    first = merge_conditions([], derive(facts()), 3, t0)
    assert [c["type"] for c in first] == [
        "Ready",
        "Connected",
        "Producing",
        "Progressing",
        "Degraded",
    ]
    same = merge_conditions(first, derive(facts()), 3, t0 + timedelta(minutes=5))
    assert same == first
    down = merge_conditions(first, derive(facts(heartbeat_age=99.0)), 3, t0 + timedelta(minutes=9))
    ready = next(c for c in down if c["type"] == "Ready")
    assert ready["lastTransitionTime"] == "2026-11-28T00:09:00Z"
    degraded = next(c for c in down if c["type"] == "Degraded")
    assert degraded["lastTransitionTime"] == "2026-11-28T00:00:00Z"

"""``spec.autoRestart``'s policy: doubling delays up to the cap, the limit, the reset; and
the decisions the operator takes from a pod-mode source's status alone."""

from collections.abc import Mapping

import pytest

from ws2kafka.bridge.config import AutoRestartSpec, parse_spec
from ws2kafka.bridge.errors import ConfigError
from ws2kafka.bridge.gaps import rfc3339
from ws2kafka.operator.autorestart import (
    STABLE_SECONDS,
    AutoRestarts,
    Exhausted,
    LimitReached,
    Restart,
    RestartDue,
    Scheduled,
    decide_for_pod,
    status_count,
    streak_reset,
)


def policy(count: int = 0, **spec: object) -> AutoRestarts:
    return AutoRestarts(AutoRestartSpec.model_validate({"enabled": True, **spec}), count)


def test_the_delay_doubles_per_consecutive_restart_up_to_the_cap() -> None:
    restarts = policy(initialDelaySeconds=10, maxDelaySeconds=60)
    delays = []
    for _ in range(5):
        decision = restarts.gave_up(connected_for=0.0)
        assert isinstance(decision, Restart)
        assert decision.number == restarts.count + 1
        delays.append(decision.delay)
        restarts.restarted()
    assert delays == [10, 20, 40, 60, 60]
    assert restarts.count == 5


def test_max_restarts_leaves_the_source_given_up() -> None:
    restarts = policy(maxRestarts=2)
    for _ in range(2):
        assert isinstance(restarts.gave_up(connected_for=0.0), Restart)
        restarts.restarted()
    decision = restarts.gave_up(connected_for=0.0)
    assert decision == Exhausted(2)
    assert "maxRestarts (2) reached" in decision.message()


def test_zero_max_restarts_is_no_limit() -> None:
    restarts = policy(count=10_000, maxDelaySeconds=600)
    decision = restarts.gave_up(connected_for=0.0)
    assert decision == Restart(600, 10_001)


@pytest.mark.parametrize(
    ("max_delay", "connected_for", "count_after"),
    [
        (60, STABLE_SECONDS - 1, 3),  # connected, but not for long: the streak goes on
        (60, STABLE_SECONDS, 0),  # stable for ten minutes: a new streak
        (3600, STABLE_SECONDS, 3),  # a longer cap asks for a longer stable run
        (3600, 3600, 0),
    ],
)
def test_a_run_that_stayed_connected_resets_the_count(
    max_delay: float, connected_for: float, count_after: int
) -> None:
    restarts = policy(count=3, maxRestarts=3, maxDelaySeconds=max_delay)
    decision = restarts.gave_up(connected_for=connected_for)
    assert restarts.count == count_after
    assert isinstance(decision, Exhausted if count_after else Restart)


def test_reset_says_whether_the_count_changed() -> None:
    restarts = policy(count=2)
    assert restarts.reset() is True
    assert restarts.count == 0
    assert restarts.reset() is False


def test_the_count_is_read_back_from_status() -> None:
    assert status_count({"autoRestart": {"count": 4, "nextRestartTime": None}}) == 4
    assert status_count({}) == 0
    assert status_count(None) == 0


def test_defaults_are_off_and_delays_must_be_ordered() -> None:
    spec = parse_spec({"url": "ws://x/feed", "kafka": {"bootstrapServers": "k:9092", "topic": "t"}})
    auto = spec.auto_restart
    assert (auto.enabled, auto.max_restarts) == (False, 0)
    assert (auto.initial_delay_seconds, auto.max_delay_seconds) == (10.0, 600.0)
    with pytest.raises(ConfigError, match="maxDelaySeconds must be >= initialDelaySeconds"):
        parse_spec(
            {
                "url": "ws://x/feed",
                "kafka": {"bootstrapServers": "k:9092", "topic": "t"},
                "autoRestart": {"initialDelaySeconds": 60, "maxDelaySeconds": 10},
            }
        )


NOW = 1_800_000_000.0
GAVE_UP_AT = rfc3339(NOW - 5)


def pod_status(auto: Mapping[str, object] | None = None, **connection: object) -> dict[str, object]:
    """A status whose bridge pod gave up 5 s before NOW (after ``longestConnectedSeconds``)."""
    reported = {"state": "GaveUp", "since": GAVE_UP_AT, "lastError": "refused", **connection}
    return {"connection": reported, "autoRestart": auto or {}}


def spec(**fields: object) -> AutoRestartSpec:
    return AutoRestartSpec.model_validate({"enabled": True, "initialDelaySeconds": 10, **fields})


def test_a_give_up_is_scheduled_once_and_restarted_when_due() -> None:
    first = decide_for_pod(spec(), pod_status(), NOW, paused=False)
    assert isinstance(first, Scheduled)
    assert first.restart == Restart(10, 1)
    assert first.status == {
        "count": 0, "lastGiveUpTime": GAVE_UP_AT, "nextRestartTime": rfc3339(NOW + 10),
    }  # fmt: skip
    waiting = pod_status(first.status)
    assert decide_for_pod(spec(), waiting, NOW + 9, paused=False) is None
    due = decide_for_pod(spec(), waiting, NOW + 10, paused=False)
    assert due == RestartDue(
        1, {"count": 1, "lastRestartTime": rfc3339(NOW + 10), "nextRestartTime": None}
    )
    rolled = pod_status({**first.status, **due.status})
    assert decide_for_pod(spec(), rolled, NOW + 11, paused=False) is None, "restarted once"


def test_a_pause_holds_a_due_restart_back() -> None:
    waiting = pod_status({"count": 0, "lastGiveUpTime": GAVE_UP_AT, "nextRestartTime": GAVE_UP_AT})
    assert decide_for_pod(spec(), waiting, NOW, paused=True) is None
    assert isinstance(decide_for_pod(spec(), waiting, NOW, paused=False), RestartDue)


def test_the_next_give_up_doubles_the_delay_and_the_limit_stops_it() -> None:
    earlier = {"count": 1, "lastGiveUpTime": rfc3339(NOW - 100), "lastRestartTime": "x"}
    again = decide_for_pod(spec(), pod_status(earlier), NOW, paused=False)
    assert isinstance(again, Scheduled)
    assert again.restart == Restart(20, 2)
    limited = decide_for_pod(spec(maxRestarts=1), pod_status(earlier), NOW, paused=False)
    assert limited == LimitReached(
        Exhausted(1), {"count": 1, "lastGiveUpTime": GAVE_UP_AT, "nextRestartTime": None}
    )
    decided = pod_status(limited.status)
    assert decide_for_pod(spec(maxRestarts=1), decided, NOW + 60, paused=False) is None


def test_a_long_connected_run_before_the_give_up_starts_a_new_streak() -> None:
    earlier = {"count": 3, "lastGiveUpTime": rfc3339(NOW - 10_000)}
    status = pod_status(earlier, longestConnectedSeconds=STABLE_SECONDS)
    decision = decide_for_pod(spec(), status, NOW, paused=False)
    assert isinstance(decision, Scheduled)
    assert decision.restart == Restart(10, 1)
    assert decision.status["count"] == 0


def test_a_bridge_that_did_not_give_up_calls_for_nothing() -> None:
    for state in ("Connected", "Backoff", "Starting"):
        status = pod_status(state=state)
        assert decide_for_pod(spec(), status, NOW, paused=False) is None
    assert decide_for_pod(spec(), {}, NOW, paused=False) is None


def test_a_spec_change_or_requested_restart_resets_only_a_streak_in_progress() -> None:
    assert streak_reset({"autoRestart": {"count": 2}}) == {"count": 0, "nextRestartTime": None}
    assert streak_reset({"autoRestart": {"count": 0, "nextRestartTime": GAVE_UP_AT}}) == {
        "count": 0, "nextRestartTime": None,
    }  # fmt: skip
    assert streak_reset({"autoRestart": {"count": 0, "nextRestartTime": None}}) is None
    assert streak_reset({}) is None

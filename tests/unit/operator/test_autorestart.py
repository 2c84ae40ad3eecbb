"""``spec.autoRestart``'s policy: doubling delays up to the cap, the limit, the reset."""

import pytest

from ws2kafka.bridge.config import AutoRestartSpec, parse_spec
from ws2kafka.bridge.errors import ConfigError
from ws2kafka.operator.autorestart import (
    STABLE_SECONDS,
    AutoRestarts,
    Exhausted,
    Restart,
    status_count,
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

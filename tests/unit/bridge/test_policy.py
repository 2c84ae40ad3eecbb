"""The close-code and handshake policy: one decision per failure, capped and jittered."""

from __future__ import annotations

import pytest

from ws2kafka.bridge.config import ReconnectSpec
from ws2kafka.bridge.policy import STABLE_CONNECTION_SECONDS, decide_retry, flaps_after
from ws2kafka.bridge.source import Failure
from ws2kafka.bridge.stats import ConnectionState

SPEC = ReconnectSpec(initial_delay_seconds=2, max_delay_seconds=60)


def closed(code: int) -> Failure:
    return Failure("ConnectionClosedError", f"closed with {code}", code)


@pytest.mark.parametrize("rand", [0.0, 0.5, 0.999])
def test_401_403_wait_long_jittered_and_reauthenticate(rand: float) -> None:
    decision = decide_retry(
        Failure("AuthenticationFailed", "401", authentication=True), 1, SPEC, lambda: rand
    )
    assert decision.state is ConnectionState.AUTH_FAILED
    assert decision.reauthenticate
    assert decision.delay == pytest.approx(30 + 30 * rand)


def test_retry_after_is_a_minimum_and_the_cap_still_holds() -> None:
    busy = Failure("HandshakeFailed", "503", retry_after=10)
    assert decide_retry(busy, 1, SPEC, lambda: 0.0).delay == 10
    assert decide_retry(busy, 10, SPEC, lambda: 0.9).delay == pytest.approx(54)
    flood = Failure("HandshakeFailed", "429", retry_after=3600)
    decision = decide_retry(flood, 1, SPEC, lambda: 0.5)
    assert (decision.delay, decision.state, decision.reauthenticate) == (
        60,
        ConnectionState.BACKOFF,
        False,
    )


def test_1008_reauthenticates_with_ordinary_backoff() -> None:
    decision = decide_retry(closed(1008), 3, SPEC, lambda: 0.5)
    assert (decision.delay, decision.reauthenticate) == (4.0, True)


def test_1013_waits_at_least_the_initial_delay_and_1011_backs_off() -> None:
    assert decide_retry(closed(1013), 1, SPEC, lambda: 0.0).delay == 2
    assert decide_retry(closed(1013), 3, SPEC, lambda: 0.5).delay == 5  # 2 + (8 - 2) / 2
    assert decide_retry(closed(1011), 1, SPEC, lambda: 0.0).delay == 0
    assert not decide_retry(closed(1011), 1, SPEC, lambda: 0.0).reauthenticate


@pytest.mark.parametrize("code", [1000, 1001, 1006, 1011, 1013, 4000])
def test_every_delay_is_capped_at_any_attempt(code: int) -> None:
    for attempt in (1, 50, 10_000):
        assert 0 <= decide_retry(closed(code), attempt, SPEC, lambda: 0.999).delay <= 60


def test_short_lived_connections_make_the_backoff_grow() -> None:
    flaps = 0
    for _ in range(5):
        flaps = flaps_after(0.1, flaps)  # accepted, then dropped at once
    assert flaps == 5
    assert flaps_after(STABLE_CONNECTION_SECONDS + 1, flaps) == 1  # a healthy one resets it

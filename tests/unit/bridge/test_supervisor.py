"""The connection lifecycle as decisions: no sockets, no clocks, no sleeps."""

from __future__ import annotations

import pytest

from ws2kafka.bridge.config import ReconnectSpec
from ws2kafka.bridge.policy import STABLE_CONNECTION_SECONDS
from ws2kafka.bridge.runstate import UncleanExit
from ws2kafka.bridge.source import Failure
from ws2kafka.bridge.stats import ConnectionState
from ws2kafka.bridge.supervisor import GiveUp, Retry, Supervisor

REFUSED = Failure("ConnectionRefusedError", "connection refused")
CLOSED = Failure("ConnectionClosedError", "closed with 1011 overloaded", close_code=1011)
UNAUTHORIZED = Failure(
    "AuthenticationFailed", "handshake rejected with HTTP 401", authentication=True
)


def supervisor(unclean: UncleanExit | None = None, **reconnect: object) -> Supervisor:
    spec = ReconnectSpec.model_validate(
        {"initialDelaySeconds": 1, "maxDelaySeconds": 64, **reconnect}
    )
    return Supervisor(spec, source="src", started_at=100.0, unclean=unclean, rand=lambda: 1.0)


def retry(decision: Retry | GiveUp) -> Retry:
    assert isinstance(decision, Retry), decision
    return decision


def test_a_first_connection_that_opens_at_once_is_no_gap_and_no_reconnect() -> None:
    opened = supervisor().opened("c1", 101.0)
    assert (opened.reconnect, opened.gap) == (False, None)


def test_failed_attempts_before_the_first_connection_are_one_gap_from_the_start() -> None:
    sup = supervisor()
    delays = [retry(sup.connect_failed(REFUSED)).delay for _ in range(3)]
    assert delays == [1.0, 2.0, 4.0]  # full jitter at its bound (rand = 1), doubling
    opened = sup.opened("c1", 110.0)
    gap = opened.gap
    assert gap is not None
    assert (gap.old_connection_id, gap.new_connection_id) == (None, "c1")
    assert (gap.disconnected_at, gap.reconnected_at, gap.failed_attempts) == (100.0, 110.0, 3)
    assert (gap.error, gap.close_reason) == ("ConnectionRefusedError", "connection refused")
    assert opened.reconnect is False


def test_a_lost_connection_and_the_next_one_make_a_gap_with_both_ids() -> None:
    sup = supervisor()
    sup.opened("c1", 101.0)
    decision = retry(sup.ended("c1", CLOSED, frames=42, at=150.0, lived=49.0))
    assert (decision.state, decision.attempt, decision.reauthenticate) == (
        ConnectionState.BACKOFF,
        1,
        False,
    )
    retry(sup.connect_failed(REFUSED))
    opened = sup.opened("c2", 153.0)
    gap = opened.gap
    assert gap is not None
    assert opened.reconnect is True
    assert (gap.old_connection_id, gap.new_connection_id) == ("c1", "c2")
    assert (gap.close_code, gap.frames_on_old_connection, gap.failed_attempts) == (1011, 42, 1)
    assert gap.seconds == pytest.approx(3.0)


def test_max_attempts_counts_consecutive_failures_and_an_open_resets_it() -> None:
    sup = supervisor(maxAttempts=3)
    retry(sup.connect_failed(REFUSED))
    retry(sup.connect_failed(REFUSED))
    sup.opened("c1", 101.0)
    retry(sup.ended("c1", CLOSED, frames=1, at=102.0, lived=60.0))
    assert retry(sup.connect_failed(REFUSED)).attempt == 1  # counting starts over
    retry(sup.connect_failed(REFUSED))
    given_up = sup.connect_failed(REFUSED)
    assert isinstance(given_up, GiveUp)
    assert given_up.error.attempts == 3
    assert "ConnectionRefusedError: connection refused" in str(given_up.error)


def test_with_reconnect_disabled_the_end_of_a_connection_ends_the_bridge() -> None:
    sup = supervisor(enabled=False)
    sup.opened("c1", 101.0)
    decision = sup.ended("c1", CLOSED, frames=5, at=102.0, lived=1.0)
    assert isinstance(decision, GiveUp)
    assert decision.reconnect_disabled


def test_a_flapping_feed_is_retried_ever_more_slowly() -> None:
    """A feed that accepts and drops at once: each end is a first failure, but the run of
    short-lived connections makes the delay grow; a stable connection starts over."""
    sup = supervisor()
    delays = []
    for n in range(5):
        sup.opened(f"c{n}", 100.0 + n)
        delays.append(retry(sup.ended(f"c{n}", CLOSED, frames=0, at=100.5 + n, lived=0.5)).delay)
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0]
    sup.opened("stable", 200.0)
    lived = STABLE_CONNECTION_SECONDS + 1
    assert retry(sup.ended("stable", CLOSED, frames=9, at=300.0, lived=lived)).delay == 1.0


def test_refused_credentials_wait_long_and_re_read_secrets() -> None:
    decision = retry(supervisor().connect_failed(UNAUTHORIZED))
    assert decision.state is ConnectionState.AUTH_FAILED
    assert decision.reauthenticate
    assert decision.delay == 64.0


def test_an_unclean_previous_run_is_the_first_connection_s_gap() -> None:
    crash = UncleanExit(connection_id="old", last_alive=90.0, received=1234)
    opened = supervisor(unclean=crash).opened("c1", 100.5)
    gap = opened.gap
    assert gap is not None
    assert (gap.old_connection_id, gap.disconnected_at, gap.error) == ("old", 90.0, "UncleanExit")
    assert "after 1234 frames" in (gap.close_reason or "")


def test_after_a_rotation_a_loss_is_the_rotated_in_connection_s_gap() -> None:
    """A rotation itself records no gap (the bridge does not call ``opened`` for it)."""
    sup = supervisor()
    sup.opened("c1", 101.0)
    sup.rotated()
    retry(sup.ended("c2", CLOSED, frames=3, at=150.0, lived=40.0))
    gap = sup.opened("c3", 151.0).gap
    assert gap is not None
    assert gap.old_connection_id == "c2"


def test_one_connection_of_several_names_its_share_in_its_gaps() -> None:
    spec = ReconnectSpec.model_validate({"initialDelaySeconds": 1})
    sup = Supervisor(spec, source="src", started_at=100.0, connection=2, streams=("a", "b"))
    sup.opened("c1", 101.0)
    retry(sup.ended("c1", CLOSED, frames=3, at=150.0, lived=49.0))
    gap = sup.opened("c2", 151.0).gap
    assert gap is not None
    assert (gap.connection, gap.streams) == (2, ("a", "b"))


def test_a_source_without_streams_has_gaps_of_no_connection_and_no_streams() -> None:
    sup = supervisor()
    retry(sup.connect_failed(REFUSED))
    gap = sup.opened("c1", 101.0).gap
    assert gap is not None
    assert (gap.connection, gap.streams) == (None, ())


def test_an_unclean_previous_run_cost_every_stream_and_later_gaps_only_the_share_s() -> None:
    """The killed run lost all its connections; the one link that reports it names them."""
    spec = ReconnectSpec.model_validate({"initialDelaySeconds": 1})
    crash = UncleanExit(connection_id="old", last_alive=90.0, received=10)
    sup = Supervisor(
        spec,
        source="src",
        started_at=100.0,
        unclean=crash,
        connection=0,
        streams=("a",),
        unclean_streams=("a", "b", "c"),
    )
    crash_gap = sup.opened("c1", 100.5).gap
    assert crash_gap is not None
    assert (crash_gap.error, crash_gap.streams) == ("UncleanExit", ("a", "b", "c"))
    retry(sup.ended("c1", CLOSED, frames=3, at=150.0, lived=49.5))
    gap = sup.opened("c2", 151.0).gap
    assert gap is not None
    assert gap.streams == ("a",)

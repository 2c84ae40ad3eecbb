"""What the bridge does after a failed attempt or a lost connection, without I/O.

One decision per failure, from its kind, its close code and the server's ``Retry-After``:

=====================================  ===============================  ================
failure                                delay (always capped, jittered)  re-read secrets
=====================================  ===============================  ================
handshake 401/403                      long: random in [cap/2, cap]     yes
handshake with ``Retry-After`` (429,   at least ``Retry-After``         no
503...)
close 1008 (policy violation)          backoff                          yes
close 1013 (try again later)           at least the initial delay       no
token expired (``spec.tokens``)        backoff                          yes, new token
close 1011 and everything else         backoff                          no
=====================================  ===============================  ================

"Backoff" is full jitter in [0, bound), the bound doubling per attempt up to
``maxDelaySeconds``. Re-reading secrets means resolving ``env``/``file`` sources again before
the next connect, so a rotated token file is used without a restart.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from .backoff import delay_bound, full_jitter
from .config import ReconnectSpec
from .source import Failure
from .stats import ConnectionState

POLICY_VIOLATION = 1008
INTERNAL_ERROR = 1011
TRY_AGAIN_LATER = 1013


@dataclass(frozen=True, slots=True)
class RetryDecision:
    """The next step after a failure."""

    delay: float
    """Seconds to wait before the next attempt."""
    state: ConnectionState
    """The state to report meanwhile (``Backoff`` or ``AuthenticationFailed``)."""
    reauthenticate: bool
    """Resolve secret sources again before the next attempt."""


def decide_retry(
    failure: Failure,
    attempt: int,
    reconnect: ReconnectSpec,
    rand: Callable[[], float] = random.random,
) -> RetryDecision:
    """The delay, state and re-authentication for attempt ``attempt`` (1-based) after
    ``failure``; see the module docstring for the table."""
    initial, cap = reconnect.initial_delay_seconds, reconnect.max_delay_seconds
    if failure.authentication:
        # credentials rarely fix themselves: wait long, but spread many bridges' retries
        return RetryDecision(cap / 2 + cap / 2 * rand(), ConnectionState.AUTH_FAILED, True)
    if failure.close_code == TRY_AGAIN_LATER:
        bound = delay_bound(attempt, initial, cap)
        delay = initial + (bound - initial) * rand()
    else:
        delay = full_jitter(attempt, initial, cap, rand)
    if failure.retry_after is not None:
        delay = max(delay, failure.retry_after)
    reauthenticate = failure.close_code == POLICY_VIOLATION or failure.token_expired
    return RetryDecision(min(delay, cap), ConnectionState.BACKOFF, reauthenticate)


#: A connection that lived at least this long was healthy: the next reconnect starts the
#: backoff over. Shorter ones (a feed that accepts, then drops at once) make it grow.
STABLE_CONNECTION_SECONDS = 10.0


def flaps_after(lived_seconds: float, flaps: int) -> int:
    """Consecutive short-lived connections, counting the one that just ended.

    The reconnect after it waits as attempt ``flaps`` would, so a flapping feed is retried
    ever more slowly (up to the cap) instead of at the initial delay forever.
    """
    return flaps + 1 if lived_seconds < STABLE_CONNECTION_SECONDS else 1

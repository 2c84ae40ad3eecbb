"""Reconnect delays: exponential backoff with full jitter, capped, and safe at any attempt count.

The Java connector computed ``interval * 2**(attempt-1)`` in a long, which overflowed after ~51
attempts into a negative delay and a hot reconnect loop. Here the exponent is clamped before
the power is taken, so the bound reaches the cap and stays there forever.
"""

from __future__ import annotations

import random
from collections.abc import Callable

_MAX_EXPONENT = 64  # 2.0**64 times any sane interval is far past every cap; no float overflow


def delay_bound(attempt: int, initial: float, cap: float) -> float:
    """Upper bound of the delay before reconnect attempt ``attempt`` (1-based)."""
    exponent = min(max(attempt - 1, 0), _MAX_EXPONENT)
    return min(cap, initial * 2.0**exponent)


def full_jitter(
    attempt: int, initial: float, cap: float, rand: Callable[[], float] = random.random
) -> float:
    """A random delay in [0, bound): spreads reconnects of many bridges after a shared outage."""
    return delay_bound(attempt, initial, cap) * rand()

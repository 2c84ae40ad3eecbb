"""One limit on connection attempts for all connections of a bridge.

Exchanges limit how fast a client may connect (Binance: 300 connections per 5 minutes per
IP) and answer beyond it with HTTP 429 and ``Retry-After``. A bridge of 30 connections that
restarts, or that loses its network for a moment, would otherwise open them all at once.
The gate admits at most ``connects`` attempts per ``perSeconds`` (a sliding window), and a
``Retry-After`` from the server holds every connection back, not only the one told.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable

from .config import ConnectRateSpec
from .timeouts import wait_event


class ConnectGate:
    """Decides when the next attempt may start; :meth:`acquire` waits for it."""

    def __init__(
        self, spec: ConnectRateSpec | None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._spec = spec
        self._clock = clock
        self._attempts: deque[float] = deque()
        self._held_until = 0.0

    def delay(self) -> float:
        """Seconds until an attempt may start (0: now)."""
        now = self._clock()
        wait = max(0.0, self._held_until - now)
        spec = self._spec
        if spec is None:
            return wait
        attempts = self._attempts
        while attempts and attempts[0] <= now - spec.per_seconds:
            attempts.popleft()
        if len(attempts) >= spec.connects:
            wait = max(wait, attempts[0] + spec.per_seconds - now)
        return wait

    def record(self) -> None:
        """An attempt starts now."""
        if self._spec is not None:
            self._attempts.append(self._clock())

    def hold(self, seconds: float) -> None:
        """The server said to wait (``Retry-After``): no connection tries before then."""
        self._held_until = max(self._held_until, self._clock() + seconds)

    async def acquire(self, stopping: asyncio.Event) -> bool:
        """Wait for a turn and take it; False when the bridge stops meanwhile."""
        while (delay := self.delay()) > 0:
            await wait_event(stopping, delay)
            if stopping.is_set():
                return False
        self.record()
        return True

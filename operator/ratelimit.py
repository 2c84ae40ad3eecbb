"""A client-side limit on the operator's own API requests, as client-go's QPS and burst.

Thousands of sources created at once, or an operator catching up with all of them, would
otherwise send the API server every apply as fast as the threads allow; the API server
serves the whole cluster, and a herd from one controller slows every other client. A token
bucket spreads a burst of work over time: ``burst`` requests at once, then ``rate`` a second.
The Lease requests of leader election are not limited: they must never queue behind work.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

#: client-go's defaults are 5 and 10, which controllers raise; these let a catch-up of
#: thousands of sources through at what one API server on two cores serves, not faster.
DEFAULT_QPS = 100.0
DEFAULT_BURST = 200


class TokenBucket:
    """``burst`` tokens that refill at ``rate`` a second; :meth:`take` blocks (its callers
    run in threads) until one is theirs. A rate of 0 takes no limit."""

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._rate = rate
        self._burst = burst
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(burst)
        self._at = clock()
        self._lock = threading.Lock()
        self.waited = 0.0
        """Seconds callers waited for a token, in all (the operator's metric)."""

    def take(self) -> float:
        """Wait for a token; returns how long this call waited."""
        if self._rate <= 0:
            return 0.0
        with self._lock:
            now = self._clock()
            self._tokens = min(self._burst, self._tokens + (now - self._at) * self._rate)
            self._at = now
            # a token is reserved at once: callers behind it wait for the ones after it
            self._tokens -= 1
            wait = -self._tokens / self._rate if self._tokens < 0 else 0.0
            self.waited += wait
        if wait:
            self._sleep(wait)
        return wait


class RateLimitCollector(Collector):
    """``ws2kafka_operator_api_rate_limited_seconds_total``: how long the operator's requests
    waited for the limit (a rising value: the limit, not the API server, paces the work)."""

    def __init__(self, bucket: Callable[[], TokenBucket]) -> None:
        self._bucket = bucket

    def collect(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(
            "ws2kafka_operator_api_rate_limited_seconds",
            "Seconds the operator's API requests waited for its client-side rate limit",
            value=self._bucket().waited,
        )

"""Logging of repeated events as a rate: one line per interval, never one line per event.

The Java connector logged a WARN per dropped message, which under overload floods the log
exactly when the operator needs to read it.
"""

from __future__ import annotations

import logging
import time


class RateLimitedLog:
    """Counts events and logs ``N <what> in the last S s (last: ...)`` at most once per interval.

    Used from a single thread; :meth:`flush` is called periodically by that thread. ``prefix``
    names the source, as one process may run many bridges.
    """

    def __init__(
        self, logger: logging.Logger, what: str, interval: float = 10.0, *, prefix: str = ""
    ) -> None:
        self._logger = logger
        self._what = what
        self._prefix = prefix
        self._interval = interval
        self._count = 0
        self._last_detail = ""
        self._window_start = time.monotonic()

    def add(self, detail: str, count: int = 1) -> None:
        """Count ``count`` events; ``detail`` describes the latest one."""
        self._count += count
        self._last_detail = detail

    def flush(self, *, force: bool = False) -> None:
        now = time.monotonic()
        elapsed = now - self._window_start
        if self._count == 0 or (elapsed < self._interval and not force):
            return
        self._logger.warning(
            "%s%d %s in the last %.0f s (last: %s)",
            self._prefix,
            self._count,
            self._what,
            elapsed,
            self._last_detail,
        )
        self._count = 0
        self._window_start = now

"""The connection lifecycle of one bridge, as decisions without I/O.

The bridge tells the supervisor what happened (an attempt failed, a connection opened, a
connection ended, a rotation took over) and gets back what to do: wait and retry (how long,
in which state, whether to re-read secrets), give up, and which gap to record. No sockets,
clocks or sleeps: every rule here is tested with plain values (``tests/unit/bridge/
test_supervisor.py``), in the style of the websockets library's protocol tests.

Rules:

- Consecutive failed attempts count towards ``reconnect.maxAttempts``; an attempt that
  opens resets the count.
- A connection that lived less than ``STABLE_CONNECTION_SECONDS`` is a flap: the reconnect
  after a run of flaps waits as the attempt of that number would, so a feed that accepts and
  drops at once is retried ever more slowly.
- A gap is recorded when a connection opens after another ended, after failed attempts, or
  after a previous run that ended uncleanly (its state file, or what it last reported). A
  rotation (make-before-break) records none.
- With ``reconnect.enabled: false``, the end of a connection is the end of the bridge.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from .config import ReconnectSpec
from .errors import GaveUp
from .gaps import Gap
from .policy import decide_retry, flaps_after
from .runstate import UncleanExit
from .source import Failure
from .stats import ConnectionState


@dataclass(frozen=True)
class Retry:
    """Wait ``delay`` seconds in ``state``, then try again."""

    delay: float
    state: ConnectionState
    reauthenticate: bool
    """Resolve secret sources again before the next attempt."""
    attempt: int
    failure: Failure


@dataclass(frozen=True)
class GiveUp:
    """Stop trying: the bridge ends with ``error``."""

    error: GaveUp
    reconnect_disabled: bool = False


@dataclass(frozen=True)
class Opened:
    """What a newly opened connection means."""

    reconnect: bool
    """Another connection was open before it (counted as a reconnect)."""
    gap: Gap | None
    """The interval without a connection that it ends, if any."""


@dataclass(frozen=True)
class _Ended:
    """The last connection that ended, until the next one opens."""

    connection_id: str
    at: float
    failure: Failure
    frames: int


class Supervisor:
    """Decides retries, give-ups and gaps for one bridge; see the module docstring."""

    def __init__(
        self,
        reconnect: ReconnectSpec,
        *,
        source: str,
        started_at: float,
        unclean: UncleanExit | None = None,
        rand: Callable[[], float] = random.random,
        connection: int | None = None,
        streams: tuple[str, ...] = (),
        unclean_streams: tuple[str, ...] = (),
    ) -> None:
        """``connection`` and ``streams``: the share this supervisor's link carries, named in
        its gaps (None and empty for a source without ``streams``). ``unclean_streams``: what
        the gap of an ``unclean`` end names instead, every stream of the source (the killed
        run lost all its connections; one link reports it)."""
        self._reconnect = reconnect
        self._source = source
        self._connection = connection
        self._streams = streams
        self._unclean_streams = unclean_streams
        self._started_at = started_at
        self._unclean = unclean
        self._rand = rand
        self._failed_attempts = 0
        self._flaps = 0
        self._connected_before = False
        self._ended: _Ended | None = None
        self._last_failure: Failure | None = None

    def reshared(self, streams: tuple[str, ...]) -> None:
        """The link carries other streams from now on (a live change of ``streams.names``):
        the gaps that follow name them."""
        self._streams = streams

    def connect_failed(self, failure: Failure) -> Retry | GiveUp:
        """An attempt to open a connection failed."""
        self._failed_attempts += 1
        self._last_failure = failure
        return self._next(failure, self._failed_attempts)

    def opened(self, connection_id: str, now: float) -> Opened:
        """A connection opened at ``now`` (epoch seconds)."""
        gap = None
        if self._ended is not None or self._failed_attempts or self._unclean is not None:
            gap = self._gap(connection_id, now)
        opened = Opened(reconnect=self._connected_before, gap=gap)
        self._failed_attempts = 0
        self._connected_before = True
        self._ended = None
        self._unclean = None
        return opened

    def rotated(self) -> None:
        """A rotation's successor took over: no gap, nothing failed."""
        self._failed_attempts = 0
        self._ended = None

    def ended(
        self, connection_id: str, failure: Failure, *, frames: int, at: float, lived: float
    ) -> Retry | GiveUp:
        """A connection that delivered ``frames`` ended at ``at`` after ``lived`` seconds."""
        self._ended = _Ended(connection_id, at, failure, frames)
        self._last_failure = failure
        if not self._reconnect.enabled:
            return GiveUp(_gave_up(1, failure), reconnect_disabled=True)
        if failure.give_up:
            return GiveUp(_gave_up(1, failure))
        self._flaps = flaps_after(lived, self._flaps)
        return self._next(failure, 1, flaps=self._flaps)

    def _next(self, failure: Failure, attempt: int, *, flaps: int = 0) -> Retry | GiveUp:
        reconnect = self._reconnect
        if reconnect.max_attempts and attempt >= reconnect.max_attempts:
            return GiveUp(_gave_up(attempt, failure))
        decision = decide_retry(failure, max(attempt, flaps), reconnect, self._rand)
        return Retry(decision.delay, decision.state, decision.reauthenticate, attempt, failure)

    def _gap(self, connection_id: str, now: float) -> Gap:
        ended = self._ended
        streams = self._streams
        if ended is None and self._unclean is not None:
            ended = _crash_as_ended(self._unclean)
            streams = self._unclean_streams
        failure = ended.failure if ended is not None else self._last_failure
        return Gap(
            source=self._source,
            old_connection_id=ended.connection_id if ended is not None else None,
            new_connection_id=connection_id,
            disconnected_at=ended.at if ended is not None else self._started_at,
            reconnected_at=now,
            close_code=failure.close_code if failure is not None else None,
            close_reason=failure.message if failure is not None else None,
            error=failure.reason if failure is not None else None,
            frames_on_old_connection=ended.frames if ended is not None else 0,
            failed_attempts=self._failed_attempts,
            connection=self._connection,
            streams=streams,
        )


def _gave_up(attempts: int, failure: Failure) -> GaveUp:
    return GaveUp(attempts, f"{failure.reason}: {failure.message}")


def _crash_as_ended(crash: UncleanExit) -> _Ended:
    """The previous run's last connection, as far as its trace tells."""
    return _Ended(
        crash.connection_id or "unknown",
        crash.last_alive,
        Failure("UncleanExit", crash.describe()),
        0,
    )

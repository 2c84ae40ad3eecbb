"""``spec.autoRestart``, without I/O: when a bridge that gave up is started again, and when
it is left given up.

The count is of consecutive automatic restarts; the delay before the next one is
``initialDelaySeconds`` doubled per restart already made, capped at ``maxDelaySeconds``. A
run that stayed connected long enough (``maxDelaySeconds``, at least :data:`STABLE_SECONDS`)
was not part of a failure streak: the count starts again from 0. A restart the user asked
for or a spec change starts it again too: the next failure is a new streak.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ws2kafka.bridge.config import AutoRestartSpec
from ws2kafka.bridge.gaps import rfc3339
from ws2kafka.bridge.stats import ConnectionState

#: A run connected at least this long resets the count, however short maxDelaySeconds is.
STABLE_SECONDS = 600.0


@dataclass(frozen=True)
class Restart:
    """Start the bridge again after ``delay`` seconds; it will be restart number ``number``."""

    delay: float
    number: int


@dataclass(frozen=True)
class Exhausted:
    """``maxRestarts`` consecutive restarts were made: the source stays given up."""

    count: int

    def message(self) -> str:
        return f"no more automatic restarts: maxRestarts ({self.count}) reached"


class AutoRestarts:
    """One source's streak of automatic restarts (the count shown in ``status.autoRestart``)."""

    def __init__(self, spec: AutoRestartSpec, count: int = 0) -> None:
        self.spec = spec
        self.count = count

    def stable_after(self) -> float:
        """How long a run must stay connected to end the streak."""
        return max(STABLE_SECONDS, self.spec.max_delay_seconds)

    def gave_up(self, connected_for: float) -> Restart | Exhausted:
        """The bridge gave up after staying connected for at most ``connected_for`` seconds
        at a stretch: what to do next."""
        if connected_for >= self.stable_after():
            self.count = 0
        if self.spec.max_restarts and self.count >= self.spec.max_restarts:
            return Exhausted(self.count)
        delay = self.spec.initial_delay_seconds * 2 ** min(self.count, 32)
        return Restart(min(delay, self.spec.max_delay_seconds), self.count + 1)

    def restarted(self) -> None:
        self.count += 1

    def reset(self) -> bool:
        """A new streak (the user's restart, a spec change); whether the count changed."""
        changed, self.count = self.count != 0, 0
        return changed


def status_count(status: Any) -> int:
    """The count ``status.autoRestart`` kept (it survives an operator restart)."""
    auto = status.get("autoRestart") if isinstance(status, Mapping) else None
    return int(auto.get("count") or 0) if isinstance(auto, Mapping) else 0


@dataclass(frozen=True)
class Scheduled:
    """Pod mode: the bridge pod gave up; restart ``restart.number`` is due at ``due``."""

    restart: Restart
    due: str
    status: dict[str, Any]


@dataclass(frozen=True)
class LimitReached:
    """Pod mode: the bridge pod gave up and ``maxRestarts`` were made; it stays given up."""

    exhausted: Exhausted
    status: dict[str, Any]


@dataclass(frozen=True)
class RestartDue:
    """Pod mode: the delay is over; roll the bridge pod as restart ``number``."""

    number: int
    status: dict[str, Any]


PodDecision = Scheduled | LimitReached | RestartDue


def decide_for_pod(
    spec: AutoRestartSpec, status: Any, now: float, paused: bool
) -> PodDecision | None:
    """What the operator does, at one look at ``status``, about a bridge pod that gave up
    and stays (``--stay-after-giving-up``). Each give-up is decided once: it is known by
    the time the bridge entered ``GaveUp`` (``status.connection.since``), which the decision
    records as ``lastGiveUpTime``; the wait for the restart lives in ``nextRestartTime``,
    so an operator restart carries on where the last one was. ``status`` fields to merge
    into ``status.autoRestart`` come with each decision."""
    connection = status.get("connection") if isinstance(status, Mapping) else None
    auto = status.get("autoRestart") if isinstance(status, Mapping) else None
    auto = auto if isinstance(auto, Mapping) else {}
    if not isinstance(connection, Mapping) or connection.get("state") != ConnectionState.GAVE_UP:
        return None
    gave_up_at = connection.get("since")
    restarts = AutoRestarts(spec, int(auto.get("count") or 0))
    if auto.get("lastGiveUpTime") != gave_up_at:
        connected = float(connection.get("longestConnectedSeconds") or 0)
        decision = restarts.gave_up(connected)
        fields = {"count": restarts.count, "lastGiveUpTime": gave_up_at}
        if isinstance(decision, Exhausted):
            return LimitReached(decision, fields | {"nextRestartTime": None})
        due = rfc3339(now + decision.delay)
        return Scheduled(decision, str(due), fields | {"nextRestartTime": due})
    due_at = auto.get("nextRestartTime")
    if not due_at or paused or _epoch(str(due_at)) > now:
        return None
    restarts.restarted()
    return RestartDue(
        restarts.count,
        {"count": restarts.count, "lastRestartTime": rfc3339(now), "nextRestartTime": None},
    )


def _epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def streak_reset(status: Any) -> dict[str, Any] | None:
    """The ``status.autoRestart`` fields that start a new streak after a spec change or a
    requested restart (pod mode), or None when there is nothing to reset."""
    auto = status.get("autoRestart") if isinstance(status, Mapping) else None
    if not isinstance(auto, Mapping) or not (auto.get("count") or auto.get("nextRestartTime")):
        return None
    return {"count": 0, "nextRestartTime": None}

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
from typing import Any

from ws2kafka.bridge.config import AutoRestartSpec

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

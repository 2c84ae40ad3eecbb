"""What a bridge leaves behind for its next run, so a crash is reported as a gap.

A killed bridge (SIGKILL, OOM) cannot say goodbye. With a state file, it writes every second
which connection it was on and when it was last alive, and marks the file clean after a
graceful drain. A run that starts on an unclean file knows the previous one was cut short and
reports the interruption as a gap on its first connection. In a bridge pod the file lives on
the pod's ``emptyDir``, which survives container restarts; a replacement pod learns of the
previous pod's end from its last report in the resource's status instead (operator/reporter.py).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class UncleanExit:
    """The previous run ended without draining."""

    connection_id: str | None
    last_alive: float
    """Wall-clock time of its last state write: the latest it was known to be running."""
    received: int
    """Frames it had received in total (those not yet acknowledged may be lost)."""
    unaccounted: int | None = None
    """Of those, the frames neither produced, failed nor dropped at its last report: what may
    be lost (None: not known, as from a state file)."""
    last_state: str | None = None
    """Its state at its last report (None: not known)."""
    pod_name: str | None = None
    """The bridge pod it ran in (None: not known, or inline mode)."""

    def describe(self) -> str:
        """Why the gap before the next connection began, for ``lastGap.closeReason``."""
        if self.unaccounted is None:
            return (
                f"the previous run stopped without draining (killed?) after {self.received} "
                "frames; frames not yet acknowledged then may be lost"
            )
        run = f"pod {self.pod_name}" if self.pod_name else "run"
        return (
            f"the previous bridge ({run}) ended without a clean stop, last reported as "
            f"{self.last_state} after {self.received} frames; {self.unaccounted} of them were "
            "not acknowledged by Kafka then and may be lost"
        )


class RunState:
    """Reads the previous run's state once, then records this run's."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def previous_unclean_exit(self) -> UncleanExit | None:
        """The previous run, if it ended without a clean stop; a missing or corrupt file is
        treated as a clean start (there is nothing to report)."""
        try:
            state = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(state, dict) or state.get("clean", True):
            return None
        return UncleanExit(
            connection_id=state.get("connectionId"),
            last_alive=float(state.get("lastAlive") or 0.0),
            received=int(state.get("received") or 0),
        )

    def write(self, *, connection_id: str | None, received: int, clean: bool) -> None:
        """Replace the file atomically (a crash mid-write leaves the previous version)."""
        state = {
            "connectionId": connection_id,
            "lastAlive": time.time(),
            "received": received,
            "clean": clean,
        }
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps(state))
        os.replace(temporary, self.path)

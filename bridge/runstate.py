"""What a bridge leaves behind for its next run, so a crash is reported as a gap.

A killed bridge (SIGKILL, OOM) cannot say goodbye. With a state file, it writes every second
which connection it was on and when it was last alive, and marks the file clean after a
graceful drain. A run that starts on an unclean file knows the previous one was cut short and
reports the interruption as a gap on its first connection. In a bridge pod the file lives on
the pod's ``emptyDir``, which survives container restarts.
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

"""Kubernetes Events on a WebSocketSource, at most one per reason per interval."""

from __future__ import annotations

import time
from typing import Any

import kopf


class EventLimiter:
    """Posts connect/disconnect/give-up/rollout Events without flooding on flapping feeds."""

    def __init__(self, interval: float) -> None:
        self._interval = interval
        self._last: dict[tuple[str, str, str], float] = {}

    def post(self, body: Any, *, reason: str, message: str, warning: bool = False) -> bool:
        """Post an Event unless one with this reason was posted recently; returns if posted."""
        key = (body["metadata"]["namespace"], body["metadata"]["name"], reason)
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self._interval:
            return False
        self._last[key] = now
        # kopf.event, not kopf.info/warn: those obey the level that filters kopf's own log
        # messages (set to WARNING to keep handler chatter out of the resource's Events)
        kopf.event(body, type="Warning" if warning else "Normal", reason=reason, message=message)
        return True

    def forget(self, namespace: str, name: str) -> None:
        """Drop the memory of a deleted resource."""
        for key in [k for k in self._last if k[:2] == (namespace, name)]:
            del self._last[key]

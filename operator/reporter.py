"""The bridge's state-reporting hook, implemented against the API server.

A bridge pod runs it with its own ServiceAccount, whose Role allows patching the status of
its own resource only; inline mode runs it with the operator's credentials. Either way the
bridge owns ``status.connection`` and the operator owns ``status.conditions``: merge patches
of different keys never clobber each other.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from ws2kafka.bridge.ratelog import RateLimitedLog
from ws2kafka.bridge.reporting import StatusSnapshot

from . import kube

log = logging.getLogger(__name__)

Patch = Callable[[str, str, dict[str, Any]], None]


class KubeStatusReporter:
    """Merge-patches ``status.connection`` of one WebSocketSource."""

    def __init__(
        self,
        namespace: str,
        name: str,
        *,
        pod_name: str | None,
        interval: float,
        patch: Patch = kube.patch_status,
    ) -> None:
        self.namespace = namespace
        self.name = name
        self.interval = interval
        self._pod_name = pod_name
        self._patch = patch
        self._failures = RateLimitedLog(log, "status reports failed", interval=60.0)

    async def report(self, snapshot: StatusSnapshot) -> None:
        connection = {**snapshot.to_status(), "podName": self._pod_name}
        try:
            await asyncio.to_thread(
                self._patch, self.namespace, self.name, {"connection": connection}
            )
        except Exception as exc:  # the API server being away must not stop the data path
            self._failures.add(f"{type(exc).__name__}: {exc}")
            self._failures.flush()

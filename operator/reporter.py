"""The bridge's state-reporting hook, implemented against the API server.

A bridge pod runs it with its own ServiceAccount, whose Role allows patching the status of
its own resource only; inline mode runs it with the operator's credentials. Either way the
bridge owns ``status.connection``, ``status.lastGap`` and ``status.lastSequenceGap``, and the
operator owns ``status.conditions``: merge patches of different keys never clobber each other.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from ws2kafka.bridge.ratelog import RateLimitedLog
from ws2kafka.bridge.reporting import Requests, StatusSnapshot

from . import kube

log = logging.getLogger(__name__)

#: Change this annotation's value (e.g. to a timestamp) to rotate the connection now:
#: make-before-break, no frame lost.
ROTATE_ANNOTATION = "ws2kafka.dev/rotate"

Patch = Callable[[str, str, dict[str, Any]], dict[str, Any]]


class KubeStatusReporter:
    """Merge-patches ``status.connection`` (and ``lastGap``/``lastSequenceGap``) of one
    WebSocketSource."""

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
        self._rotate_request: str | None = None
        self._baseline_taken = False
        self._failures = RateLimitedLog(log, "status reports failed", interval=60.0)

    async def report(self, snapshot: StatusSnapshot) -> Requests | None:
        connection = {**snapshot.to_status(), "podName": self._pod_name}
        status = {"connection": connection, **snapshot.to_gap_status()}
        try:
            patched = await asyncio.to_thread(self._patch, self.namespace, self.name, status)
        except Exception as exc:  # the API server being away must not stop the data path
            self._failures.add(f"{type(exc).__name__}: {exc}")
            self._failures.flush()
            return None
        return Requests(rotate=self._rotation_requested(patched))

    def _rotation_requested(self, resource: dict[str, Any]) -> bool:
        """An on-demand rotation is asked for by setting or changing the annotation's value.

        The answer to every status patch carries the whole resource, so the bridge notices
        without a watch (its Role allows nothing more). The value at the first report is the
        baseline: a bridge (re)start does not rotate.
        """
        annotations = (resource.get("metadata") or {}).get("annotations") or {}
        request = annotations.get(ROTATE_ANNOTATION)
        previous, self._rotate_request = self._rotate_request, request
        first, self._baseline_taken = not self._baseline_taken, True
        if first or request is None or request == previous:
            return False
        log.info("%s/%s: rotation requested (%s)", self.namespace, self.name, request)
        return True

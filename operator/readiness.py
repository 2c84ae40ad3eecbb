"""Whether the operator is ready: kopf has started, and the API answers it.

A process that serves ``/healthz`` is alive, but not yet doing its job: kopf may still be
starting, the credentials may be refused, the CRD may be missing. ``/readyz`` answers 200
only once kopf has run its startup (with leader election: once the replica stands by, having
read the Lease; a standby is doing its job) and a list of WebSocketSources succeeds with the
operator's own credentials (in each watched namespace, or cluster-wide), and it is re-checked
every few seconds, so a revoked RBAC or an unreachable API server shows as not ready.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from ws2kafka.bridge.ratelog import RateLimitedLog

from . import kube

log = logging.getLogger(__name__)

#: Seconds between two checks of the API.
CHECK_SECONDS = 10.0
#: Characters that make a ``--namespace`` value a pattern (kopf's globs and negation).
_PATTERN = frozenset("*?[!")


def list_scope(namespaces: Sequence[str]) -> list[str | None]:
    """Where to list sources: each watched namespace, or cluster-wide (None) for all
    namespaces or for patterns."""
    if not namespaces or any(_PATTERN & set(name) for name in namespaces):
        return [None]
    return list(namespaces)


class Readiness:
    """The operator's readiness, for ``/readyz``."""

    def __init__(
        self,
        namespaces: Sequence[str],
        *,
        check: Callable[[str | None], None] = kube.list_sources,
        interval: float = CHECK_SECONDS,
    ) -> None:
        self.started = asyncio.Event()
        """Set by kopf once its startup handlers ran (``kopf.operator(ready_flag=...)``), or by
        the leader election once a standby has read the Lease."""
        self._scope = list_scope(namespaces)
        self._check = check
        self._interval = interval
        self._ready = False
        self._checked = False
        self._failures = RateLimitedLog(log, "readiness checks failed", interval=60.0)

    @property
    def ready(self) -> bool:
        return self._ready

    async def run(self) -> None:
        """Check the API every ``interval`` seconds once kopf has started, until cancelled."""
        await self.started.wait()
        while True:
            try:
                for namespace in self._scope:
                    await asyncio.to_thread(self._check, namespace)
            except Exception as exc:  # whatever it is, the operator cannot do its job
                if self._ready or not self._checked:
                    log.warning("operator not ready: %s: %s", type(exc).__name__, exc)
                else:
                    self._failures.add(f"{type(exc).__name__}: {exc}")
                    self._failures.flush()
                self._ready = False
            else:
                if not self._ready:
                    log.info("operator ready: the API lists WebSocketSources")
                self._ready = True
            self._checked = True
            await asyncio.sleep(self._interval)

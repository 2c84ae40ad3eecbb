"""Leader election's loop: read and write the Lease, carry out :mod:`.election`'s decisions.

A standby looks at the Lease every retry period until it takes it (:meth:`Leadership.acquire`);
then the operator acts, and :meth:`Leadership.hold` renews the Lease until it cannot within the
renew deadline, or another replica holds it. Every API call is bounded by the time left before
the deadline, so a call that hangs (a network partition) cannot keep a leader acting. Who
leads is logged, posted as an Event on the Lease (``LeaderElection``, as client-go does) and
shown by the ``ws2kafka_operator_leader`` gauge of the operator's ``/metrics``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Gauge

from ws2kafka.bridge.ratelog import RateLimitedLog

from . import kube
from .election import Election, Timings, Wait, Write, lease_from_api
from .settings import OperatorSettings

log = logging.getLogger(__name__)

EVENT_SOURCE = "ws2kafka-operator"


def default_identity() -> str:
    """Unique per process, readable in ``kubectl get lease``: host, pid, a random part."""
    return f"{socket.gethostname()}_{os.getpid()}_{uuid.uuid4().hex[:6]}"


class Leadership:
    """One replica's part in the election for the operator's Lease."""

    def __init__(
        self,
        settings: OperatorSettings,
        *,
        metrics: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        identity = settings.lease_identity or default_identity()
        self.namespace = settings.lease_namespace
        self.name = settings.lease_name
        self.timings: Timings = settings.election_timings()
        self.election = Election(identity, self.timings)
        self._clock = clock
        self._gauge: Gauge | None = None
        if metrics is not None:
            self._gauge = Gauge(
                "ws2kafka_operator_leader",
                "1 while this operator replica holds the Lease and acts, 0 while it stands by",
                ["lease", "identity"],
                registry=metrics,
            )
            self._show(leading=False)

    @property
    def identity(self) -> str:
        return self.election.identity

    async def acquire(self, standing_by: asyncio.Event) -> None:
        """Return once this replica holds the Lease; ``standing_by`` is set after the first
        look at it (the replica works: it stands by)."""
        where = f"{self.namespace}/{self.name}"
        log.info("leader election: %s stands by for Lease %s", self.identity, where)
        holder = ""
        # the first failure is logged, then one line a minute while they go on
        failures = RateLimitedLog(log, f"failed looks at Lease {where}", interval=60.0)
        failing = False
        while True:
            delay = self.timings.retry_period
            try:
                verdict = await self._attempt(self.timings.renew_deadline)
            except Exception as exc:  # the API's answer, a timeout, a refused connection
                if not failing:
                    log.warning("leader election: cannot look at Lease %s: %s", where, _why(exc))
                else:
                    failures.add(_why(exc))
                    failures.flush()
                failing = True
            else:
                failing = False
                standing_by.set()
                if verdict is None:
                    break
                if verdict.holder != holder:
                    holder = verdict.holder
                    log.info(
                        "leader election: %s leads; Lease %s expires in %.1f s unless renewed",
                        holder, where, verdict.expires_in,
                    )  # fmt: skip
                # look again as the Lease expires rather than up to a retry period later
                delay = min(delay, verdict.expires_in + 0.01)
            await asyncio.sleep(delay)
        log.info("leader election: %s acquired Lease %s: acting now", self.identity, where)
        self._show(leading=True)
        await self._event("LeaderElection", f"{self.identity} became leader")

    async def hold(self) -> None:
        """Renew the Lease every retry period; return when leadership is lost: no renewal
        within the renew deadline, or another replica took the Lease."""
        while True:
            # a renewal that failed fast must not let the deadline pass unnoticed in the sleep
            until_deadline = self.election.deadline() - self._clock()
            await asyncio.sleep(max(0.0, min(self.timings.retry_period, until_deadline)))
            remaining = self.election.deadline() - self._clock()
            if remaining > 0:
                try:
                    verdict = await asyncio.wait_for(self._attempt(remaining), remaining)
                except Exception as exc:  # whatever it was, the renewal failed
                    log.warning("leader election: cannot renew the Lease: %s", _why(exc))
                else:
                    if verdict is not None:
                        log.error("leader election: %s holds the Lease now", verdict.holder)
            if self.election.lost(self._clock()):
                break
        log.error(
            "leader election: %s lost Lease %s/%s (not renewed within %g s): stopping",
            self.identity, self.namespace, self.name, self.timings.renew_deadline,
        )  # fmt: skip
        self._show(leading=False)

    async def release(self) -> None:
        """Give the Lease up on a clean stop, so a standby takes over at once."""
        timeout = self.timings.retry_period
        try:
            found = await asyncio.to_thread(kube.read_lease, self.namespace, self.name, timeout)
            lease = lease_from_api(found) if found is not None else None
            write = self.election.release(datetime.now(UTC), lease) if lease else None
            if write is not None:
                await self._write(write, timeout)
                log.info("leader election: %s released the Lease", self.identity)
        except Exception as exc:  # the Lease then expires by itself
            log.warning("leader election: cannot release the Lease: %s", _why(exc))
        self._show(leading=False)

    async def _attempt(self, timeout: float) -> Wait | None:
        """Read the Lease and take or renew it as the election decides; the Wait when
        another replica holds it."""
        started = self._clock()
        found = await asyncio.to_thread(kube.read_lease, self.namespace, self.name, timeout)
        lease = lease_from_api(found) if found is not None else None
        decision = self.election.decide(lease, self._clock(), datetime.now(UTC))
        if isinstance(decision, Wait):
            return decision
        await self._write(decision, max(0.1, timeout - (self._clock() - started)))
        self.election.written(started)
        return None

    async def _write(self, write: Write, timeout: float) -> None:
        await asyncio.to_thread(
            kube.write_lease, self.namespace, self.name, write.spec, write.version, timeout
        )

    async def _event(self, reason: str, message: str) -> None:
        """The Event is a courtesy: failing to post it changes nothing (logged)."""
        try:
            await asyncio.to_thread(
                kube.post_lease_event, self.namespace, self.name, reason, message,
                EVENT_SOURCE, self.timings.retry_period,
            )  # fmt: skip
        except Exception as exc:
            log.warning("leader election: cannot post the Event: %s", _why(exc))

    def _show(self, *, leading: bool) -> None:
        if self._gauge is not None:
            self._gauge.labels(f"{self.namespace}/{self.name}", self.identity).set(int(leading))


def _why(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    return f"{type(exc).__name__}: {reason or exc}"

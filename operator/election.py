"""Leader election on a ``coordination.k8s.io/v1`` Lease, as decisions (sans-I/O).

The client-go way (``k8s.io/client-go/tools/leaderelection``): a replica that finds the Lease
free, expired or its own writes itself in as the holder; the leader renews it every retry
period; a standby reads it every retry period and waits. Expiry is judged by the standby's
own monotonic clock, from when it last *saw the Lease change* (its holder or resourceVersion),
never from the holder's ``renewTime``: two machines' wall clocks may disagree by more than a
lease, but each clock measures its own seconds well enough. A leader that has not renewed for
``renew_deadline`` must stop acting; ``lease_duration - renew_deadline`` is the margin in which
it stops before a standby can take the Lease over.

This module takes facts (the Lease as read, the clock) and returns what to do; the loop that
reads and writes the Lease is :mod:`.leadership`, the API calls are in :mod:`.kube`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


@dataclass(frozen=True)
class Timings:
    """The three durations of an election, in seconds (client-go's names)."""

    lease_duration: float
    """How long a standby waits after the Lease last changed before it takes it over."""
    renew_deadline: float
    """How long a leader goes on acting without a successful renewal."""
    retry_period: float
    """How often the leader renews and a standby looks."""

    def __post_init__(self) -> None:
        if not self.lease_duration > self.renew_deadline > self.retry_period > 0:
            raise ValueError(
                "leader election needs lease duration > renew deadline > retry period > 0, "
                f"got {self.lease_duration:g} / {self.renew_deadline:g} / {self.retry_period:g}"
            )


@dataclass(frozen=True)
class LeaseRecord:
    """What a Lease says (its ``spec`` and ``resourceVersion``)."""

    holder: str
    """``holderIdentity``; empty when nobody holds it (released)."""
    duration: float | None
    """``leaseDurationSeconds`` as its holder wrote it."""
    acquire_time: str | None
    transitions: int
    version: str
    """``resourceVersion``: a write is refused (409) if the Lease changed since it was read."""


@dataclass(frozen=True)
class Write:
    """Take or renew the Lease: write ``spec``; create it when ``version`` is None."""

    spec: dict[str, Any]
    version: str | None
    acquiring: bool
    """A new term for this replica (not a renewal of a term it is in)."""


@dataclass(frozen=True)
class Wait:
    """Another replica holds the Lease: stand by."""

    holder: str
    expires_in: float
    """Seconds until the Lease expires, if its holder does not renew it."""


def lease_from_api(lease: dict[str, Any]) -> LeaseRecord:
    """The facts of a Lease object (as the API serves it, camelCase keys)."""
    spec = lease.get("spec") or {}
    duration = spec.get("leaseDurationSeconds")
    return LeaseRecord(
        holder=str(spec.get("holderIdentity") or ""),
        duration=float(duration) if duration is not None else None,
        acquire_time=_time_text(spec.get("acquireTime")),
        transitions=int(spec.get("leaseTransitions") or 0),
        version=str((lease.get("metadata") or {}).get("resourceVersion") or ""),
    )


def micro_time(when: datetime) -> str:
    """A Lease's ``MicroTime`` (RFC 3339 with microseconds, UTC)."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Election:
    """One replica's view of the election: whether it leads, and what to do next."""

    def __init__(self, identity: str, timings: Timings) -> None:
        if not identity:
            raise ValueError("a leader election needs a non-empty identity")
        self.identity = identity
        self.timings = timings
        self._leading = False
        self._renewed_at = 0.0
        self._observed: tuple[str, str] | None = None
        self._observed_at = 0.0

    @property
    def leading(self) -> bool:
        return self._leading

    def decide(self, lease: LeaseRecord | None, now: float, wall: datetime) -> Write | Wait:
        """What to do with the Lease as just read (None: there is none) at monotonic ``now``
        and wall-clock ``wall`` (written as ``renewTime``)."""
        if lease is None:
            return Write(self._spec(wall, wall, 0), None, acquiring=not self._leading)
        seen = (lease.holder, lease.version)
        if seen != self._observed:
            self._observed, self._observed_at = seen, now
        if lease.holder and lease.holder != self.identity:
            duration = lease.duration or self.timings.lease_duration
            expires_in = self._observed_at + duration - now
            if expires_in > 0:
                self._leading = False
                return Wait(lease.holder, expires_in)
        if lease.holder == self.identity and self._leading:
            acquired = lease.acquire_time or micro_time(wall)
            return Write(self._spec(acquired, wall, lease.transitions), lease.version, False)
        # free, expired, or ours from an earlier run of this identity: a new term
        transitions = lease.transitions + (1 if lease.holder != self.identity else 0)
        return Write(self._spec(wall, wall, transitions), lease.version, acquiring=True)

    def written(self, started: float) -> None:
        """A :class:`Write` succeeded; ``started`` is when its read began (the renewal is
        counted from then, not from the answer: the server may have written it any time in
        between)."""
        self._leading = True
        self._renewed_at = started

    def deadline(self) -> float:
        """The monotonic time by which the leader must have renewed, or stop acting."""
        return self._renewed_at + self.timings.renew_deadline

    def lost(self, now: float) -> bool:
        """The leader missed its renew deadline (or was never leading)."""
        if self._leading and now >= self.deadline():
            self._leading = False
        return not self._leading

    def release(self, wall: datetime, lease: LeaseRecord) -> Write | None:
        """Give the Lease up on a clean stop, so a standby takes over at once (client-go's
        ``ReleaseOnCancel``); None when this replica does not hold it."""
        if not self._leading or lease.holder != self.identity:
            return None
        self._leading = False
        spec = {
            "holderIdentity": None,
            "leaseDurationSeconds": 1,
            "acquireTime": lease.acquire_time,
            "renewTime": micro_time(wall),
            "leaseTransitions": lease.transitions,
        }
        return Write(spec, lease.version, acquiring=False)

    def _spec(self, acquired: datetime | str, wall: datetime, transitions: int) -> dict[str, Any]:
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": math.ceil(self.timings.lease_duration),
            "acquireTime": acquired if isinstance(acquired, str) else micro_time(acquired),
            "renewTime": micro_time(wall),
            "leaseTransitions": transitions,
        }


def _time_text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return micro_time(value)
    return str(value)

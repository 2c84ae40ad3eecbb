"""Keeping a source's conditions true: a level-based check run on a timer.

Edge-triggered handlers cannot notice what does not happen (a bridge that stops reporting),
so every few seconds the operator gathers the facts, derives the conditions and patches them
when they changed, posting an Event when the connection comes up, goes down or gives up.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from ws2kafka.bridge.stats import ConnectionState

from .conditions import (
    Facts,
    PodCreating,
    PodProblem,
    derive,
    event_problem,
    merge_conditions,
)
from .controls import is_paused, paused_message
from .events import EventLimiter
from .reconcile import Rejections, spec_problems
from .resources import child_name
from .settings import OperatorSettings

log = logging.getLogger(__name__)


def heartbeat_age(connection: dict[str, Any] | None, now: datetime) -> float | None:
    """Seconds since the bridge's last report, from ``status.connection.heartbeatTime``."""
    stamp = (connection or {}).get("heartbeatTime")
    if not stamp:
        return None
    reported = datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
    return max(0.0, (now - reported).total_seconds())


#: The operator's index of bridge Deployments (kopf keeps it current from a watch): for
#: (namespace, Deployment name), whether it has an available replica.
DeploymentIndex = Mapping[tuple[str, str], Iterable[bool]]


def is_available(deployment_status: Mapping[str, Any]) -> bool:
    """Whether a Deployment's status shows an available replica."""
    return int(deployment_status.get("availableReplicas") or 0) > 0


def deployment_available(
    deployments: DeploymentIndex | None, namespace: str, name: str
) -> bool | None:
    """Whether the source's bridge Deployment is available; None when it does not exist (or
    in inline mode, which has none). Read from the index: no API call per check."""
    if deployments is None:
        return None
    found = deployments.get((namespace, child_name(name)))
    return None if found is None else any(found)


#: The operator's index of bridge Pods: for (namespace, source name), what keeps each of its
#: pods from running, or that its containers are being created (None for a pod that is
#: fine). Only this small verdict is kept per pod.
PodIndex = Mapping[tuple[str, str], Iterable[PodProblem | PodCreating | None]]


def bridge_pod_problem(pods: PodIndex | None, namespace: str, name: str) -> PodProblem | None:
    """The first problem among the source's bridge pods (a rollout may briefly have two)."""
    if pods is None:
        return None
    found = pods.get((namespace, name), ())
    return next((verdict for verdict in found if isinstance(verdict, PodProblem)), None)


#: A pod's containers may take this long to be created before its Events are read: a
#: normal start needs a few seconds, a missing volume source stays for ever.
CREATING_GRACE_SECONDS = 10.0


def stuck_creating(
    pods: PodIndex | None, namespace: str, name: str, now: datetime
) -> PodCreating | None:
    """A bridge pod of the source whose containers have been created for longer than
    :data:`CREATING_GRACE_SECONDS`."""
    if pods is None:
        return None
    creating = (v for v in pods.get((namespace, name), ()) if isinstance(v, PodCreating))
    return next(
        (pod for pod in creating if (now - pod.created).total_seconds() > CREATING_GRACE_SECONDS),
        None,
    )


#: Reads a pod's Warning Events: (namespace, pod name) -> the Events as plain dicts.
WarningEvents = Callable[[str, str], list[dict[str, Any]]]


class PodEvents:
    """Why a bridge pod stays in ContainerCreating, from its Warning Events.

    The kubelet writes the reason of a failed volume mount (a missing Secret for
    ``spec.tls``) only in Events, not in the pod's status. Reading them costs an API call, so
    it is made only for a source whose Deployment is unavailable and whose pod is stuck
    (:func:`stuck_creating`), and at most once per ``every`` seconds per pod.

    The conditions timer never waits for that call: on a busy API server a list of Events
    takes seconds, and 50 pods starting at once are all "stuck" for a while; timers that each
    awaited their read, in a queue for a few threads, held every source's conditions back
    for as long. A look-up answers from memory at once and starts a read in the background
    when the answer is missing or old, at most ``reads`` of them at a time for all sources;
    a later check gets its result."""

    def __init__(self, fetch: WarningEvents, every: float = 10.0, reads: int = 2) -> None:
        self._fetch = fetch
        self._every = every
        self._seen: dict[tuple[str, str], tuple[float, PodProblem | None]] = {}
        self._reading: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._slots = asyncio.Semaphore(reads)

    def problem(self, namespace: str, pod: str) -> PodProblem | None:
        """What the pod's Events said at the last read (None before the first); called on
        the event loop, where a read it starts runs."""
        now = time.monotonic()
        key = (namespace, pod)
        cached = self._seen.get(key)
        if (cached is None or now - cached[0] >= self._every) and key not in self._reading:
            # forget pods not asked about for a while (started, replaced or deleted)
            self._seen = {k: v for k, v in self._seen.items() if now - v[0] < 6 * self._every}
            self._reading[key] = asyncio.create_task(self._read(key), name=f"events of {pod}")
        return None if cached is None else cached[1]

    async def _read(self, key: tuple[str, str]) -> None:
        namespace, pod = key
        try:
            async with self._slots:
                try:
                    events = await asyncio.to_thread(self._fetch, namespace, pod)
                except Exception as exc:  # e.g. an older chart's RBAC: the condition stays generic
                    log.warning("%s/%s: cannot read the pod's Events: %s", namespace, pod, exc)
                    events = []
            self._seen[key] = (time.monotonic(), event_problem(pod, events))
        finally:
            del self._reading[key]


def pod_problem_of(
    pods: PodIndex | None,
    deployments: DeploymentIndex | None,
    namespace: str,
    name: str,
    pod_events: PodEvents,
) -> PodProblem | None:
    """Why the source's bridge pod does not run: from its status, else, while the Deployment
    is unavailable and the pod stuck in ContainerCreating, from its Warning Events (as last
    read: :class:`PodEvents`)."""
    problem = bridge_pod_problem(pods, namespace, name)
    if problem is not None or deployment_available(deployments, namespace, name) is not False:
        return problem
    stuck = stuck_creating(pods, namespace, name, datetime.now(UTC))
    return None if stuck is None else pod_events.problem(namespace, stuck.pod)


def gather_facts(
    spec: dict[str, Any],
    status: dict[str, Any],
    meta: dict[str, Any],
    settings: OperatorSettings,
    now: datetime,
    rejection: str | None,
    available: bool | None,
    pod_problem: PodProblem | None = None,
) -> Facts:
    connection = status.get("connection")
    auto = spec.get("autoRestart") or {}
    return Facts(
        generation=int(meta.get("generation") or 0),
        spec_error=spec_problems(spec) or rejection,
        suspended=bool(spec.get("suspend")),
        connection=connection,
        heartbeat_age=heartbeat_age(connection, now),
        heartbeat_timeout=settings.heartbeat_timeout_seconds,
        deployment_available=available,
        pod_problem=pod_problem,
        last_gap=status.get("lastGap"),
        subscription_checked=spec.get("subscription") is not None,
        paused=paused_message(str(meta.get("name") or "NAME")) if is_paused(meta) else None,
        authentication_checked=spec.get("login") is not None or bool(spec.get("tokens")),
        auto_restart=(status.get("autoRestart") or {}) if auto.get("enabled") else None,
        max_restarts=int(auto.get("maxRestarts") or 0),
    )


class ConditionWrites:
    """The conditions the timer last patched, per source, for a while.

    kopf hands the timer the status as its watch last showed it. Under load that view lags
    behind the timer's own patches, and a check against it would patch the same conditions
    again (and post the same Events): with 1,000 sources created at once that was nine
    status patches per source, whose watch events made the view lag further. What was
    written in the last ``trust_seconds`` is taken as written; after that the view decides
    again, so a patch that was lost is made anew.
    """

    def __init__(
        self, trust_seconds: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._trust = trust_seconds
        self._clock = clock
        self._written: dict[tuple[str, str], tuple[object, float]] = {}

    def recently(self, source: tuple[str, str], written: object) -> bool:
        """Whether ``written`` is what was patched for ``source`` a moment ago."""
        found = self._written.get(source)
        return found is not None and found[0] == written and self._clock() - found[1] < self._trust

    def wrote(self, source: tuple[str, str], written: object) -> None:
        self._written[source] = (written, self._clock())

    def forget(self, source: tuple[str, str]) -> None:
        self._written.pop(source, None)


def refresh_conditions(
    body: Any,
    spec: dict[str, Any],
    status: dict[str, Any],
    meta: dict[str, Any],
    namespace: str,
    name: str,
    patch: Any,
    settings: OperatorSettings,
    events: EventLimiter,
    rejections: Rejections,
    deployments: DeploymentIndex | None,
    writes: ConditionWrites,
    problem: PodProblem | None = None,
) -> None:
    """Derive the conditions from the facts (``problem``: :func:`pod_problem_of`); patch
    them (and post Events) when they change, unless they were just patched (``writes``)."""
    now = datetime.now(UTC)
    rejection = rejections.get((namespace, name))
    available = deployment_available(deployments, namespace, name)
    facts = gather_facts(spec, status, meta, settings, now, rejection, available, problem)
    previous = list(status.get("conditions") or [])
    conditions = merge_conditions(previous, derive(facts), facts.generation, now)
    derived = (_without_times(conditions), facts.generation)
    shown = (_without_times(previous), status.get("observedGeneration"))
    source = (namespace, name)
    if derived == shown or writes.recently(source, derived):
        return
    patch.status["conditions"] = conditions
    patch.status["observedGeneration"] = facts.generation
    writes.wrote(source, derived)
    _post_transitions(body, previous, conditions, events)


def _without_times(conditions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in cond.items() if k != "lastTransitionTime"} for cond in conditions]


def _post_transitions(
    body: Any,
    previous: list[dict[str, Any]],
    current: list[dict[str, Any]],
    events: EventLimiter,
) -> None:
    before = {cond["type"]: cond for cond in previous}
    for cond in current:
        old = before.get(cond["type"], {})
        if cond["type"] == "Connected" and cond["reason"] == ConnectionState.GAVE_UP:
            # Connected was False already while the bridge backed off: the give-up is a
            # change of reason, not of status
            if old.get("reason") != ConnectionState.GAVE_UP:
                events.post(body, reason="GaveUp", message=cond["message"], warning=True)
            continue
        if old.get("status") == cond["status"]:
            continue
        if cond["type"] in ("Subscribed", "Authenticated") and cond["status"] == "False":
            events.post(body, reason=cond["reason"], message=cond["message"], warning=True)
        if cond["type"] != "Connected":
            continue
        if cond["status"] == "True":
            events.post(body, reason="Connected", message=cond["message"])
        elif old:
            events.post(body, reason="Disconnected", message=cond["message"], warning=True)

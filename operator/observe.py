"""Keeping a source's conditions true: a level-based check run on a timer.

Edge-triggered handlers cannot notice what does not happen (a bridge that stops reporting),
so every few seconds the operator gathers the facts, derives the conditions and patches them
when they changed, posting an Event when the connection comes up, goes down or gives up.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from ws2kafka.bridge.stats import ConnectionState

from .conditions import Facts, PodProblem, derive, merge_conditions
from .events import EventLimiter
from .reconcile import Rejections, spec_problems
from .resources import child_name
from .settings import OperatorSettings


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
#: pods from running (None for a pod that is fine). Only this small verdict is kept per pod.
PodIndex = Mapping[tuple[str, str], Iterable[PodProblem | None]]


def bridge_pod_problem(pods: PodIndex | None, namespace: str, name: str) -> PodProblem | None:
    """The first problem among the source's bridge pods (a rollout may briefly have two)."""
    if pods is None:
        return None
    return next((problem for problem in pods.get((namespace, name), ()) if problem), None)


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
    )


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
    pods: PodIndex | None = None,
) -> None:
    """Derive the conditions from the facts; patch them (and post Events) when they change."""
    now = datetime.now(UTC)
    rejection = rejections.get((namespace, name))
    available = deployment_available(deployments, namespace, name)
    problem = bridge_pod_problem(pods, namespace, name)
    facts = gather_facts(spec, status, meta, settings, now, rejection, available, problem)
    previous = list(status.get("conditions") or [])
    conditions = merge_conditions(previous, derive(facts), facts.generation, now)
    if (
        _without_times(conditions) == _without_times(previous)
        and status.get("observedGeneration") == facts.generation
    ):
        return
    patch.status["conditions"] = conditions
    patch.status["observedGeneration"] = facts.generation
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
        if old.get("status") == cond["status"]:
            continue
        if cond["type"] == "Subscribed" and cond["status"] == "False":
            events.post(body, reason=cond["reason"], message=cond["message"], warning=True)
        if cond["type"] != "Connected":
            continue
        if cond["status"] == "True":
            events.post(body, reason="Connected", message=cond["message"])
        elif cond["reason"] == ConnectionState.GAVE_UP:
            events.post(body, reason="GaveUp", message=cond["message"], warning=True)
        elif old:
            events.post(body, reason="Disconnected", message=cond["message"], warning=True)

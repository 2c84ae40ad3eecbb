"""Deriving a source's conditions from facts, without I/O.

The bridge reports facts (``status.connection``: state, counters, heartbeat time, and the
Kafka side in ``status.connection.kafka``); the operator turns them, with what it knows of the
spec, the Deployment and its pods (what the kubelet wrote in their status:
:func:`pod_problem`, or in the Warning Events of a pod whose containers cannot be created:
:func:`event_problem`), into the conditions ``Ready`` (the summary: connected *and* producing),
``Connected`` (the feed), ``Authenticated`` (the server's answer to the login, only when
``spec.login`` describes one), ``Subscribed`` (the server's answer to the subscription, only
when ``spec.subscription`` says what it looks like), ``Producing`` (Kafka), ``Progressing``,
``Degraded`` and, only while the ``ws2kafka.dev/pause-reconciliation`` annotation is
``"true"``, ``ReconciliationPaused``. A condition keeps its ``lastTransitionTime`` until its
status changes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ws2kafka.bridge.kafka_health import KafkaReason
from ws2kafka.bridge.login import LoginState
from ws2kafka.bridge.stats import ConnectionState
from ws2kafka.bridge.subscription import SubscriptionState

CONDITION_TYPES = (
    "Ready",
    "Connected",
    "Authenticated",
    "Subscribed",
    "Producing",
    "Progressing",
    "Degraded",
    "ReconciliationPaused",
)

Condition = dict[str, Any]


#: Longest message taken from a pod: a termination message may hold the last 80 log lines.
MAX_POD_MESSAGE = 1024
#: Longest part of a termination message kept: its end, where a bridge that cannot start
#: writes why (the log lines before it are the run's start).
MAX_TERMINATION_MESSAGE = 640
#: Container waiting reasons of a pod on its way up: nothing is wrong (yet).
_STARTING = frozenset({"ContainerCreating", "PodInitializing"})


@dataclass(frozen=True)
class PodProblem:
    """Why a bridge pod does not run, in the kubelet's words (small: kept per pod in an index)."""

    pod: str
    reason: str
    """``CrashLoopBackOff``, ``ImagePullBackOff``, ``CreateContainerConfigError``,
    ``OOMKilled``, ``Unschedulable``, ``Evicted``..."""
    message: str
    """The kubelet's message and the last termination message of the container."""


def pod_problem(pod: str, status: Mapping[str, Any]) -> PodProblem | None:
    """What keeps a bridge pod from running, from its ``status``; None while nothing does.

    The last termination (reason, exit code, message) is kept even while the container waits
    to be restarted: a bridge that dies at startup writes its fatal error there. A crash
    caused by the memory limit is reported as ``OOMKilled`` rather than the generic back-off.
    """
    if status.get("reason") == "Evicted":
        return PodProblem(pod, "Evicted", _bounded(str(status.get("message") or "evicted")))
    for container in status.get("containerStatuses") or []:
        state = container.get("state") or {}
        waiting = state.get("waiting") or {}
        ended = state.get("terminated") or (container.get("lastState") or {}).get("terminated")
        if waiting.get("reason") in _STARTING or not (waiting or state.get("terminated")):
            continue
        reason = str(waiting.get("reason") or (ended or {}).get("reason") or "Terminated")
        parts = [f"{reason}: {waiting['message']}" if waiting.get("message") else reason]
        if ended:
            parts.append(_termination(ended))
            if ended.get("reason") == "OOMKilled":
                reason = "OOMKilled"
        return PodProblem(pod, reason, _bounded(f"pod {pod}: " + "; ".join(parts)))
    for condition in status.get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            reason = str(condition.get("reason") or "Unschedulable")
            message = f"pod {pod}: {condition.get('message') or 'not scheduled'}"
            return PodProblem(pod, reason, _bounded(message))
    return None


def _termination(ended: Mapping[str, Any]) -> str:
    text = f"last exit code {ended.get('exitCode')} ({ended.get('reason') or 'no reason'})"
    message = str(ended.get("message") or "").strip()
    if len(message) > MAX_TERMINATION_MESSAGE:
        message = "…" + message[-(MAX_TERMINATION_MESSAGE - 1) :]
    return f"{text}: {message}" if message else text


@dataclass(frozen=True)
class PodCreating:
    """A bridge pod whose containers are being created: normal for a few seconds, but a pod
    that stays so (a Secret or ConfigMap of a volume missing: ``FailedMount``) has its
    reason only in its Warning Events, which the operator then reads (:func:`event_problem`)."""

    pod: str
    created: datetime
    """The pod's ``creationTimestamp``."""


def pod_verdict(
    pod: str, created: str | None, status: Mapping[str, Any]
) -> PodProblem | PodCreating | None:
    """What the operator keeps of a bridge pod: its problem, or that its containers are
    being created (the pod is scheduled and none of its containers has started), or None."""
    problem = pod_problem(pod, status)
    if problem is not None or not created:
        return problem
    scheduled = any(
        condition.get("type") == "PodScheduled" and condition.get("status") == "True"
        for condition in status.get("conditions") or []
    )
    containers = status.get("containerStatuses") or []
    creating = all(
        ((container.get("state") or {}).get("waiting") or {}).get("reason") in _STARTING
        for container in containers
    )
    if status.get("phase") == "Pending" and scheduled and creating:
        return PodCreating(pod, datetime.fromisoformat(created.replace("Z", "+00:00")))
    return None


def event_problem(pod: str, events: Sequence[Mapping[str, Any]]) -> PodProblem | None:
    """The newest of a pod's Warning Events as its problem (``FailedMount``,
    ``FailedCreatePodSandBox``...), with the count the kubelet keeps of its repetitions."""
    if not events:
        return None
    newest = max(events, key=_event_time)
    reason = str(newest.get("reason") or "Warning")
    count = int(newest.get("count") or (newest.get("series") or {}).get("count") or 1)
    times = f" ({count} times)" if count > 1 else ""
    text = str(newest.get("message") or "").strip()
    message = f"pod {pod}: {reason}{times}" + (f": {text}" if text else "")
    return PodProblem(pod, reason, _bounded(message))


def _event_time(event: Mapping[str, Any]) -> str:
    """When an Event last happened (RFC 3339 strings of one format compare as times)."""
    series = event.get("series") or {}
    return str(
        series.get("lastObservedTime")
        or event.get("lastTimestamp")
        or event.get("eventTime")
        or (event.get("metadata") or {}).get("creationTimestamp")
        or ""
    )


def _bounded(message: str) -> str:
    if len(message) <= MAX_POD_MESSAGE:
        return message
    return message[: MAX_POD_MESSAGE - 1] + "…"


@dataclass(frozen=True)
class Facts:
    """What is known about one source at one moment."""

    generation: int
    spec_error: str | None
    suspended: bool
    connection: dict[str, Any] | None
    """``status.connection`` as the bridge last reported it."""
    heartbeat_age: float | None
    """Seconds since the bridge's last report (None: it never reported)."""
    heartbeat_timeout: float
    deployment_available: bool | None
    """Pod mode: whether the Deployment has an available replica; inline mode: None."""
    pod_problem: PodProblem | None = None
    """Pod mode: why a bridge pod of the source cannot run, as its status says."""
    last_gap: dict[str, Any] | None = None
    """``status.lastGap`` as the bridge last reported it."""
    subscription_checked: bool = False
    """``spec.subscription`` is set: the server's answer is followed (``Subscribed``)."""
    paused: str | None = None
    """While reconciliation is paused: the condition's message (how to resume)."""
    authentication_checked: bool = False
    """``spec.login`` or ``spec.tokens`` is set: the server's answer to the login, and the
    token fetches, are followed (``Authenticated``)."""
    auto_restart: Mapping[str, Any] | None = None
    """While ``spec.autoRestart.enabled``: ``status.autoRestart`` (None otherwise: a bridge
    that gave up is then not the operator's to restart)."""
    max_restarts: int = 0
    """``spec.autoRestart.maxRestarts`` (0: no limit)."""


@dataclass(frozen=True)
class Verdict:
    status: str
    reason: str
    message: str


def derive(facts: Facts) -> dict[str, Verdict]:
    """Every condition's status, reason and message for these facts."""
    state = (facts.connection or {}).get("state")
    reporting = facts.heartbeat_age is not None and facts.heartbeat_age <= facts.heartbeat_timeout
    connected = reporting and state == ConnectionState.CONNECTED
    verdicts = {
        "Ready": _ready(facts, state, reporting),
        "Connected": _connected(facts, state, reporting, connected),
        "Producing": _producing(facts, reporting),
        "Progressing": _progressing(facts, state, reporting),
        "Degraded": _degraded(facts, state),
    }
    if facts.subscription_checked:
        verdicts["Subscribed"] = _subscribed(facts, reporting)
    if facts.paused is not None:
        verdicts["ReconciliationPaused"] = Verdict("True", "ReconciliationPaused", facts.paused)
    if facts.authentication_checked:
        verdicts["Authenticated"] = _authenticated(facts, reporting)
    return verdicts


def _authenticated(facts: Facts, reporting: bool) -> Verdict:
    """The last login's answer, from ``status.connection.authentication``."""
    return _answered(
        facts,
        reporting,
        "authentication",
        (LoginState.AUTHENTICATED, LoginState.PENDING),
        "login",
        "no login reported yet",
    )


def _subscribed(facts: Facts, reporting: bool) -> Verdict:
    """The current connection's answer, from ``status.connection.subscription``."""
    return _answered(
        facts,
        reporting,
        "subscription",
        (SubscriptionState.SUBSCRIBED, SubscriptionState.PENDING),
        "subscription",
        "no subscription answer reported yet",
    )


def _answered(
    facts: Facts,
    reporting: bool,
    field: str,
    states: tuple[str, str],
    request: str,
    none_yet: str,
) -> Verdict:
    """The server's answer to a ``request`` (the login, the subscription) reported under
    ``status.connection.<field>``; ``states``: its accepted and its pending state. True once
    accepted; a refusal stays False while the next attempt waits (its backoff) or is pending
    (reconnected after a refusal: still refused until the server says otherwise)."""
    accepted, pending = states
    if facts.suspended:
        return Verdict("False", "Suspended", "spec.suspend is true")
    answer = (facts.connection or {}).get(field)
    if not reporting or not isinstance(answer, dict):
        return Verdict("Unknown", "NotConnected", none_yet)
    state = str(answer.get("state") or "Unknown")
    message = str(answer.get("message") or "")
    if state == accepted:
        return Verdict("True", state, message)
    failure = answer.get("lastFailure")
    if state == pending and isinstance(failure, dict):
        return Verdict("False", str(failure.get("state")), str(failure.get("message") or ""))
    if state == pending:
        return Verdict("Unknown", state, f"waiting for the server's answer to the {request}")
    return Verdict("False", state, message)


def _ready(facts: Facts, state: str | None, reporting: bool) -> Verdict:
    last_error = (facts.connection or {}).get("lastError") or ""
    if facts.spec_error:
        return Verdict("False", "SpecInvalid", facts.spec_error)
    if facts.suspended:
        return Verdict("False", "Suspended", "spec.suspend is true: no bridge runs")
    restartable = facts.auto_restart is not None and facts.pod_problem is None
    if state == ConnectionState.GAVE_UP and restartable:
        # the bridge ended and stopped reporting (a pod stays, not ready): its last word
        # holds until the restart
        message = (last_error or f"bridge is {state}") + _auto_restart_note(facts)
        return Verdict("False", state, message)
    if facts.deployment_available is False:
        return _unavailable(facts)
    if facts.heartbeat_age is None:
        return Verdict("False", "BridgeStarting", "waiting for the bridge's first report")
    if not reporting:
        # the time of the last report, not its age: a message that changes at every check
        # would be patched at every check, for every silent source
        last = (facts.connection or {}).get("heartbeatTime")
        return Verdict(
            "False",
            "BridgeNotReporting",
            f"no report from the bridge since {last} (limit {facts.heartbeat_timeout:.0f} s)",
        )
    if state != ConnectionState.CONNECTED:
        return Verdict("False", state or "Unknown", last_error or f"bridge is {state}")
    if facts.subscription_checked:
        subscribed = _subscribed(facts, reporting)
        if subscribed.status != "True":
            reason = subscribed.reason
            if reason == SubscriptionState.PENDING:
                return Verdict("False", "SubscriptionPending", "waiting for the server's answer")
            return Verdict("False", reason, subscribed.message)
    kafka = _kafka(facts)
    if kafka is not None and kafka.get("reason") != KafkaReason.PRODUCING:
        return Verdict("False", str(kafka.get("reason")), str(kafka.get("message") or ""))
    return Verdict("True", "Streaming", "connected and producing to Kafka")


def _auto_restart_note(facts: Facts) -> str:
    """What ``spec.autoRestart`` does about a bridge that gave up: when it starts again, or
    that it stays given up."""
    auto = facts.auto_restart or {}
    count = int(auto.get("count") or 0)
    if auto.get("nextRestartTime"):
        return f"; automatic restart {count + 1} at {auto['nextRestartTime']}"
    gave_up_at = (facts.connection or {}).get("since")
    restarted_at = auto.get("lastRestartTime")
    if count and auto.get("lastGiveUpTime") == gave_up_at and str(restarted_at) >= str(gave_up_at):
        # pod mode: this give-up's restart is made, the new pod has not reported yet (the
        # times are the bridge's and the operator's RFC 3339 UTC: they compare as text)
        return f"; automatic restart {count} made at {restarted_at}"
    if facts.max_restarts and count >= facts.max_restarts:
        return f"; no more automatic restarts: maxRestarts ({facts.max_restarts}) reached"
    return ""


def _kafka(facts: Facts) -> dict[str, Any] | None:
    """``status.connection.kafka``, the bridge's view of Kafka (absent from old bridges)."""
    kafka = (facts.connection or {}).get("kafka")
    return kafka if isinstance(kafka, dict) else None


def _producing(facts: Facts, reporting: bool) -> Verdict:
    if facts.suspended:
        return Verdict("False", "Suspended", "spec.suspend is true")
    kafka = _kafka(facts)
    if not reporting or kafka is None:
        return Verdict("Unknown", "BridgeNotReporting", "no recent report of the Kafka side")
    reason = str(kafka.get("reason") or "Unknown")
    message = str(kafka.get("message") or "")
    return Verdict("True" if reason == KafkaReason.PRODUCING else "False", reason, message)


def _unavailable(facts: Facts) -> Verdict:
    """Ready when the Deployment has no available pod: the pod's own reason if it has one,
    else the bridge's last word if it could not start."""
    problem = facts.pod_problem
    if problem is not None:
        return Verdict("False", problem.reason, problem.message)
    connection = facts.connection or {}
    if connection.get("state") == ConnectionState.STARTUP_FAILED:
        failed = ConnectionState.STARTUP_FAILED.value
        return Verdict("False", failed, connection.get("lastError") or failed)
    return Verdict("False", "DeploymentUnavailable", "the bridge pod is not available")


def _unclean_exit(facts: Facts) -> Verdict | None:
    """Degraded while the bridge runs on the connection that followed an unclean end of its
    predecessor (killed with records buffered): the gap says what may have been lost."""
    gap = facts.last_gap or {}
    current = (facts.connection or {}).get("connectionId")
    if gap.get("error") != "UncleanExit" or not current or gap.get("newConnectionId") != current:
        return None
    return Verdict(
        "True", "UncleanExit", gap.get("closeReason") or "the previous bridge was killed"
    )


def _connections_down(connection: Mapping[str, Any]) -> Verdict | None:
    """Degraded while some of several connections are not connected: which, and why."""
    connections = connection.get("connections")
    if not isinstance(connections, dict):
        return None
    total = int(connections.get("total") or 0)
    connected = int(connections.get("connected") or 0)
    if total <= 1 or connected >= total:
        return None
    named = "; ".join(
        f"#{link.get('index')} {link.get('state')}"
        + (f" ({link.get('lastError')})" if link.get("lastError") else "")
        for link in connections.get("unhealthy") or []
    )
    return Verdict("True", "ConnectionsDown", f"{total - connected} of {total} down: {named}")


def _connected(facts: Facts, state: str | None, reporting: bool, connected: bool) -> Verdict:
    if connected:
        since = (facts.connection or {}).get("since")
        return Verdict("True", "Connected", f"connected since {since}")
    if facts.suspended:
        return Verdict("False", "Suspended", "spec.suspend is true")
    if not reporting:
        return Verdict("Unknown", "BridgeNotReporting", "no recent report from the bridge")
    last_error = (facts.connection or {}).get("lastError") or ""
    return Verdict("False", state or "Unknown", last_error or f"bridge is {state}")


def _progressing(facts: Facts, state: str | None, reporting: bool) -> Verdict:
    if facts.spec_error or facts.suspended:
        return Verdict("False", "Idle", "nothing to roll out")
    if facts.paused is not None:
        return Verdict(
            "False", "ReconciliationPaused", "spec changes wait until reconciliation resumes"
        )
    if facts.deployment_available is False and facts.pod_problem is not None:
        # the kubelet retries, but the pod will not come up without a change
        problem = facts.pod_problem
        return Verdict("False", problem.reason, f"the rollout is stuck: {problem.message}")
    if facts.deployment_available is False or not reporting:
        return Verdict("True", "RollingOut", "waiting for the bridge to start and report")
    if state in (ConnectionState.STARTING, ConnectionState.CONNECTING, ConnectionState.BACKOFF):
        return Verdict("True", state, f"bridge is {state}")
    return Verdict("False", "Stable", "the bridge runs the current spec")


def _degraded(facts: Facts, state: str | None) -> Verdict:
    connection = facts.connection or {}
    if state in (ConnectionState.AUTH_FAILED, ConnectionState.GAVE_UP):
        return Verdict("True", state, connection.get("lastError") or state)
    unclean = _unclean_exit(facts)
    if unclean is not None:
        return unclean
    down = _connections_down(connection)
    if down is not None:
        return down
    dropped = int(connection.get("messagesDropped") or 0)
    failed = int(connection.get("messagesFailed") or 0)
    if dropped or failed:
        return Verdict(
            "True",
            "MessagesLost",
            f"{dropped} frames dropped and {failed} deliveries failed since the bridge started",
        )
    return Verdict("False", "NoLoss", "nothing dropped, every delivery succeeded")


def merge_conditions(
    previous: list[Condition], verdicts: dict[str, Verdict], generation: int, now: datetime
) -> list[Condition]:
    """New conditions; ``lastTransitionTime`` moves only when a status changes."""
    before = {cond.get("type"): cond for cond in previous}
    stamp = now.isoformat(timespec="seconds").replace("+00:00", "Z")
    merged = []
    for kind in CONDITION_TYPES:
        verdict = verdicts.get(kind)
        if verdict is None:
            continue
        old = before.get(kind)
        changed = old is None or old.get("status") != verdict.status
        merged.append(
            {
                "type": kind,
                "status": verdict.status,
                "reason": verdict.reason,
                "message": verdict.message,
                "observedGeneration": generation,
                "lastTransitionTime": stamp
                if changed or old is None
                else old["lastTransitionTime"],
            }
        )
    return merged

"""The kopf handlers: thin decorators that delegate to the domain modules.

Handlers are registered on a registry built for the chosen mode, so a pod-mode operator has
no inline daemon and an inline operator creates no Deployments.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from typing import Any

import kopf

from ws2kafka.bridge.config import MAX_DRAIN_TIMEOUT_SECONDS

from . import constants as c
from . import kube
from .autorestart import streak_reset
from .conditions import PodCreating, PodProblem, pod_verdict
from .controls import PodControls, is_paused
from .events import EventLimiter
from .inline import InlineBridges, run_inline
from .observe import (
    ConditionWrites,
    PodEvents,
    is_available,
    pod_problem_of,
    refresh_conditions,
)
from .pod_autorestart import act_on_give_up
from .reconcile import Rejections, reconcile_source
from .settings import Mode, OperatorSettings

RESOURCE = (c.GROUP, c.VERSION, c.PLURAL)
#: Time an inline bridge gets after its daemon is told to stop, before kopf cancels it: the
#: longest drain a spec may ask for, plus time to close and report. A bridge bounds its own
#: drain by its ``drainTimeoutSeconds``, so this only cuts off one that hangs.
INLINE_STOP_SECONDS = MAX_DRAIN_TIMEOUT_SECONDS + 30.0


def configure_kopf(settings: kopf.OperatorSettings) -> None:
    """kopf's own bookkeeping stays out of the resource's status."""
    # handler progress and the last-handled spec live in annotations under our group
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=c.KOPF_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=c.KOPF_PREFIX, key="last-handled-configuration"
    )
    settings.persistence.finalizer = c.FINALIZER
    # only warnings from kopf's own logs become Events; ours are posted explicitly
    settings.posting.level = logging.WARNING
    # reconnect watches regularly so a silently dropped watch cannot stall the operator
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330


class RoutineSuccesses(logging.Filter):
    """Drops kopf's ``Handler '...' succeeded.`` line (INFO) for the handlers that run on
    every watch event and every timer tick: with 50 sources whose bridges report every
    second that was 150 lines a second that said nothing, and formatting them took a third
    of the operator's CPU per event. A failure is still logged, and so is every other
    handler's success (a reconcile, a resume)."""

    ROUTINE = frozenset(
        {f"Handler {c.HANDLER_EVENTS!r} succeeded.", f"Timer {c.HANDLER_CONDITIONS!r} succeeded."}
    )

    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg not in self.ROUTINE


def build_registry(settings: OperatorSettings, bridges: InlineBridges) -> kopf.OperatorRegistry:
    """The handlers for ``settings.mode``."""
    registry = kopf.OperatorRegistry()
    events = EventLimiter(settings.event_interval_seconds)
    rejections: Rejections = {}
    pod_events = PodEvents(kube.pod_warning_events)
    writes = ConditionWrites()

    @kopf.on.startup(registry=registry)
    def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
        configure_kopf(settings)

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # $KUBECONFIG / ~/.kube/config, else the pod's service account (kubernetes client)
        info: kopf.ConnectionInfo | None = kopf.login_via_client(**kwargs)
        return info

    @kopf.timer(
        *RESOURCE,
        id=c.HANDLER_CONDITIONS,
        interval=settings.condition_interval_seconds,
        when=still_known,
        registry=registry,
    )
    async def conditions(
        *,
        body: kopf.Body,
        spec: kopf.Spec,
        status: kopf.Status,
        meta: kopf.Meta,
        namespace: str | None,
        name: str,
        patch: kopf.Patch,
        bridge_deployments: kopf.Index[tuple[str, str], bool] | None = None,
        bridge_pods: kopf.Index[tuple[str, str], PodProblem | PodCreating | None] | None = None,
        **_: Any,
    ) -> None:
        assert namespace is not None  # the resource is namespaced
        # pod mode only: inline mode has neither index
        problem = pod_problem_of(bridge_pods, bridge_deployments, namespace, name, pod_events)
        current = dict(status)
        if settings.mode is Mode.POD:
            current = await act_on_give_up(body, spec, current, meta, time.time(), patch)
        refresh_conditions(
            body,
            dict(spec),
            current,
            dict(meta),
            namespace,
            name,
            patch,
            settings,
            events,
            rejections,
            bridge_deployments,
            writes,
            problem,
        )

    @kopf.index(*RESOURCE, id="known_sources", registry=registry)
    async def known_sources(*, namespace: str | None, name: str, **_: Any) -> dict[Source, bool]:
        # kopf drops a deleted source from its indexes before anything else sees the event
        return {(namespace or "", name): True}

    # pod mode only: what the source's annotations ask for
    controls: PodControls | None = None

    @kopf.on.event(*RESOURCE, id=c.HANDLER_EVENTS, registry=registry)
    async def every_event(
        *,
        type: str,
        body: kopf.Body,
        spec: kopf.Spec,
        meta: kopf.Meta,
        namespace: str | None,
        name: str,
        **_: Any,
    ) -> None:
        # async, and one handler for both jobs: it runs for every bridge report of every
        # source, and a sync handler costs a thread hop each time
        if type == "DELETED":
            events.forget(namespace or "", name)
            rejections.pop((namespace or "", name), None)
            writes.forget((namespace or "", name))
            if controls is not None:
                controls.forget(namespace or "", name)
            return
        # kopf's diffs leave out ws2kafka.dev/* annotations: every event is looked at, and
        # only one with something to carry out goes to a thread (API calls)
        if controls is not None and controls.concerns(meta, namespace or "", name):
            await asyncio.to_thread(
                controls.observe, body, dict(spec), dict(meta), namespace or "", name
            )

    if settings.mode is Mode.POD:
        # an index reaches the timer as the keyword argument named by its id
        @kopf.index(
            "apps",
            "v1",
            "deployments",
            id="bridge_deployments",
            labels={c.LABEL_MANAGED_BY: c.MANAGED_BY},
            registry=registry,
        )
        async def bridge_deployments(
            *, namespace: str | None, name: str, status: kopf.Status, **_: Any
        ) -> dict[tuple[str, str], bool]:
            # the conditions timer reads this instead of GETting each Deployment every check
            return {(namespace or "", name): is_available(status)}

        @kopf.index(
            "v1",
            "pods",
            id="bridge_pods",
            labels={c.LABEL_MANAGED_BY: c.MANAGED_BY, c.LABEL_COMPONENT: "bridge"},
            registry=registry,
        )
        async def bridge_pods(
            *,
            namespace: str | None,
            name: str,
            meta: kopf.Meta,
            labels: kopf.Labels,
            status: kopf.Status,
            **_: Any,
        ) -> dict[tuple[str, str], PodProblem | PodCreating | None]:
            # only the verdict is kept, not the pod: memory stays small with many sources
            source = labels.get(c.LABEL_INSTANCE, "")
            verdict = pod_verdict(name, meta.get("creationTimestamp"), status)
            return {(namespace or "", source): verdict}

        def apply_spec(
            body: Any, spec: dict[str, Any], namespace: str, name: str, applied: str | None = None
        ) -> str | None:
            return reconcile_source(
                body, spec, name, namespace, settings, events, rejections, applied=applied
            )

        def apply_and_record(body: Any, spec: dict[str, Any], namespace: str, name: str) -> None:
            """A resumed pause applies the spec outside a handler: it records the hash itself."""
            digest = apply_spec(body, spec, namespace, name)
            if digest is not None:
                kube.annotate(namespace, name, c.ANNOTATION_CHILDREN_HASH, digest)

        controls = PodControls(apply_and_record)

        # paused: the handlers skip the source, and the first event after the pause applies
        # the spec as it is then (PodControls)
        @kopf.on.resume(
            *RESOURCE, id=f"{c.HANDLER_RECONCILE}-resume", when=reconciling, registry=registry
        )
        @kopf.on.create(
            *RESOURCE, id=f"{c.HANDLER_RECONCILE}-create", when=reconciling, registry=registry
        )
        @kopf.on.update(
            *RESOURCE,
            id=f"{c.HANDLER_RECONCILE}-update",
            field="spec",
            when=reconciling,
            registry=registry,
        )
        def reconcile(
            *,
            body: kopf.Body,
            spec: kopf.Spec,
            status: kopf.Status,
            name: str,
            namespace: str | None,
            reason: str,
            patch: kopf.Patch,
            annotations: kopf.Annotations,
            **_: Any,
        ) -> None:
            assert namespace is not None
            # a resume (an operator restart) applies only children that would change; the
            # hash is recorded with kopf's own patch after the handler, so only once applied
            resuming = reason == kopf.Reason.RESUME
            recorded = annotations.get(c.ANNOTATION_CHILDREN_HASH) if resuming else None
            digest = apply_spec(body, dict(spec), namespace, name, recorded)
            if digest is not None:
                patch.metadata.annotations[c.ANNOTATION_CHILDREN_HASH] = digest
            reset = streak_reset(status) if reason == kopf.Reason.UPDATE else None
            if reset is not None:  # a spec change starts a new streak of automatic restarts
                patch.status["autoRestart"] = reset

    else:

        @kopf.daemon(
            *RESOURCE,
            id=c.HANDLER_INLINE,
            # on deletion or shutdown kopf first sets `stopped`: the bridge then drains into
            # Kafka; only a daemon still running after the backoff is cancelled
            cancellation_backoff=INLINE_STOP_SECONDS,
            cancellation_timeout=60,
            when=still_known,
            registry=registry,
        )
        async def inline(
            *,
            body: kopf.Body,
            spec: kopf.Spec,
            namespace: str | None,
            name: str,
            stopped: kopf.DaemonStopped,
            **_: Any,
        ) -> None:
            assert namespace is not None
            await run_inline(body, spec, namespace, name, stopped, settings, bridges)

    _without_finalizer(registry)
    return registry


def reconciling(*, meta: kopf.Meta, **_: Any) -> bool:
    """The filter of the reconcile handlers: reconciliation of the source is not paused."""
    return not is_paused(meta)


#: A source, by (namespace, name).
Source = tuple[str, str]


def still_known(*, namespace: str | None, name: str, **kwargs: Any) -> bool:
    """The filter of the timer and the inline daemon: the source has not been deleted.

    kopf stops a running timer or daemon whose filter stops matching; this is what stops them
    when a source is deleted, since the sources carry no finalizer (see
    :func:`_without_finalizer`)."""
    sources: kopf.Index[Source, bool] = kwargs["known_sources"]
    return (namespace or "", name) in sources


def _without_finalizer(registry: kopf.OperatorRegistry) -> None:
    """Let kopf run the per-source timer and daemon without a finalizer on the sources.

    kopf puts a finalizer on every resource with a timer or daemon, to stop them before the
    resource is gone; the :func:`still_known` filter stops them instead. Owner references
    already collect a source's children, and an inline bridge drains into Kafka whether its
    source still exists or not. A finalizer would make deleting a source, or its namespace,
    wait for a running operator: for ever after ``helm uninstall``. A finalizer left by an
    earlier version is removed by kopf when it sees that no handler requires one.
    """
    spawning = registry._spawning  # kopf offers no public switch for timers and daemons
    spawning._handlers[:] = [
        dataclasses.replace(handler, requires_finalizer=False) for handler in spawning._handlers
    ]

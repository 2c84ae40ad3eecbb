"""What users ask of a source through its annotations, as Strimzi's KafkaConnector offers:
a one-time restart (``ws2kafka.dev/restart``) and a pause of reconciliation
(``ws2kafka.dev/pause-reconciliation: "true"``).

kopf cannot see these annotations change: its own bookkeeping lives under the same
``ws2kafka.dev/`` prefix, and it leaves every annotation with that prefix out of the diffs
that trigger its update handlers. So pod mode looks at every watch event of a source
(:class:`PodControls`) and inline mode at the live body its daemon holds.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import kopf
from kubernetes.client.exceptions import ApiException

from . import constants as c
from . import kube
from .autorestart import streak_reset
from .resources import child_name

log = logging.getLogger(__name__)

#: The value of ``ws2kafka.dev/pause-reconciliation`` that pauses (any other: not paused).
PAUSED = "true"

Source = tuple[str, str]


def annotations_of(meta: Mapping[str, Any]) -> Mapping[str, str]:
    """A resource's annotations (``metadata`` or a kopf ``Meta``)."""
    found = meta.get("annotations")
    return found if isinstance(found, Mapping) else {}


def is_paused(meta: Mapping[str, Any]) -> bool:
    """Reconciliation of the source is paused: the operator changes nothing of its bridge."""
    return annotations_of(meta).get(c.ANNOTATION_PAUSE) == PAUSED


def paused_message(name: str) -> str:
    """The ``ReconciliationPaused`` condition's message: what is frozen, how to resume."""
    return (
        f"{c.ANNOTATION_PAUSE} is {PAUSED!r}: the operator leaves the bridge as it runs and "
        f"applies no spec change or restart; resume with "
        f"`kubectl annotate wss {name} {c.ANNOTATION_PAUSE}-`"
    )


def restart_request(meta: Mapping[str, Any]) -> str | None:
    """The value of a pending restart request, unless reconciliation is paused (a restart
    waits for the resume)."""
    if is_paused(meta):
        return None
    value = annotations_of(meta).get(c.ANNOTATION_RESTART)
    return None if value is None else str(value)


def now_rfc3339() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def post_restarted(body: Any, message: str) -> None:
    """A Normal Event for every restart: one a user asked for is never rate-limited away."""
    kopf.event(body, type="Normal", reason="Restarted", message=message)


#: Applies a source's spec to its children: (body, spec, namespace, name).
Reconcile = Callable[[Any, dict[str, Any], str, str], None]


class PodControls:
    """Pod mode: carries out the annotations, seen on every watch event of a source.

    A pause is remembered per source (kopf lists every source at startup, so the memory
    covers sources paused while the operator was down); the first event without it applies
    the spec as it is then: the changes made while paused. A restart request is claimed
    (removed, if it is still there) and then carried out by rolling the Deployment.
    """

    def __init__(self, reconcile: Reconcile) -> None:
        self._reconcile = reconcile
        self._paused: set[Source] = set()

    def concerns(self, meta: Mapping[str, Any], namespace: str, name: str) -> bool:
        """Whether :meth:`observe` has anything to do for this event: a pause to note or to
        end, or a restart request. Most events are a bridge's status report, for none of
        these, and are answered here without a thread or an API call."""
        return (
            is_paused(meta)
            or (namespace, name) in self._paused
            or c.ANNOTATION_RESTART in annotations_of(meta)
        )

    def observe(
        self, body: Any, spec: dict[str, Any], meta: Mapping[str, Any], namespace: str, name: str
    ) -> None:
        source = (namespace, name)
        if is_paused(meta):
            if source not in self._paused:
                log.info("%s/%s: reconciliation paused", namespace, name)
            self._paused.add(source)
            return
        if source in self._paused and self._resume(body, spec, namespace, name):
            self._paused.discard(source)
        value = restart_request(meta)
        if value is not None:
            self._restart(body, spec, namespace, name, value)

    def forget(self, namespace: str, name: str) -> None:
        """Drop the memory of a deleted source."""
        self._paused.discard((namespace, name))

    def _resume(self, body: Any, spec: dict[str, Any], namespace: str, name: str) -> bool:
        """Apply the spec after a pause; False to try again at the next event."""
        log.info("%s/%s: reconciliation resumed: applying the spec", namespace, name)
        try:
            self._reconcile(body, spec, namespace, name)
        except kopf.PermanentError:  # an invalid spec: reported as SpecInvalid already
            return True
        except ApiException as exc:
            log.warning("%s/%s: resuming failed, retrying: %s", namespace, name, exc.reason)
            return False
        return True

    def _restart(
        self, body: Any, spec: dict[str, Any], namespace: str, name: str, value: str
    ) -> None:
        if not kube.remove_annotation(namespace, name, c.ANNOTATION_RESTART, value):
            return  # claimed by an earlier event of the same request
        if spec.get("suspend"):
            post_restarted(body, "nothing to restart: spec.suspend is true, no bridge runs")
            return
        at = now_rfc3339()
        try:
            rolled = kube.restart_deployment(namespace, child_name(name), at)
        except ApiException as exc:
            message = f"the restart failed ({exc.reason}): set {c.ANNOTATION_RESTART} again"
            kopf.event(body, type="Warning", reason="RestartFailed", message=message)
            return
        if rolled:
            log.info("%s/%s: restart requested: rolling the bridge pod", namespace, name)
            post_restarted(body, f"rolled the bridge pod ({c.ANNOTATION_RESTARTED_AT}={at})")
            reset = streak_reset(body.get("status"))
            if reset is not None:  # a requested restart starts a new streak
                kube.patch_status(namespace, name, {"autoRestart": reset})
        else:
            post_restarted(body, "nothing to restart: the bridge Deployment does not exist")

"""Turning a WebSocketSource into its running bridge (pod mode), idempotently.

One function serves create, update and resume: validate the spec with the bridge's own model,
render the bridge config, say so when the source is larger than its pod is sized for
(:mod:`.sizing`), and apply the children (ServiceAccount, Role, RoleBinding,
ConfigMap, Deployment) with owner references, so deleting the resource deletes them.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

import kopf
from kubernetes.client.exceptions import ApiException

from ws2kafka.bridge.config import parse_spec
from ws2kafka.bridge.errors import ConfigError

from . import kube
from .events import EventLimiter
from .resources import (
    Manifest,
    build_configmap,
    build_deployment,
    build_role,
    build_role_binding,
    build_service_account,
    render_source,
)
from .settings import OperatorSettings
from .sizing import bridge_cpu, oversized

log = logging.getLogger(__name__)


def _reason(exc: ApiException) -> str:
    """The API server's own message from an error response."""
    try:
        message: str = json.loads(exc.body or "{}").get("message") or str(exc.reason)
    except ValueError:
        message = str(exc.reason)
    return message


def spec_problems(spec: dict[str, Any]) -> str | None:
    """The spec's validation problems on one line, or None when it is valid."""
    try:
        parse_spec(spec)
    except ConfigError as exc:
        return "; ".join(exc.problems)
    return None


#: Sources whose rendered children the API server refused, by (namespace, name): the
#: conditions report them as SpecInvalid until a spec change renders acceptable children.
Rejections = dict[tuple[str, str], str]


def children_hash(manifests: list[Manifest]) -> str:
    """What the children would be, in one value (recorded on the Deployment)."""
    return hashlib.sha256(json.dumps(manifests, sort_keys=True).encode()).hexdigest()[:32]


def reconcile_source(
    body: Any,
    spec: dict[str, Any],
    name: str,
    namespace: str,
    settings: OperatorSettings,
    events: EventLimiter,
    rejections: Rejections,
    *,
    applied: str | None = None,
) -> str | None:
    """Apply the children of one source and return their hash (to record on the source);
    raises PermanentError for an invalid spec.

    ``applied`` is the hash the source records (a resume passes it): when the children would
    be the same, nothing is applied and None returned. An operator restarted with thousands
    of sources waiting thus makes no API request for them, instead of five applies each.

    The outcome is logged and posted as an Event, not returned: kopf would store a handler's
    result in ``status.<handler id>``, a field the CRD's schema prunes (and kopf then warns
    about the inconsistency, once per source).
    """
    problems = spec_problems(spec)
    if problems:
        events.post(body, reason="SpecInvalid", message=problems, warning=True)
        raise kopf.PermanentError(problems)
    rendered = render_source(spec)
    suspended = bool(spec.get("suspend"))
    manifests = [
        build_service_account(name, namespace),
        build_role(name, namespace),
        build_role_binding(name, namespace),
        build_configmap(name, namespace, rendered),
        build_deployment(name, namespace, rendered, settings, suspended=suspended),
    ]
    kopf.adopt(manifests, owner=body)
    digest = children_hash(manifests)
    if digest == applied:
        log.debug("%s/%s: children up to date (%s)", namespace, name, digest)
        return None
    too_large = oversized(parse_spec(spec), bridge_cpu(settings, rendered.template))
    if too_large is not None:  # a rule of thumb: said, not enforced
        log.warning("%s/%s: oversized: %s", namespace, name, too_large)
        events.post(body, reason="Oversized", message=too_large, warning=True)
    for manifest in manifests:
        try:
            kube.apply(manifest)
        except ApiException as exc:
            if exc.status != 422:  # conflicts and server errors: kopf retries
                raise
            # the API server refuses the rendered child (e.g. a ConfigMap over 1 MiB):
            # retrying cannot help, the spec must change
            problem = f"{manifest['kind']} {manifest['metadata']['name']}: {_reason(exc)}"
            rejections[namespace, name] = problem
            events.post(body, reason="SpecInvalid", message=problem, warning=True)
            raise kopf.PermanentError(problem) from None
    rejections.pop((namespace, name), None)
    outcome = "suspended" if suspended else f"config {rendered.spec_hash} rolled out"
    events.post(body, reason="Suspended" if suspended else "RolledOut", message=outcome)
    log.info("%s/%s: %s", namespace, name, outcome)
    return digest

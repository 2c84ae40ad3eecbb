"""Turning a WebSocketSource into its running bridge (pod mode), idempotently.

One function serves create, update and resume: validate the spec with the bridge's own model,
render the bridge config, and apply the children (ServiceAccount, Role, RoleBinding,
ConfigMap, Deployment) with owner references, so deleting the resource deletes them.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from ws2kafka.bridge.config import parse_spec
from ws2kafka.bridge.errors import ConfigError

from . import kube
from .events import EventLimiter
from .resources import (
    build_configmap,
    build_deployment,
    build_role,
    build_role_binding,
    build_service_account,
    render_source,
)
from .settings import OperatorSettings

log = logging.getLogger(__name__)


def spec_problems(spec: dict[str, Any]) -> str | None:
    """The spec's validation problems on one line, or None when it is valid."""
    try:
        parse_spec(spec)
    except ConfigError as exc:
        return "; ".join(exc.problems)
    return None


def reconcile_source(
    body: Any,
    spec: dict[str, Any],
    name: str,
    namespace: str,
    settings: OperatorSettings,
    events: EventLimiter,
) -> str:
    """Apply the children of one source; raises PermanentError for an invalid spec."""
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
    for manifest in manifests:
        kopf.adopt(manifest, owner=body)
        kube.apply(manifest)
    outcome = "suspended" if suspended else f"config {rendered.spec_hash} rolled out"
    events.post(body, reason="Suspended" if suspended else "RolledOut", message=outcome)
    log.info("%s/%s: %s", namespace, name, outcome)
    return outcome

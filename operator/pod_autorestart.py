"""``spec.autoRestart`` in pod mode: the conditions timer carries out the policy's decisions.

A bridge pod rendered with ``autoRestart.enabled`` stays after giving up (not ready,
``--stay-after-giving-up``), so the kubelet does not restart it on its own schedule. At each
look the timer asks :func:`.autorestart.decide_for_pod` what the status calls for and does
it: schedule the restart (``status.autoRestart.nextRestartTime``), roll the pod when it is
due (the pod-template annotation a requested restart sets too), or say that the limit is
reached. Everything it needs is in the status, so an operator restart carries on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import kopf
from kubernetes.client.exceptions import ApiException

from ws2kafka.bridge.config import AutoRestartSpec

from . import kube
from .autorestart import LimitReached, RestartDue, Scheduled, decide_for_pod
from .controls import is_paused, now_rfc3339
from .resources import child_name

log = logging.getLogger(__name__)


async def act_on_give_up(
    body: Any,
    spec: Mapping[str, Any],
    status: dict[str, Any],
    meta: Mapping[str, Any],
    now: float,
    patch: Any,
) -> dict[str, Any]:
    """Carry out the decision for a source whose bridge pod may have given up; returns
    ``status`` as it will be once ``patch`` is applied (the conditions derive from it)."""
    auto = spec.get("autoRestart") or {}
    if not auto.get("enabled") or spec.get("suspend"):
        return status
    policy = AutoRestartSpec.model_validate(auto)
    decision = decide_for_pod(policy, status, now, paused=is_paused(meta))
    if decision is None:
        return status
    namespace, name = str(meta["namespace"]), str(meta["name"])
    last_error = (status.get("connection") or {}).get("lastError")
    if isinstance(decision, Scheduled):
        log.info(
            "%s/%s: gave up: automatic restart %d at %s",
            namespace, name, decision.restart.number, decision.due,
        )  # fmt: skip
    elif isinstance(decision, LimitReached):
        message = decision.exhausted.message()
        log.warning("%s/%s: %s", namespace, name, message)
        kopf.event(
            body, type="Warning", reason="AutoRestartLimitReached",
            message=f"the bridge gave up ({last_error}); {message}",
        )  # fmt: skip
    elif not await _roll(body, namespace, name, decision, last_error):
        return status
    patch.status["autoRestart"] = decision.status
    return {**status, "autoRestart": {**(status.get("autoRestart") or {}), **decision.status}}


async def _roll(
    body: Any, namespace: str, name: str, decision: RestartDue, last_error: Any
) -> bool:
    """Roll the bridge pod; False when it could not be (tried again at the next look)."""
    try:
        rolled = await asyncio.to_thread(
            kube.restart_deployment, namespace, child_name(name), now_rfc3339()
        )
    except ApiException as exc:
        log.warning("%s/%s: automatic restart failed: %s", namespace, name, exc.reason)
        return False
    if rolled:
        log.info("%s/%s: automatic restart %d", namespace, name, decision.number)
        kopf.event(
            body, type="Normal", reason="AutoRestarted",
            message=f"automatic restart {decision.number}: rolled the bridge pod, "
            f"which had given up ({last_error})",
        )  # fmt: skip
    return bool(rolled)

"""Inline mode: each source's bridge runs inside the operator process, one kopf daemon each.

The same bridge library and the same status reporting as a bridge pod; Secrets (and the
ConfigMap keys of TLS material) are read by the operator and handed to the bridge in memory
only. A spec change or a restart request (``ws2kafka.dev/restart``) stops the bridge (it
drains) and starts a new one, unless reconciliation is paused; a bridge that gave up waits for
the next spec change or restart request, one whose Kafka producer failed fatally is started
again (with a new producer) after a pause.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import hashlib
import json
import logging
from collections.abc import Callable
from typing import Any

import kubernetes

from ws2kafka.bridge.config import WebSocketSourceSpec, parse_spec
from ws2kafka.bridge.errors import ConfigError
from ws2kafka.bridge.service import Bridge, ExitCode
from ws2kafka.bridge.stats import BridgeStats

from . import constants as c
from . import kube
from .controls import is_paused, post_restarted, restart_request
from .reporter import KubeStatusReporter
from .settings import OperatorSettings

log = logging.getLogger(__name__)

SecretReader = Callable[[str, str, str], str]
#: How often a running daemon checks whether its spec changed or it must stop.
POLL_SECONDS = 1.0
#: How long the live view of a resource may take to show the operator's own change.
VIEW_LAG_SECONDS = 10.0
#: How often a source that cannot start (bad spec, missing Secret) is tried again.
RETRY_SECONDS = 10.0


def read_secret(namespace: str, name: str, key: str) -> str:
    """One key of a Secret, decoded."""
    core = kubernetes.client.CoreV1Api(kube.api_client())
    secret = core.read_namespaced_secret(name, namespace)
    data = secret.data or {}
    if key not in data:
        raise ConfigError([f"Secret {namespace}/{name} has no key {key}"])
    return base64.b64decode(data[key]).decode()


def read_config_map(namespace: str, name: str, key: str) -> str:
    """One key of a ConfigMap (TLS material such as a CA bundle)."""
    core = kubernetes.client.CoreV1Api(kube.api_client())
    data = core.read_namespaced_config_map(name, namespace).data or {}
    if key not in data:
        raise ConfigError([f"ConfigMap {namespace}/{name} has no key {key}"])
    return str(data[key])


def resolve_secrets(
    spec: dict[str, Any],
    namespace: str,
    reader: SecretReader,
    config_maps: SecretReader = read_config_map,
) -> dict[str, Any]:
    """A copy of the spec with every ``secretKeyRef`` replaced by the secret's value, and
    every ``configMapKeyRef`` (TLS material) by the ConfigMap key's."""

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("secretKeyRef")
            if isinstance(ref, dict) and len(node) == 1:
                return {"value": reader(namespace, ref["name"], ref["key"])}
            ref = node.get("configMapKeyRef")
            if isinstance(ref, dict) and len(node) == 1:
                return {"value": config_maps(namespace, ref["name"], ref["key"])}
            return {key: walk(value) for key, value in node.items()}
        if isinstance(node, list):
            return [walk(item) for item in node]
        return node

    resolved: dict[str, Any] = walk(copy.deepcopy(spec))
    return resolved


def spec_fingerprint(spec: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()


class InlineBridges:
    """The bridges running in this process, for the operator's /metrics."""

    def __init__(self) -> None:
        self.running: dict[str, Bridge] = {}

    def stats(self) -> list[tuple[str, BridgeStats]]:
        return [(name, bridge.stats) for name, bridge in self.running.items()]


async def run_inline(
    body: Any,
    spec: Any,
    namespace: str,
    name: str,
    stopped: Any,
    settings: OperatorSettings,
    bridges: InlineBridges,
    reader: SecretReader = read_secret,
) -> None:
    """The daemon body: (re)start the bridge whenever the spec changes or a restart is asked
    for, until stopped. ``body`` and ``spec`` are kopf's live views of the resource."""
    key = f"{namespace}/{name}"
    while not stopped.is_set():
        await _claim_restart(body, namespace, name)
        current = dict(spec)
        fingerprint = spec_fingerprint(current)
        parsed = await _parse(current, namespace, reader)
        if parsed is None or parsed.suspend:
            # an invalid spec or a missing Secret may be fixed without a spec change: retry
            await _wait_for_change(body, spec, fingerprint, stopped, limit=RETRY_SECONDS)
            continue
        reporter = KubeStatusReporter(
            namespace, name, pod_name=None, interval=settings.report_interval_seconds
        )
        previous = await asyncio.to_thread(reporter.previous_unclean_exit)
        try:
            bridge = Bridge(parsed, name=key, reporter=reporter, unclean_exit=previous)
        except ConfigError as exc:  # e.g. TLS material that is not PEM
            problems = "; ".join(exc.problems)
            log.error("%s: not starting the bridge: %s", key, problems)
            await asyncio.to_thread(reporter.report_startup_failure, problems)
            await _wait_for_change(body, spec, fingerprint, stopped, limit=RETRY_SECONDS)
            continue
        bridges.running[key] = bridge
        task = asyncio.create_task(bridge.run(), name=f"bridge {key}")
        try:
            while not task.done() and not stopped.is_set():
                if _changed(body, spec, fingerprint):
                    log.info("%s: spec changed: restarting the bridge", key)
                    break
                if restart_request(body["metadata"]) is not None:
                    log.info("%s: restart requested: stopping the bridge", key)
                    break
                await asyncio.wait({task}, timeout=POLL_SECONDS)
        finally:
            bridge.stop()
            summary = await task
            bridges.running.pop(key, None)
        if summary.exit_code == ExitCode.PRODUCER_FATAL and not stopped.is_set():
            # a new bridge has a new producer: what a pod restart does in pod mode
            await _wait_for_change(body, spec, fingerprint, stopped, limit=RETRY_SECONDS)
        elif summary.exit_code and not stopped.is_set():
            await _wait_for_change(body, spec, fingerprint, stopped)


async def _parse(
    spec: dict[str, Any], namespace: str, reader: SecretReader
) -> WebSocketSourceSpec | None:
    try:
        resolved = await asyncio.to_thread(resolve_secrets, spec, namespace, reader)
        return parse_spec(resolved)
    except ConfigError as exc:
        log.error("%s: not starting the bridge: %s", namespace, "; ".join(exc.problems))
    except kubernetes.client.exceptions.ApiException as exc:
        log.error("%s: cannot read a Secret of the source: %s", namespace, exc.reason)
    return None


def _changed(body: Any, spec: Any, fingerprint: str) -> bool:
    """The spec differs from the running one's, and reconciliation is not paused (a pause
    keeps the bridge as it runs)."""
    return not is_paused(body["metadata"]) and spec_fingerprint(dict(spec)) != fingerprint


async def _claim_restart(body: Any, namespace: str, name: str) -> None:
    """A pending restart request is answered by the start that follows: remove the
    annotation (only if it is still there: the live view may lag behind) and say so."""
    value = restart_request(body["metadata"])
    if value is None:
        return
    claimed = await asyncio.to_thread(
        kube.remove_annotation, namespace, name, c.ANNOTATION_RESTART, value
    )
    if claimed:
        log.info("%s/%s: restarting the inline bridge, as asked", namespace, name)
        post_restarted(body, "the inline bridge stopped (drained) and starts again")
    # the live view shows the removal only once its watch event arrives: until then the
    # same request must not stop the new bridge again
    waited = 0.0
    while restart_request(body["metadata"]) == value and waited < VIEW_LAG_SECONDS:
        await asyncio.sleep(0.1)
        waited += 0.1


async def _wait_for_change(
    body: Any, spec: Any, fingerprint: str, stopped: Any, *, limit: float | None = None
) -> None:
    """Until the spec changes or a restart is asked for (at most ``limit`` seconds)."""
    waited = 0.0
    while (
        not stopped.is_set()
        and not _changed(body, spec, fingerprint)
        and restart_request(body["metadata"]) is None
    ):
        if limit is not None and waited >= limit:
            return
        await stopped.wait(POLL_SECONDS)
        waited += POLL_SECONDS

"""Inline mode: each source's bridge runs inside the operator process, one kopf daemon each.

The same bridge library and the same status reporting as a bridge pod; Secrets (and the
ConfigMap keys of TLS material) are read by the operator and handed to the bridge in memory
only. A change of ``streams.names`` alone is applied to the running bridge
(:meth:`~ws2kafka.bridge.service.Bridge.reshare`: only the connections whose share changed are
replaced), and so is a rotated Secret, read again every ``secret_check_seconds``
(:meth:`~ws2kafka.bridge.service.Bridge.rekey`: every connection replaced make-before-break).
Any other spec change or a restart request (``ws2kafka.dev/restart``) stops the bridge (it
drains) and starts a new one, unless reconciliation is paused; a bridge that gave up waits for
the next spec change or restart request, or, with ``spec.autoRestart``, is started again after a
growing delay (:mod:`.autorestart`, counted in ``status.autoRestart``); one whose Kafka producer
failed fatally is started again (with a new producer) after a pause.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import kopf
import kubernetes

from ws2kafka.bridge.config import WebSocketSourceSpec, parse_spec
from ws2kafka.bridge.errors import ConfigError
from ws2kafka.bridge.gaps import rfc3339
from ws2kafka.bridge.service import Bridge, ExitCode
from ws2kafka.bridge.stats import BridgeStats

from . import constants as c
from . import kube
from .autorestart import AutoRestarts, Exhausted, status_count
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
    data = kube.secret_data(namespace, name)
    if key not in data:
        raise ConfigError([f"Secret {namespace}/{name} has no key {key}"])
    return base64.b64decode(data[key]).decode()


def read_config_map(namespace: str, name: str, key: str) -> str:
    """One key of a ConfigMap (TLS material such as a CA bundle)."""
    data = kube.config_map_data(namespace, name)
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
    # the daemon's first start carries on the streak status shows (an operator restart)
    count, automatic = status_count(body.get("status")), True
    while not stopped.is_set():
        await _claim_restart(body, namespace, name)
        current = dict(spec)
        fingerprint = spec_fingerprint(current)
        parsed = await _parse(current, namespace, reader)
        if parsed is None or parsed.suspend:
            # an invalid spec or a missing Secret may be fixed without a spec change: retry
            await _wait_for_change(body, spec, fingerprint, stopped, limit=RETRY_SECONDS)
            continue
        restarts = AutoRestarts(parsed.auto_restart, count)
        if not automatic and restarts.reset():
            await _report_auto_restart(namespace, name, {"count": 0, "nextRestartTime": None})
        automatic = False
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
        secrets_read_at = time.monotonic()
        try:
            while not task.done() and not stopped.is_set():
                if _changed(body, spec, fingerprint):
                    changed = dict(spec)
                    if await apply_live(bridge, changed, namespace, reader):
                        current, fingerprint = changed, spec_fingerprint(changed)
                        continue
                    log.info("%s: spec changed: restarting the bridge", key)
                    break
                if restart_request(body["metadata"]) is not None:
                    log.info("%s: restart requested: stopping the bridge", key)
                    break
                check = settings.secret_check_seconds
                if check and time.monotonic() - secrets_read_at >= check:
                    await rekey(bridge, current, namespace, reader)
                    secrets_read_at = time.monotonic()
                await asyncio.wait({task}, timeout=POLL_SECONDS)
        finally:
            bridge.stop()
            summary = await task
            bridges.running.pop(key, None)
        if stopped.is_set():
            break
        if summary.exit_code == ExitCode.PRODUCER_FATAL:
            # a new bridge has a new producer: what a pod restart does in pod mode; it goes
            # on with the count unless a spec change or a restart request ended the pause
            automatic = not await _wait_for_change(
                body, spec, fingerprint, stopped, limit=RETRY_SECONDS
            )
        elif summary.exit_code == ExitCode.GAVE_UP and parsed.auto_restart.enabled:
            automatic = await _after_giving_up(
                Watched(body, spec, fingerprint, stopped), restarts, bridge.stats
            )
        elif summary.exit_code:
            await _wait_for_change(body, spec, fingerprint, stopped)
        count = restarts.count


@dataclass(frozen=True)
class Watched:
    """What a daemon waits on: kopf's live views, the running spec's fingerprint, the stop."""

    body: Any
    spec: Any
    fingerprint: str
    stopped: Any

    async def wait(self, limit: float | None = None) -> bool:
        return await _wait_for_change(
            self.body, self.spec, self.fingerprint, self.stopped, limit=limit
        )

    async def unpaused(self) -> bool:
        """Until reconciliation is not paused (an automatic restart is a change the pause
        holds back, like a requested one); False if the daemon stops meanwhile."""
        while is_paused(self.body["metadata"]) and not self.stopped.is_set():
            await self.stopped.wait(POLL_SECONDS)
        return not self.stopped.is_set()


async def _after_giving_up(watched: Watched, restarts: AutoRestarts, stats: BridgeStats) -> bool:
    """``spec.autoRestart``: wait out the delay and say whether to start the bridge again
    now (False: the limit is reached, or the spec changed, a restart was asked for or the
    daemon stops during the delay; the loop then acts as without automatic restarts)."""
    meta = watched.body["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    decision = restarts.gave_up(stats.connected_stretch(time.time()))
    if isinstance(decision, Exhausted):
        log.warning("%s/%s: %s", namespace, name, decision.message())
        await _report_auto_restart(
            namespace, name, {"count": restarts.count, "nextRestartTime": None}
        )
        kopf.event(
            watched.body, type="Warning", reason="AutoRestartLimitReached",
            message=f"the bridge gave up ({stats.last_error}); {decision.message()}",
        )  # fmt: skip
        await watched.wait()
        return False
    due = rfc3339(time.time() + decision.delay)
    log.info("%s/%s: gave up: automatic restart %d at %s", namespace, name, decision.number, due)
    await _report_auto_restart(namespace, name, {"count": restarts.count, "nextRestartTime": due})
    if await watched.wait(limit=decision.delay) or not await watched.unpaused():
        return False
    restarts.restarted()
    await _report_auto_restart(
        namespace,
        name,
        {"count": restarts.count, "lastRestartTime": rfc3339(time.time()), "nextRestartTime": None},
    )
    kopf.event(
        watched.body, type="Normal", reason="AutoRestarted",
        message=f"automatic restart {restarts.count} after a delay of {decision.delay:g} s: "
        f"the bridge had given up ({stats.last_error})",
    )  # fmt: skip
    return True


async def _report_auto_restart(namespace: str, name: str, fields: dict[str, Any]) -> None:
    """Merge ``status.autoRestart``; a failed patch only costs the display (logged)."""
    try:
        await asyncio.to_thread(kube.patch_status, namespace, name, {"autoRestart": fields})
    except kubernetes.client.exceptions.ApiException as exc:
        log.warning("%s/%s: cannot report the automatic restart: %s", namespace, name, exc.reason)


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


async def apply_live(
    bridge: Bridge, spec: dict[str, Any], namespace: str, reader: SecretReader
) -> bool:
    """Apply a changed spec to the running bridge if only ``streams.names`` changed (False:
    any other change, or one that does not parse: the daemon restarts the bridge)."""
    parsed = await _parse(spec, namespace, reader)
    return parsed is not None and bridge.reshare(parsed)


async def rekey(bridge: Bridge, spec: dict[str, Any], namespace: str, reader: SecretReader) -> bool:
    """Read the running spec's Secrets again and hand changed values to the bridge
    (:meth:`~ws2kafka.bridge.service.Bridge.rekey`: make-before-break). A Secret that cannot
    be read now leaves the bridge with the values it has (logged)."""
    try:
        resolved = await asyncio.to_thread(resolve_secrets, spec, namespace, reader)
        parsed = parse_spec(resolved)
    except ConfigError as exc:
        problems = "; ".join(exc.problems)
        log.warning("%s: cannot read the Secrets again: %s", bridge.name, problems)
        return False
    except kubernetes.client.exceptions.ApiException as exc:
        log.warning("%s: cannot read the Secrets again: %s", bridge.name, exc.reason)
        return False
    return await bridge.rekey(parsed)


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
) -> bool:
    """Until the spec changes, a restart is asked for or the daemon stops (True), or at
    most ``limit`` seconds (False)."""
    waited = 0.0
    while (
        not stopped.is_set()
        and not _changed(body, spec, fingerprint)
        and restart_request(body["metadata"]) is None
    ):
        if limit is not None and waited >= limit:
            return False
        step = POLL_SECONDS if limit is None else min(POLL_SECONDS, limit - waited)
        await stopped.wait(step)
        waited += step
    return True

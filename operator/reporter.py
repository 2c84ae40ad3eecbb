"""The bridge's state-reporting hook, implemented against the API server.

A bridge pod runs it with its own ServiceAccount, whose Role allows patching the status of
its own resource only; inline mode runs it with the operator's credentials. Either way the
bridge owns ``status.connection``, ``status.lastGap``, ``status.lastSequenceGap`` and
``status.topics``, and the
operator owns ``status.conditions``: merge patches of different keys never clobber each other.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from ws2kafka.bridge.backoff import delay_bound
from ws2kafka.bridge.gaps import rfc3339
from ws2kafka.bridge.ratelog import RateLimitedLog
from ws2kafka.bridge.reporting import Requests, StatusSnapshot
from ws2kafka.bridge.runstate import UncleanExit
from ws2kafka.bridge.stats import ConnectionState

from . import kube

log = logging.getLogger(__name__)

#: Change this annotation's value (e.g. to a timestamp) to rotate the connection now:
#: make-before-break, no frame lost.
ROTATE_ANNOTATION = "ws2kafka.dev/rotate"

#: A bridge's last report (it ended) is its last word until another pod reports: tried this
#: many times, the retries after 0.5 s, 1 s and 2 s (a pod that stays after giving up sends
#: nothing more, and ``spec.autoRestart`` acts on that report).
LAST_WORD_ATTEMPTS = 4
LAST_WORD_RETRY_SECONDS = 0.5
LAST_WORD_MAX_RETRY_SECONDS = 2.0

Patch = Callable[[str, str, dict[str, Any]], dict[str, Any]]
Read = Callable[[str, str], dict[str, Any]]

#: States a bridge reports as its last word when it ended on purpose.
FINISHED = frozenset(
    {ConnectionState.STOPPED, ConnectionState.GAVE_UP, ConnectionState.STARTUP_FAILED}
)


def unaccounted(connection: Mapping[str, Any]) -> int:
    """Frames a report shows as received but neither produced, failed nor dropped (or
    rejected): while the bridge runs they wait in its buffer; after its end they are lost."""
    received = int(connection.get("messagesReceived") or 0)
    settled = sum(
        int(connection.get(key) or 0)
        for key in ("messagesProduced", "messagesFailed", "messagesDropped")
    )
    return max(0, received - settled)


def previous_unclean_exit(
    connection: Mapping[str, Any] | None,
    pod_name: str | None,
    *,
    alive_within: float = 0.0,
    now: float | None = None,
) -> UncleanExit | None:
    """The previous bridge's end, from its last report (``status.connection``), when it was
    not a clean stop: it did not report Stopped/GaveUp/StartupFailed with every frame
    accounted for. A pod lost with its node or killed without a grace period leaves such a
    report; its replacement has a new ``emptyDir`` and no state file.

    A report of the same pod is left to the state file (a container restart keeps it). A
    report of another pod younger than ``alive_within`` seconds is a predecessor that still
    runs: ``kubectl delete pod`` or an eviction starts the replacement while the old pod
    gets its SIGTERM and drains, and its own final report says how it ended.
    """
    if not connection or (pod_name is not None and connection.get("podName") == pod_name):
        return None
    state = connection.get("state")
    lost = unaccounted(connection)
    if state is None or (state in FINISHED and not lost):
        return None
    stamp = connection.get("heartbeatTime")
    last_alive = (
        datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp() if stamp else 0.0
    )
    other_pod = connection.get("podName") is not None and state not in FINISHED
    age = (time.time() if now is None else now) - last_alive
    if other_pod and age < alive_within:
        log.info(
            "the previous bridge (pod %s) reported %.0f s ago: it is still running and its "
            "own final report says how it ends",
            connection.get("podName"),
            age,
        )
        return None
    return UncleanExit(
        connection_id=connection.get("connectionId"),
        last_alive=last_alive,
        received=int(connection.get("messagesReceived") or 0),
        unaccounted=lost,
        last_state=str(state),
        pod_name=connection.get("podName"),
    )


def alive_within(interval: float) -> float:
    """How recent a report of another bridge pod shows that pod still running: three
    missed report intervals, plus the time a report takes."""
    return 3 * interval + 2


class KubeStatusReporter:
    """Merge-patches ``status.connection`` (and ``lastGap``/``lastSequenceGap``) of one
    WebSocketSource."""

    def __init__(
        self,
        namespace: str,
        name: str,
        *,
        pod_name: str | None,
        interval: float,
        patch: Patch = kube.patch_status,
        read: Read = kube.read_status,
    ) -> None:
        self.namespace = namespace
        self.name = name
        self.interval = interval
        self._pod_name = pod_name
        self._patch = patch
        self._read = read
        self._rotate_request: str | None = None
        self._baseline_taken = False
        self._failures = RateLimitedLog(log, "status reports failed", interval=60.0)
        self._issued = 0
        self._applied = 0
        self._in_order = threading.Lock()

    def previous_unclean_exit(self) -> UncleanExit | None:
        """How the previous bridge of this source ended, read before this one reports; an
        unclean end becomes this bridge's first gap (``status.lastGap``, error UncleanExit)."""
        try:
            status = self._read(self.namespace, self.name)
        except Exception as exc:  # no trace is better than no bridge
            log.warning(
                "%s/%s: cannot read the previous report: %s", self.namespace, self.name, exc
            )
            return None
        crash = previous_unclean_exit(
            status.get("connection"), self._pod_name, alive_within=alive_within(self.interval)
        )
        if crash is not None:
            log.warning("%s/%s: %s", self.namespace, self.name, crash.describe())
        return crash

    def report_startup_failure(self, error: str) -> None:
        """The bridge cannot start (bad config, unreadable file, missing secret): say so in
        status before the process exits, with nothing received and so nothing lost."""
        now = rfc3339(time.time())
        connection = {
            "state": ConnectionState.STARTUP_FAILED.value,
            "since": now,
            "lastMessageTime": None,
            "messagesReceived": 0,
            "messagesProduced": 0,
            "messagesDropped": 0,
            "messagesFailed": 0,
            "reconnects": 0,
            "lastError": error,
            "connectionId": None,
            "heartbeatTime": now,
            "podName": self._pod_name,
        }
        try:
            self._patch(self.namespace, self.name, {"connection": connection})
        except Exception as exc:  # the error is on stderr as well
            log.warning("%s/%s: cannot report the failure: %s", self.namespace, self.name, exc)

    async def report(self, snapshot: StatusSnapshot) -> Requests | None:
        connection = {**snapshot.to_status(), "podName": self._pod_name}
        status = {"connection": connection, **snapshot.to_gap_status()}
        if snapshot.topics:
            status["topics"] = list(snapshot.topics)
        self._issued += 1
        number = self._issued
        attempts = LAST_WORD_ATTEMPTS if snapshot.state in FINISHED else 1
        for attempt in range(attempts):
            if attempt:
                delay = delay_bound(attempt, LAST_WORD_RETRY_SECONDS, LAST_WORD_MAX_RETRY_SECONDS)
                await asyncio.sleep(delay)
            try:
                patched = await asyncio.to_thread(self._patch_in_order, number, status)
            except Exception as exc:  # the API server being away must not stop the data path
                self._failures.add(f"{type(exc).__name__}: {exc}")
                self._failures.flush()
                continue
            return None if patched is None else Requests(rotate=self._rotation_requested(patched))
        return None

    def _patch_in_order(self, number: int, status: dict[str, Any]) -> dict[str, Any] | None:
        """Patch report ``number`` unless a later one is applied already (None then).

        Runs in a worker thread, one patch at a time: cancelling a report's task does not
        stop its thread, so a routine report cancelled at the bridge's end could otherwise
        land after the final one and leave an old state as the bridge's last word.
        """
        with self._in_order:
            if number < self._applied:
                return None
            patched = self._patch(self.namespace, self.name, status)
            self._applied = number
            return patched

    def _rotation_requested(self, resource: dict[str, Any]) -> bool:
        """An on-demand rotation is asked for by setting or changing the annotation's value.

        The answer to every status patch carries the whole resource, so the bridge notices
        without a watch (its Role allows nothing more). The value at the first report is the
        baseline: a bridge (re)start does not rotate.
        """
        annotations = (resource.get("metadata") or {}).get("annotations") or {}
        request = annotations.get(ROTATE_ANNOTATION)
        previous, self._rotate_request = self._rotate_request, request
        first, self._baseline_taken = not self._baseline_taken, True
        if first or request is None or request == previous:
            return False
        log.info("%s/%s: rotation requested (%s)", self.namespace, self.name, request)
        return True

"""The bridge service: one WebSocket connection at a time, every frame into Kafka.

Lifecycle: :meth:`Bridge.run` connects (with capped, jittered backoff), subscribes, reads until
the connection ends or :meth:`Bridge.stop` is called, and reconnects; the interval between two
connections is recorded as a gap (:mod:`.gaps`). :meth:`Bridge.rotate` (or
``rotation.intervalSeconds``) replaces the connection make-before-break, without a gap. On stop
it closes the
socket with 1001, keeps reading what the server had already sent, then waits up to
``drainTimeoutSeconds`` for Kafka to acknowledge every received frame, and logs a final summary.
What could not be delivered is counted, never silently lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from websockets.exceptions import ConnectionClosed
from websockets.typing import Data

from .config import Client, WebSocketSourceSpec
from .errors import GaveUp
from .flow import FlowControl
from .framing import HEADER_SOURCE, FrameRejected, Record, RecordBuilder
from .gaps import CONTROL_GAP, HEADER_CONTROL, Gap
from .picows_client import open_picows
from .policy import decide_retry, flaps_after
from .ratelog import RateLimitedLog
from .reporting import NullReporter, StateReporter, StatusSnapshot
from .runstate import RunState, UncleanExit
from .sequence import FrameChecks, SequenceGap
from .sink import KafkaSink
from .source import (
    Failure,
    Opener,
    SourceConnection,
    build_connect_kwargs,
    describe_failure,
    open_connection,
)
from .stats import BridgeStats, ConnectionState

log = logging.getLogger(__name__)

#: Seconds between two summary log lines (the Java connector's 30 s status log, but always).
SUMMARY_INTERVAL = 30.0
#: Seconds between two looks at the drop and rejection counts (each logs at most every 10 s).
RATE_LOG_TICK = 1.0


def new_connection_id() -> str:
    """The id of a connection, as in the ``ws2kafka.connection`` header and in gap records."""
    return uuid.uuid4().hex[:12]


@dataclass(frozen=True)
class Successor:
    """A rotation's new connection: open, subscribed, and its first data frame read."""

    ws: SourceConnection
    connection_id: str
    first: Data


@dataclass(frozen=True)
class Ended:
    """A connection that ended, remembered until the next one opens (for its gap marker)."""

    connection_id: str
    at: float
    failure: Failure
    frames: int


async def wait_event(event: asyncio.Event, timeout: float) -> bool:
    """Wait for ``event`` at most ``timeout`` seconds; returns whether it is set.

    ``asyncio.timeout`` rather than ``wait_for``: on Python 3.11, ``wait_for`` swallows a
    cancellation that arrives as the event is set, and the cancelled task then waits on.
    """
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(max(0.0, timeout)):
            await event.wait()
    return event.is_set()


#: Admitted records handed to the producer at once while frames keep arriving without a pause.
HAND_OVER_BATCH = 512

#: Seconds between two writes of the run-state file (the precision of a crash's gap).
RUN_STATE_SECONDS = 1.0

#: The connection opener of each ``connection.client``.
OPENERS: dict[Client, Opener] = {Client.WEBSOCKETS: open_connection, Client.PICOWS: open_picows}


class ExitCode:
    """Process exit codes of ``ws2kafka-bridge``."""

    OK = 0
    UNDELIVERED = 1
    """Stopped, but some received frames could not be delivered (counted in the summary)."""
    CONFIG = 2
    GAVE_UP = 3


@dataclass(frozen=True)
class Summary:
    """The final accounting: received == delivered + failed + dropped + rejected + undelivered
    + deduplicated."""

    received: int
    delivered: int
    failed: int
    dropped: int
    rejected: int
    undelivered: int
    reconnects: int
    exit_code: int
    deduplicated: int = 0


class Bridge:
    """Streams one WebSocket source into Kafka; see the module docstring for the lifecycle."""

    def __init__(
        self,
        spec: WebSocketSourceSpec,
        *,
        name: str,
        reporter: StateReporter | None = None,
        opener: Opener | None = None,
        summary_interval: float = SUMMARY_INTERVAL,
        state_file: Path | None = None,
        unclean_exit: UncleanExit | None = None,
    ) -> None:
        self.spec = spec
        self.name = name
        self.stats = BridgeStats()
        self.connection_id: str | None = None
        self._reporter: StateReporter = reporter or NullReporter()
        self._opener = opener or OPENERS[spec.connection.client]
        self._connect_kwargs = build_connect_kwargs(spec)  # resolves secrets: fails early
        self._summary_interval = summary_interval
        self._run_state = RunState(state_file) if state_file is not None else None
        # the state file knows a killed run of this container; ``unclean_exit`` comes from
        # elsewhere (a bridge pod's predecessor, from its last status report)
        previous = self._run_state.previous_unclean_exit() if self._run_state else None
        self._unclean = previous or unclean_exit
        self._flow = FlowControl(spec.buffer, self.stats)
        self._rejections = RateLimitedLog(log, "frames rejected", prefix=f"{name}: ")
        self._drops = RateLimitedLog(log, "frames dropped", prefix=f"{name}: ")
        self._drops_logged = 0
        self._sink = KafkaSink(
            spec.kafka,
            self.stats,
            window=self._flow.window,
            max_bytes=spec.buffer.max_bytes,
            client_id=f"ws2kafka-{name}",
            on_settled=self._on_settled,
            on_refused=self._rejections.add,
        )
        self._stopping = asyncio.Event()
        self._settled = asyncio.Event()
        self._state_changed = asyncio.Event()
        self._paused = False
        self._resumed_monotonic = 0.0
        self._ws: SourceConnection | None = None
        self._end: Failure | None = None
        self._last_frame_monotonic = time.monotonic()
        self._gave_up: GaveUp | None = None
        self._closing: asyncio.Task[None] | None = None
        self._sequence_gaps = RateLimitedLog(log, "sequence gaps", prefix=f"{name}: ")
        self._sequence_regressions = RateLimitedLog(log, "sequence regressions", prefix=f"{name}: ")
        dedupe = spec.rotation.dedupe
        self._checks: FrameChecks | None = None
        if spec.sequence is not None or dedupe is not None:
            self._checks = FrameChecks(spec.sequence, dedupe, self.stats, self._log_sequence_gap)
        self._reauthenticate = False
        self._rotate_requested = asyncio.Event()
        self._successor: Successor | None = None
        self._hand_over_scheduled = False

    # -- public API ---------------------------------------------------------------------

    def stop(self) -> None:
        """Request a graceful stop: close the socket with 1001, drain, summarize."""
        if self._stopping.is_set():
            return
        log.info("%s: stopping: closing the connection and draining the buffer", self.name)
        self._stopping.set()
        ws = self._ws
        if ws is not None:
            self._closing = asyncio.get_running_loop().create_task(
                ws.close(1001, "ws2kafka shutting down")
            )
        self._settled.set()

    def rotate(self) -> None:
        """Replace the connection make-before-break (no effect unless connected).

        A new connection is opened and subscribed; once it delivers its first data frame the
        old one is closed with 1000 and read to its end, then the new one takes over.
        """
        if self._ws is not None:
            self._rotate_requested.set()

    def paused(self) -> bool:
        """Reading is paused by the ``block`` overflow policy."""
        return self._paused

    @property
    def ready(self) -> bool:
        """Connected, and not stale (used by ``/readyz``)."""
        if self.stats.state is not ConnectionState.CONNECTED:
            return False
        stale_after = self.spec.connection.stale_after_seconds
        return not stale_after or time.monotonic() - self._last_frame_monotonic < stale_after

    async def run(self) -> Summary:
        """Run until stopped or given up; always drains and returns the final accounting."""
        self._sink.start(asyncio.get_running_loop())
        background = [
            asyncio.create_task(self._report_forever(), name="report"),
            asyncio.create_task(self._summarize_forever(), name="summary"),
            asyncio.create_task(self._log_rates_forever(), name="rate-logs"),
        ]
        if self._run_state is not None:
            background.append(asyncio.create_task(self._persist_forever(), name="run-state"))
        try:
            await self._connect_forever()
        finally:
            summary = await self._drain()
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            await self._report_now()
            if self._run_state is not None:  # drained and accounted for: not a crash
                self._run_state.write(
                    connection_id=self.connection_id, received=self.stats.received, clean=True
                )
        return summary

    async def _persist_forever(self) -> None:
        """Leave a trace every second, so a killed run is reported as a gap by the next."""
        assert self._run_state is not None
        while True:
            self._run_state.write(
                connection_id=self.connection_id, received=self.stats.received, clean=False
            )
            await asyncio.sleep(RUN_STATE_SECONDS)

    # -- connecting ---------------------------------------------------------------------

    async def _connect_forever(self) -> None:
        spec = self.spec
        failures = 0
        flaps = 0
        connected_before = False
        ended: Ended | None = None
        successor: Successor | None = None
        while not self._stopping.is_set():
            if successor is None:
                self._set_state(ConnectionState.CONNECTING)
                try:
                    if self._reauthenticate:
                        self._connect_kwargs = build_connect_kwargs(spec)
                        self._reauthenticate = False
                    ws = await self._open()
                except Exception as exc:  # every failure is classified, counted and retried
                    failures += 1
                    failure = describe_failure(exc)
                    self._count_failure(failure, connect=True)
                    if not await self._back_off(failures, failure):
                        return
                    continue
                if ws is None:
                    return
                connection_id = new_connection_id()
                if connected_before:
                    self.stats.reconnects += 1
                if ended is not None or failures or self._unclean is not None:
                    self._record_gap(ended, connection_id, failures)
                first: Data | None = None
            else:
                ws, connection_id = successor.ws, successor.connection_id
                first = successor.first
                self.stats.rotations += 1
            failures = 0
            connected_before = True
            opened_at = time.monotonic()
            outcome = await self._session(ws, connection_id, first)
            if isinstance(outcome, Successor):
                successor, ended, self._successor = outcome, None, None
                if self._stopping.is_set():
                    await successor.ws.close(1001, "ws2kafka shutting down")
                continue
            successor = None
            if self._stopping.is_set():
                return
            failure, frames = outcome
            ended = Ended(connection_id, time.time(), failure, frames)
            self._count_failure(failure, connect=False)
            if not spec.reconnect.enabled:
                log.error("%s: connection ended and reconnect is disabled", self.name)
                self._give_up(1, failure)
                return
            flaps = flaps_after(time.monotonic() - opened_at, flaps)
            if not await self._back_off(1, failure, flaps=flaps):
                return

    @staticmethod
    def _crash_as_ended(crash: UncleanExit) -> Ended:
        """The previous run's last connection, as far as its trace tells."""
        failure = Failure("UncleanExit", crash.describe())
        return Ended(crash.connection_id or "unknown", crash.last_alive, failure, 0)

    def _record_gap(self, ended: Ended | None, connection_id: str, failed_attempts: int) -> None:
        """Count, log, report and (if configured) produce the gap before ``connection_id``."""
        stats = self.stats
        if ended is None and self._unclean is not None:
            ended = self._crash_as_ended(self._unclean)
        self._unclean = None
        failure = ended.failure if ended is not None else None
        gap = Gap(
            source=self.name,
            old_connection_id=ended.connection_id if ended is not None else None,
            new_connection_id=connection_id,
            disconnected_at=ended.at if ended is not None else stats.started_at,
            reconnected_at=time.time(),
            close_code=failure.close_code if failure is not None else None,
            close_reason=failure.message if failure is not None else stats.last_error,
            error=failure.reason if failure is not None else None,
            frames_on_old_connection=ended.frames if ended is not None else 0,
            failed_attempts=failed_attempts,
        )
        stats.gaps += 1
        stats.gap_seconds += gap.seconds
        stats.last_gap = gap
        log.warning("%s: %s", self.name, gap.describe())
        if self.spec.gaps.record:
            self._produce_gap_record(gap)

    def _produce_gap_record(self, gap: Gap) -> None:
        record = Record(
            value=gap.to_json(),
            key=self.name.encode(),
            timestamp_ms=int(gap.reconnected_at * 1000),
            headers=[(HEADER_CONTROL, CONTROL_GAP), (HEADER_SOURCE, self.name.encode())],
        )
        if not self._sink.produce_control(self.spec.gaps.topic, record, self._on_gap_delivery):
            self.stats.gap_records_refused += 1
            log.error("%s: the gap record could not be queued for Kafka", self.name)

    def _on_gap_delivery(self, err: object, msg: object) -> None:
        """(poll thread) The delivery report of a gap record."""
        if err is None:
            self.stats.gap_records += 1
        else:
            self.stats.gap_records_failed += 1
            log.error("%s: gap record not delivered: %s", self.name, err)

    def _log_sequence_gap(self, gap: SequenceGap) -> None:
        target = self._sequence_regressions if gap.regression else self._sequence_gaps
        target.add(gap.describe())

    async def _open(self) -> SourceConnection | None:
        """The next connection, or None when :meth:`stop` comes first.

        A handshake may take up to ``connectTimeoutSeconds``, and :meth:`stop` cannot close a
        connection that does not exist yet: without this race, a stop during the handshake
        would wait for it, and a connection opened after the stop would be read forever.
        """
        opening: asyncio.Future[SourceConnection] = asyncio.ensure_future(
            self._opener(self.spec, self._connect_kwargs)
        )
        stopped = asyncio.create_task(self._stopping.wait())
        try:
            await asyncio.wait((opening, stopped), return_when=asyncio.FIRST_COMPLETED)
        finally:
            opening.cancel()  # no-op once it finished
            stopped.cancel()
            await asyncio.wait((opening, stopped))
        if opening.cancelled():
            return None
        ws = opening.result()  # a failed attempt raises here, for the caller to classify
        if self._stopping.is_set():
            await ws.close(1001, "ws2kafka shutting down")
            return None
        return ws

    async def _back_off(self, attempt: int, failure: Failure, *, flaps: int = 0) -> bool:
        """Sleep before the next attempt; False when the bridge gives up or is stopping.

        ``attempt`` counts failed connects (for ``maxAttempts``); the delay grows with it, or
        with ``flaps``, the run of short-lived connections, when that is longer.
        """
        reconnect = self.spec.reconnect
        if reconnect.max_attempts and attempt >= reconnect.max_attempts:
            self._give_up(attempt, failure)
            return False
        decision = decide_retry(failure, max(attempt, flaps), reconnect)
        self._reauthenticate = self._reauthenticate or decision.reauthenticate
        self._set_state(decision.state, f"{failure.reason}: {failure.message}")
        log.warning(
            "%s: %s (%s); attempt %d, next in %.1f s%s",
            self.name,
            failure.message,
            failure.reason,
            attempt,
            decision.delay,
            ", re-reading secrets" if decision.reauthenticate else "",
        )
        await wait_event(self._stopping, decision.delay)
        return not self._stopping.is_set()

    def _give_up(self, attempts: int, failure: Failure) -> None:
        self._gave_up = GaveUp(attempts, f"{failure.reason}: {failure.message}")
        self._set_state(ConnectionState.GAVE_UP, str(self._gave_up))
        log.error("%s: %s", self.name, self._gave_up)

    def _count_failure(self, failure: Failure, *, connect: bool) -> None:
        stats = self.stats
        stats.count_error(failure.reason)
        if connect:
            stats.connect_failures += 1
        if failure.authentication:
            stats.auth_failures += 1
        if failure.close_code is not None:
            stats.count_close(failure.close_code)
        stats.last_error = f"{failure.reason}: {failure.message}"

    # -- one connection -----------------------------------------------------------------

    async def _session(
        self, ws: SourceConnection, connection_id: str, first: Data | None
    ) -> tuple[Failure, int] | Successor:
        """Subscribe (unless ``first``, the rotated-in connection's first frame, says it is
        done), then read until the connection ends. Returns why it ended and how many frames
        it delivered, or the successor it was rotated out for."""
        self._ws = ws
        self._end = None
        self._rotate_requested.clear()
        self.connection_id = connection_id
        self.stats.connects += 1
        received_before = self.stats.received
        self._last_frame_monotonic = time.monotonic()
        if self._checks is not None:
            self._checks.new_connection(connection_id)
        builder = RecordBuilder(
            self.spec.kafka,
            source=self.name,
            connection_id=connection_id,
            inflate=self.spec.connection.inflate,
        )
        helpers: list[asyncio.Task[None]] = []
        failure: Failure | None = None
        try:
            if first is None:
                for message in self.spec.subscribe:
                    await ws.send(message)
            self._set_state(ConnectionState.CONNECTED)
            self._log_connected(ws)
            helpers = self._start_helpers(ws)
            await self._read(ws, builder, first)
        except ConnectionClosed as exc:
            failure = self._end or describe_failure(exc)
        finally:
            self._ws = None
            for task in helpers:
                task.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
        if self._successor is not None:
            return self._successor
        frames = self.stats.received - received_before
        return failure or self._end or Failure("ConnectionEnded", "connection ended"), frames

    def _log_connected(self, ws: SourceConnection) -> None:
        """One line per connection; an unverified one is flagged every time, not only once."""
        log.info(
            "%s: connected to %s (connection %s, subprotocol %s)",
            self.name,
            self.spec.url,
            self.connection_id,
            ws.subprotocol or "none",
        )
        if self.spec.tls.insecure_skip_verify and self.spec.url.startswith("wss://"):
            log.warning(
                "%s: connection %s is NOT verified: TLS certificate checks are disabled "
                "(insecureSkipVerify)",
                self.name,
                self.connection_id,
            )

    def _start_helpers(self, ws: SourceConnection) -> list[asyncio.Task[None]]:
        conn = self.spec.connection
        helpers = []
        if conn.ping_interval_seconds:
            helpers.append(asyncio.create_task(self._keepalive(ws), name="keepalive"))
        if conn.stale_after_seconds:
            helpers.append(asyncio.create_task(self._watch_staleness(ws), name="watchdog"))
        if conn.heartbeat is not None:
            helpers.append(asyncio.create_task(self._heartbeat(ws), name="heartbeat"))
        helpers.append(asyncio.create_task(self._rotate_when_asked(ws), name="rotation"))
        return helpers

    async def _read(self, ws: SourceConnection, builder: RecordBuilder, first: Data | None) -> None:
        """The hot path: one iteration per frame, no logging, no JSON unless configured.

        Records are handed to the producer once per loop wake-up (``_schedule_hand_over``),
        not once per frame: frames that arrived together are read without suspending, then
        produced as one batch.
        """
        stats = self.stats
        flow = self._flow
        admit = flow.admit
        build = builder.build
        checks = self._checks
        schedule = self._schedule_hand_over
        time_ns = time.time_ns
        recv: Callable[[], Awaitable[Data]] = ws.recv
        if first is not None:
            recv = _Replay(first, ws.recv)
        sequence = 0
        pause = flow.must_pause()
        while True:
            if pause and not self._stopping.is_set():
                await self._wait_for_room()
                pause = False
            data = await recv()
            received_ns = time_ns()
            if isinstance(data, str):
                payload = data.encode()
                binary = False
            else:
                payload = data
                binary = True
            sequence += 1
            stats.received += 1
            stats.received_bytes += len(payload)
            stats.last_frame_at = received_ns / 1e9
            self._last_frame_monotonic = time.monotonic()
            try:
                record = build(payload, binary, received_ns // 1000, sequence)
            except FrameRejected as exc:
                stats.rejected_frames += 1
                self._rejections.add(str(exc))
                continue
            if checks is not None and not checks.admit(record.value):
                continue
            pause = admit(record)
            schedule()

    def _schedule_hand_over(self) -> None:
        """Hand the admitted records to the producer at the next loop iteration (once), or
        now when a full batch is waiting, so librdkafka's batches fill while frames pour in."""
        if self._flow.pending >= HAND_OVER_BATCH:
            self._hand_over()
        elif not self._hand_over_scheduled:
            self._hand_over_scheduled = True
            asyncio.get_running_loop().call_soon(self._scheduled_hand_over)

    def _scheduled_hand_over(self) -> None:
        self._hand_over_scheduled = False
        self._hand_over()

    def _hand_over(self) -> None:
        """Give the producer what the window allows; what its queue refuses goes back."""
        batch = self._flow.take()
        if batch:
            taken = self._sink.produce(batch)
            if taken < len(batch):
                self._flow.give_back(batch[taken:])

    async def _wait_for_room(self) -> None:
        """Overflow policy ``block``: stop reading until the buffer drains below the watermark."""
        self._paused = True
        try:
            while not self._flow.may_resume() and not self._stopping.is_set():
                self._settled.clear()
                await self._settled.wait()
        finally:
            self._paused = False
            self._resumed_monotonic = time.monotonic()

    def _on_settled(self) -> None:
        """Called on the loop by the poll thread when records were acknowledged."""
        self._hand_over()
        self._settled.set()

    def _alive_since(self, moment: float) -> bool:
        """Whether silence since ``moment`` proves nothing about the peer.

        While reading is paused (overflow ``block``), neither pongs nor frames can be read, and
        just after a resume they wait behind the backlog; a data frame proves the peer alive.
        """
        return (
            self._paused
            or self._resumed_monotonic >= moment
            or self._last_frame_monotonic >= moment
        )

    async def _rotate_when_asked(self, ws: SourceConnection) -> None:
        """Make-before-break: on :meth:`rotate` or every ``rotation.intervalSeconds``, open the
        successor; once it delivered a data frame, close ``ws`` with 1000. The reader goes on
        reading ``ws`` up to the server's close frame (everything the server sent before our
        close arrived), then the session hands over to the successor."""
        interval = self.spec.rotation.interval_seconds
        while True:
            if interval:
                await wait_event(self._rotate_requested, interval)
            else:
                await self._rotate_requested.wait()
            self._rotate_requested.clear()
            successor = await self._open_successor()
            if successor is not None:
                self._successor = successor
                log.info(
                    "%s: rotating connection %s to %s",
                    self.name,
                    self.connection_id,
                    successor.connection_id,
                )
                await ws.close(1000, "ws2kafka rotation")
                return

    async def _open_successor(self) -> Successor | None:
        """A new connection, subscribed, with its first data frame; None (counted and logged)
        when it fails or sends nothing within ``rotation.switchTimeoutSeconds``."""
        timeout = self.spec.rotation.switch_timeout_seconds
        ws: SourceConnection | None = None
        handed_over = False
        try:
            async with asyncio.timeout(timeout):
                ws = await self._opener(self.spec, self._connect_kwargs)
                for message in self.spec.subscribe:
                    await ws.send(message)
                first = await ws.recv()
            handed_over = True
            return Successor(ws, new_connection_id(), first)
        except Exception as exc:  # the old connection goes on; the next rotation tries again
            self.stats.rotation_failures += 1
            failure = describe_failure(exc)
            log.warning(
                "%s: rotation abandoned, connection %s stays: %s (%s)",
                self.name,
                self.connection_id,
                failure.message,
                failure.reason,
            )
            return None
        finally:
            if ws is not None and not handed_over:
                await ws.close(1000, "ws2kafka rotation abandoned")

    async def _keepalive(self, ws: SourceConnection) -> None:
        """Protocol pings; a missing pong drops the connection (half-open detection).

        Suspended while the overflow policy pauses reading: the pong cannot be read then, and
        a deliberate pause is not a dead peer. A pong late behind a backlog does not count
        either (see :meth:`_alive_since`).
        """
        conn = self.spec.connection
        while True:
            await asyncio.sleep(conn.ping_interval_seconds)
            if self.paused():
                continue
            sent_at = time.monotonic()
            pong = await ws.ping()
            try:
                async with asyncio.timeout(conn.ping_timeout_seconds):
                    await asyncio.shield(pong)
            except TimeoutError:
                if self._alive_since(sent_at):
                    continue
                self._end = Failure(
                    "PingTimeout", f"no pong within {conn.ping_timeout_seconds:g} s", 1006
                )
                ws.transport.abort()
                return

    async def _watch_staleness(self, ws: SourceConnection) -> None:
        """No data frame for ``staleAfterSeconds`` (while reading) -> reconnect."""
        stale_after = self.spec.connection.stale_after_seconds
        while True:
            await asyncio.sleep(min(stale_after / 4, 5.0))
            silent = time.monotonic() - max(self._last_frame_monotonic, self._resumed_monotonic)
            if silent >= stale_after and not self.paused():
                self._end = Failure("StaleData", f"no data frame for {silent:.1f} s")
                ws.transport.abort()
                return

    async def _heartbeat(self, ws: SourceConnection) -> None:
        heartbeat = self.spec.connection.heartbeat
        assert heartbeat is not None
        while True:
            await asyncio.sleep(heartbeat.interval_seconds)
            await ws.send(heartbeat.message)

    # -- draining and reporting ---------------------------------------------------------

    async def _drain(self) -> Summary:
        """Deliver everything received, within the drain timeout; count what is left."""
        if self._gave_up is None:
            self._set_state(ConnectionState.DRAINING)
        stats = self.stats
        deadline = time.monotonic() + self.spec.drain_timeout_seconds
        # The producer window stays as it is: librdkafka's queue is sized for it, and every
        # settlement hands over the next records (``_on_settled``) until the buffer is empty.
        self._on_settled()
        while stats.held and time.monotonic() < deadline:
            self._settled.clear()
            await wait_event(self._settled, deadline - time.monotonic())
        await self._sink.close()
        self._log_rates(force=True)
        undelivered = stats.held
        exit_code = ExitCode.OK
        if self._gave_up is not None:
            exit_code = ExitCode.GAVE_UP
        elif undelivered:
            exit_code = ExitCode.UNDELIVERED
        if self._gave_up is None:
            self._set_state(ConnectionState.STOPPED)
        summary = Summary(
            received=stats.received,
            delivered=stats.delivered,
            failed=stats.failed,
            dropped=stats.dropped,
            rejected=stats.rejected,
            undelivered=undelivered,
            reconnects=stats.reconnects,
            exit_code=exit_code,
            deduplicated=stats.dedupe_skipped,
        )
        log.log(
            logging.WARNING if undelivered or stats.failed else logging.INFO,
            "%s: final summary: received=%d produced=%d failed=%d dropped=%d rejected=%d "
            "undelivered=%d reconnects=%d",
            self.name,
            summary.received,
            summary.delivered,
            summary.failed,
            summary.dropped,
            summary.rejected,
            summary.undelivered,
            summary.reconnects,
        )
        return summary

    def _set_state(self, state: ConnectionState, error: str | None = None) -> None:
        if self.stats.set_state(state, error):
            self._state_changed.set()

    async def _report_now(self) -> None:
        snapshot = StatusSnapshot.of(self.stats, self.connection_id, time.time())
        try:
            requests = await self._reporter.report(snapshot)
        except Exception:  # a reporting problem must never stop the data path
            log.exception("%s: status report failed", self.name)
            return
        if requests is not None and requests.rotate:
            self.rotate()

    async def _report_forever(self) -> None:
        while True:
            self._state_changed.clear()
            await self._report_now()
            await wait_event(self._state_changed, self._reporter.interval)

    async def _log_rates_forever(self) -> None:
        while True:
            await asyncio.sleep(RATE_LOG_TICK)
            self._log_rates()

    def _log_rates(self, *, force: bool = False) -> None:
        """Drops and rejections as rate lines: at most one per kind every 10 s, never per frame.

        Drops are counted by the sans-I/O flow control; the new ones since the last look are
        added here, off the hot path.
        """
        dropped = self.stats.dropped
        if dropped > self._drops_logged:
            buffer = self.spec.buffer
            detail = f"buffer full, overflow {buffer.overflow.value}, max {buffer.max_messages}"
            self._drops.add(detail, dropped - self._drops_logged)
            self._drops_logged = dropped
        self._drops.flush(force=force)
        self._rejections.flush(force=force)
        self._sequence_gaps.flush(force=force)
        self._sequence_regressions.flush(force=force)

    async def _summarize_forever(self) -> None:
        """The periodic summary line, written whether data flows or not."""
        stats = self.stats
        previous = 0
        while True:
            await asyncio.sleep(self._summary_interval)
            last = (
                f"{time.time() - stats.last_frame_at:.1f} s ago" if stats.last_frame_at else "never"
            )
            log.info(
                "%s: state=%s received=%d (+%d) produced=%d failed=%d dropped=%d buffered=%d "
                "reconnects=%d last frame %s",
                self.name,
                stats.state.value,
                stats.received,
                stats.received - previous,
                stats.delivered,
                stats.failed,
                stats.dropped,
                stats.held,
                stats.reconnects,
                last,
            )
            previous = stats.received


class _Replay:
    """``recv`` of a rotated-in connection: its first frame (already read, to prove the
    connection delivers data), then the socket's. That frame's receive time is the moment it
    is taken over, at most the old connection's close handshake later."""

    def __init__(self, first: Data, recv: Callable[[], Awaitable[Data]]) -> None:
        self._first: Data | None = first
        self._recv = recv

    async def __call__(self) -> Data:
        first = self._first
        if first is None:
            return await self._recv()
        self._first = None
        return first

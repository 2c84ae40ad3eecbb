"""The bridge service: one WebSocket connection at a time, every frame into Kafka.

Lifecycle: :meth:`Bridge.run` connects (with capped, jittered backoff), subscribes, reads until
the connection ends or :meth:`Bridge.stop` is called, and reconnects. On stop it closes the
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
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from .backoff import delay_bound, full_jitter
from .config import WebSocketSourceSpec
from .errors import GaveUp
from .flow import FlowControl
from .framing import Frame, FrameRejected, RecordBuilder
from .ratelog import RateLimitedLog
from .reporting import NullReporter, StateReporter, StatusSnapshot
from .sink import KafkaSink
from .source import Failure, build_connect_kwargs, describe_failure, open_connection
from .stats import BridgeStats, ConnectionState

log = logging.getLogger(__name__)

#: Seconds between two summary log lines (the Java connector's 30 s status log, but always).
SUMMARY_INTERVAL = 30.0
#: Seconds between two looks at the drop and rejection counts (each logs at most every 10 s).
RATE_LOG_TICK = 1.0

Opener = Callable[[WebSocketSourceSpec, dict[str, Any]], Awaitable[ClientConnection]]


async def wait_event(event: asyncio.Event, timeout: float) -> bool:
    """Wait for ``event`` at most ``timeout`` seconds; returns whether it is set.

    ``asyncio.timeout`` rather than ``wait_for``: on Python 3.11, ``wait_for`` swallows a
    cancellation that arrives as the event is set, and the cancelled task then waits on.
    """
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(max(0.0, timeout)):
            await event.wait()
    return event.is_set()


class ExitCode:
    """Process exit codes of ``ws2kafka-bridge``."""

    OK = 0
    UNDELIVERED = 1
    """Stopped, but some received frames could not be delivered (counted in the summary)."""
    CONFIG = 2
    GAVE_UP = 3


@dataclass(frozen=True)
class Summary:
    """The final accounting: received == delivered + failed + dropped + rejected + undelivered."""

    received: int
    delivered: int
    failed: int
    dropped: int
    rejected: int
    undelivered: int
    reconnects: int
    exit_code: int


class Bridge:
    """Streams one WebSocket source into Kafka; see the module docstring for the lifecycle."""

    def __init__(
        self,
        spec: WebSocketSourceSpec,
        *,
        name: str,
        reporter: StateReporter | None = None,
        opener: Opener = open_connection,
        summary_interval: float = SUMMARY_INTERVAL,
    ) -> None:
        self.spec = spec
        self.name = name
        self.stats = BridgeStats()
        self.connection_id: str | None = None
        self._reporter: StateReporter = reporter or NullReporter()
        self._opener = opener
        self._connect_kwargs = build_connect_kwargs(spec)  # resolves secrets: fails early
        self._summary_interval = summary_interval
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
        self._ws: ClientConnection | None = None
        self._end: Failure | None = None
        self._last_frame_monotonic = time.monotonic()
        self._gave_up: GaveUp | None = None
        self._closing: asyncio.Task[None] | None = None

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
        try:
            await self._connect_forever()
        finally:
            summary = await self._drain()
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            await self._report_now()
        return summary

    # -- connecting ---------------------------------------------------------------------

    async def _connect_forever(self) -> None:
        spec = self.spec
        failures = 0
        connected_before = False
        while not self._stopping.is_set():
            self._set_state(ConnectionState.CONNECTING)
            try:
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
            failures = 0
            if connected_before:
                self.stats.reconnects += 1
            connected_before = True
            failure = await self._session(ws)
            if self._stopping.is_set():
                return
            self._count_failure(failure, connect=False)
            if not spec.reconnect.enabled:
                log.error("%s: connection ended and reconnect is disabled", self.name)
                self._give_up(1, failure)
                return
            if not await self._back_off(1, failure):
                return

    async def _open(self) -> ClientConnection | None:
        """The next connection, or None when :meth:`stop` comes first.

        A handshake may take up to ``connectTimeoutSeconds``, and :meth:`stop` cannot close a
        connection that does not exist yet: without this race, a stop during the handshake
        would wait for it, and a connection opened after the stop would be read forever.
        """
        opening: asyncio.Future[ClientConnection] = asyncio.ensure_future(
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

    async def _back_off(self, attempt: int, failure: Failure) -> bool:
        """Sleep before the next attempt; False when the bridge gives up or is stopping."""
        reconnect = self.spec.reconnect
        if reconnect.max_attempts and attempt >= reconnect.max_attempts:
            self._give_up(attempt, failure)
            return False
        if failure.authentication:
            delay = delay_bound(attempt, reconnect.max_delay_seconds, reconnect.max_delay_seconds)
            state = ConnectionState.AUTH_FAILED
        else:
            delay = full_jitter(
                attempt, reconnect.initial_delay_seconds, reconnect.max_delay_seconds
            )
            state = ConnectionState.BACKOFF
        if failure.retry_after is not None:
            delay = min(max(delay, failure.retry_after), reconnect.max_delay_seconds)
        self._set_state(state, f"{failure.reason}: {failure.message}")
        log.warning(
            "%s: %s (%s); attempt %d, next in %.1f s",
            self.name,
            failure.message,
            failure.reason,
            attempt,
            delay,
        )
        await wait_event(self._stopping, delay)
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

    async def _session(self, ws: ClientConnection) -> Failure:
        """Subscribe, then read until the connection ends; returns why it ended."""
        self._ws = ws
        self._end = None
        self.connection_id = uuid.uuid4().hex[:12]
        self.stats.connects += 1
        self._last_frame_monotonic = time.monotonic()
        builder = RecordBuilder(
            self.spec.kafka,
            source=self.name,
            connection_id=self.connection_id,
            inflate=self.spec.connection.inflate,
        )
        helpers: list[asyncio.Task[None]] = []
        try:
            for message in self.spec.subscribe:
                await ws.send(message)
            self._set_state(ConnectionState.CONNECTED)
            self._log_connected(ws)
            helpers = self._start_helpers(ws)
            await self._read(ws, builder)
        except ConnectionClosed as exc:
            return self._end or describe_failure(exc)
        finally:
            self._ws = None
            for task in helpers:
                task.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
        return self._end or Failure("ConnectionEnded", "connection ended")

    def _log_connected(self, ws: ClientConnection) -> None:
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

    def _start_helpers(self, ws: ClientConnection) -> list[asyncio.Task[None]]:
        conn = self.spec.connection
        helpers = []
        if conn.ping_interval_seconds:
            helpers.append(asyncio.create_task(self._keepalive(ws), name="keepalive"))
        if conn.stale_after_seconds:
            helpers.append(asyncio.create_task(self._watch_staleness(ws), name="watchdog"))
        if conn.heartbeat is not None:
            helpers.append(asyncio.create_task(self._heartbeat(ws), name="heartbeat"))
        return helpers

    async def _read(self, ws: ClientConnection, builder: RecordBuilder) -> None:
        """The hot path: one iteration per frame, no logging, no JSON unless configured."""
        stats = self.stats
        flow = self._flow
        produce = self._sink.produce
        give_back = flow.give_back
        recv = ws.recv
        sequence = 0
        while True:
            if flow.must_pause() and not self._stopping.is_set():
                await self._wait_for_room()
            data = await recv()
            received_ns = time.time_ns()
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
                record = builder.build(Frame(payload, binary, received_ns // 1000, sequence))
            except FrameRejected as exc:
                stats.rejected_frames += 1
                self._rejections.add(str(exc))
                continue
            flow.admit(record)
            batch = flow.take()
            if batch:
                taken = produce(batch)
                if taken < len(batch):
                    give_back(batch[taken:])

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
        batch = self._flow.take()
        if batch:
            taken = self._sink.produce(batch)
            if taken < len(batch):
                self._flow.give_back(batch[taken:])
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

    async def _keepalive(self, ws: ClientConnection) -> None:
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

    async def _watch_staleness(self, ws: ClientConnection) -> None:
        """No data frame for ``staleAfterSeconds`` (while reading) -> reconnect."""
        stale_after = self.spec.connection.stale_after_seconds
        while True:
            await asyncio.sleep(min(stale_after / 4, 5.0))
            silent = time.monotonic() - max(self._last_frame_monotonic, self._resumed_monotonic)
            if silent >= stale_after and not self.paused():
                self._end = Failure("StaleData", f"no data frame for {silent:.1f} s")
                ws.transport.abort()
                return

    async def _heartbeat(self, ws: ClientConnection) -> None:
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
            await self._reporter.report(snapshot)
        except Exception:  # a reporting problem must never stop the data path
            log.exception("%s: status report failed", self.name)

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

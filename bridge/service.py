"""The bridge: one WebSocket source into Kafka, from start to the final summary.

:meth:`Bridge.run` runs one :class:`~.link.Link` per share of the source (one without
``streams``): each connects, runs a :class:`~.session.Session` on its connection until it
ends or :meth:`Bridge.stop` is called, and follows its :class:`~.supervisor.Supervisor`'s
decision (wait and reconnect, or give up: then the whole bridge ends); the interval between
two connections is recorded as a gap (:mod:`.gaps`). :meth:`Bridge.rotate` (or
``rotation.intervalSeconds``) replaces the connections make-before-break, without a gap.
:meth:`Bridge.reshare` applies a change of ``streams.names`` while running: only the
connections whose share changed are replaced (make-before-break), opened or closed.
Records go through the
:class:`~.pipeline.Pipeline`. On stop it closes the socket with 1001, keeps reading what the
server had already sent, then waits up to ``drainTimeoutSeconds`` for Kafka to acknowledge
every received frame, and logs a final summary. What could not be delivered is counted, never
silently lost.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from .config import Client, WebSocketSourceSpec
from .connect_gate import ConnectGate
from .errors import ConfigError, GaveUp, ProducerFatal
from .framing import HEADER_SOURCE, Record
from .gaps import CONTROL_GAP, HEADER_CONTROL, Gap
from .kafka_health import KafkaVerdict
from .link import Link, LinkHooks
from .messages import MessageRules
from .picows_client import open_picows
from .pipeline import Pipeline, SinkFactory, kafka_sink
from .ratelog import RateLimitedLog
from .reporting import (
    LinkState,
    NullReporter,
    StateReporter,
    StatusSnapshot,
    connections_summary,
    topics_written,
)
from .routing import TopicRouter
from .runstate import RunState, UncleanExit
from .secret_watch import (
    LIVE_PRODUCER_SECRETS,
    SECRET_CHECK_SECONDS,
    SecretWatch,
    rekeyed,
    sasl_credentials,
)
from .sequence import FrameChecks, SequenceGap
from .session import SessionContext
from .source import Opener, SourceConnection, open_connection
from .stats import BridgeStats, ConnectionState
from .streams import Share, changed_connections, live_change, reassign, shares
from .supervisor import Supervisor
from .timeouts import wait_event
from .token_client import TokenKeeper

log = logging.getLogger(__name__)

#: Seconds between two summary log lines (the Java connector's 30 s status log, but always).
SUMMARY_INTERVAL = 30.0
#: Seconds between two looks at the drop and rejection counts (each logs at most every 10 s).
RATE_LOG_TICK = 1.0


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
    PRODUCER_FATAL = 4
    """The Kafka producer failed fatally (librdkafka: it must be recreated): a restart does."""


@dataclass(frozen=True)
class Summary:
    """The final accounting: received + split == delivered + failed + dropped + rejected +
    undelivered + deduplicated + control + split_empty (a frame split into n records counts
    n - 1 in ``split``; one whose array was empty counts in ``split_empty``)."""

    received: int
    delivered: int
    failed: int
    dropped: int
    rejected: int
    undelivered: int
    reconnects: int
    exit_code: int
    deduplicated: int = 0
    control: int = 0
    """Frames a message rule or the subscription took out of the data stream."""
    split: int = 0
    split_empty: int = 0

    @property
    def balanced(self) -> bool:
        """Every received frame is accounted for, exactly once."""
        accounted = self.delivered + self.failed + self.dropped + self.rejected
        left_out = self.undelivered + self.deduplicated + self.control + self.split_empty
        return self.received + self.split == accounted + left_out


#: The bridge's state with several connections is its worst connection's: this order.
_STATE_ORDER = (
    ConnectionState.GAVE_UP,
    ConnectionState.AUTH_FAILED,
    ConnectionState.BACKOFF,
    ConnectionState.CONNECTING,
    ConnectionState.STARTING,
    ConnectionState.CONNECTED,
    ConnectionState.DRAINING,
    ConnectionState.STOPPED,
    ConnectionState.STARTUP_FAILED,
)


async def _no_connection() -> SourceConnection | None:
    """The session context's opener until a link puts its own in (never called)."""
    raise AssertionError("a session runs with its link's context")


def _message_counts(summary: Summary) -> str:
    """The summary's counts of control frames and split records, when there are any."""
    counts = {
        "deduplicated": summary.deduplicated,
        "control": summary.control,
        "split": summary.split,
        "splitEmpty": summary.split_empty,
    }
    return "".join(f" {name}={value}" for name, value in counts.items() if value)


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
        sink_factory: SinkFactory = kafka_sink,
        unclean_exit: UncleanExit | None = None,
        secret_check_interval: float = SECRET_CHECK_SECONDS,
    ) -> None:
        self.spec = spec
        self.name = name
        self.stats = BridgeStats()
        self._reporter: StateReporter = reporter or NullReporter()
        self._opener = opener or OPENERS[spec.connection.client]
        self._summary_interval = summary_interval
        self._secret_check_interval = secret_check_interval
        self._run_state = RunState(state_file) if state_file is not None else None
        # the state file knows a killed run of this container; ``unclean_exit`` comes from
        # elsewhere (a bridge pod's predecessor, from its last status report)
        previous = self._run_state.previous_unclean_exit() if self._run_state else None
        unclean = previous or unclean_exit
        self._rejections = RateLimitedLog(log, "frames rejected", prefix=f"{name}: ")
        self._drops = RateLimitedLog(log, "frames dropped", prefix=f"{name}: ")
        self._drops_logged = 0
        self._state_file_errors = RateLimitedLog(
            log, "state-file writes failed", prefix=f"{name}: "
        )
        self._pipeline = Pipeline(
            spec,
            self.stats,
            name=name,
            on_fatal=self._producer_failed,
            on_refused=self._rejections.add,
            sink_factory=sink_factory,
        )
        self._producer_fatal: ProducerFatal | None = None
        self._stopping = asyncio.Event()
        self._state_changed = asyncio.Event()
        self._gave_up: GaveUp | None = None
        self._closing: list[asyncio.Task[None]] = []
        self._sequence_gaps = RateLimitedLog(log, "sequence gaps", prefix=f"{name}: ")
        self._sequence_regressions = RateLimitedLog(log, "sequence regressions", prefix=f"{name}: ")
        self.tokens = (
            TokenKeeper(spec, self.stats, label=name, on_change=self._state_changed.set)
            if spec.tokens
            else None
        )
        self._context = SessionContext(
            spec=spec,
            name=name,
            stats=self.stats,
            pipeline=self._pipeline,
            checks=None,
            rules=MessageRules(spec.messages.rules),
            router=TopicRouter(spec.kafka.routing, self.stats) if spec.kafka.routing else None,
            stopping=self._stopping,
            rejections=self._rejections,
            open_connection=_no_connection,
            set_state=lambda state: None,
            produce_control=self._produce_control_record,
            report_now=self._state_changed.set,
        )
        self._hooks = LinkHooks(
            stats=self.stats,
            gate=ConnectGate(spec.connect_rate),
            opener=self._opener,
            on_state=self._link_state,
            on_gap=self._record_gap,
            on_give_up=self._give_up,
            tokens=self.tokens,
        )
        self._link_tasks: set[asyncio.Task[None]] = set()
        self._links_changed = asyncio.Event()
        self._running = False
        all_shares = shares(spec)
        self._indexed = len(all_shares) > 1
        self.links = [
            self._new_link(share, unclean if share.index == 0 else None) for share in all_shares
        ]
        """One per share of the source's streams (one without ``streams``), by index."""

    def _new_link(self, share: Share, unclean: UncleanExit | None) -> Link:
        """The link of one share, with its own supervisor and frame checks."""
        spec, name = self.spec, self.name
        return Link(
            share,
            self._hooks,
            label=f"{name}[{share.index}]" if self._indexed else name,
            context=self._context,
            checks=self._frame_checks(),
            supervisor=Supervisor(
                spec.reconnect,
                source=name,
                started_at=self.stats.started_at,
                unclean=unclean,
                connection=share.index if spec.streams is not None else None,
                streams=share.streams,
                unclean_streams=tuple(spec.streams.names) if spec.streams is not None else (),
            ),
        )

    def _frame_checks(self) -> FrameChecks | None:
        """A link's own dedupe and sequence checks (each connection keeps its own)."""
        spec = self.spec
        if spec.sequence is None and spec.rotation.dedupe is None:
            return None
        return FrameChecks(spec.sequence, spec.rotation.dedupe, self.stats, self._log_sequence_gap)

    @property
    def connection_id(self) -> str | None:
        """The first link's current connection (what the state file and a single-connection
        status report name)."""
        return self.links[0].connection_id

    # -- public API ---------------------------------------------------------------------

    def stop(self) -> None:
        """Request a graceful stop: close the socket with 1001, drain, summarize."""
        if self._stopping.is_set():
            return
        log.info("%s: stopping: closing the connection and draining the buffer", self.name)
        self._end_links()

    def _end_links(self) -> None:
        """Every link stops: each open connection is closed with 1001 and read to its end."""
        self._stopping.set()
        closing = [link.end(1001, "ws2kafka shutting down") for link in self.links]
        self._closing.extend(task for task in closing if task is not None)
        self._pipeline.wake()

    def rotate(self) -> None:
        """Replace the connections make-before-break (no effect on one not connected).

        A new connection is opened and subscribed; once it delivers its first data frame the
        old one is closed with 1000 and read to its end, then the new one takes over.
        """
        for link in self.links:
            if link.session is not None:
                link.session.rotate()

    def reshare(self, spec: WebSocketSourceSpec) -> bool:
        """Apply ``spec`` while running if it differs in ``streams.names`` only (False: any
        other change, which needs a new bridge).

        The streams are reassigned with as few changes as possible (:func:`.streams.reassign`);
        a connection whose share changed is replaced make-before-break, a new one opens
        through the connect gate, one left without streams is closed with 1000 and read to
        its end. The other connections are not touched.
        """
        if self._stopping.is_set() or not live_change(self.spec, spec):
            return False
        assert spec.streams is not None
        old = {link.share.index: link.share.streams for link in self.links}
        new = reassign(old, spec.streams.names, spec.streams.max_per_connection)
        changed = changed_connections(old, new)
        self.spec = spec
        self._indexed = self._indexed or len(new) > 1
        links = {link.share.index: link for link in self.links}
        for share in shares(spec, new):
            if share.index not in changed:
                continue
            if share.index in links:
                links[share.index].reshare(share)
            else:
                links[share.index] = self._new_link(share, None)
                if self._running:
                    self._start(links[share.index])
        for index in changed - set(new):
            ending = links.pop(index).end(1000, "ws2kafka: its streams were removed")
            if ending is not None:
                self._closing.append(ending)
        self.links = [links[index] for index in sorted(links)]
        log.info(
            "%s: streams changed: %d connections (%d replaced, %d opened, %d closed, %d kept)",
            self.name,
            len(new),
            len(changed & set(old) & set(new)),
            len(set(new) - set(old)),
            len(set(old) - set(new)),
            len(set(new) - changed),
        )
        self._set_state(self._worst_state())
        return True

    async def rekey(self, spec: WebSocketSourceSpec) -> bool:
        """Apply ``spec`` while running if it differs in secret values only (inline mode read
        its Secrets again; False: no such change). Every connection is replaced
        make-before-break with the new values, and a new SASL credential reaches the
        producer, as when a pod's secret file changes."""
        change = None if self._stopping.is_set() else rekeyed(self.spec, spec)
        if change is None:
            return False
        self.spec = spec
        if self.tokens is not None:
            self.tokens.rekey(spec)
        if change.connection:
            log.info("%s: a secret changed: rotating the connections to use it", self.name)
            assignment = {link.share.index: link.share.streams for link in self.links}
            renewed = {share.index: share for share in shares(spec, assignment)}
            for link in self.links:
                link.reshare(renewed[link.share.index])
        if change.producer:
            await self._producer_secrets_changed(change.producer)
        return True

    def paused(self) -> bool:
        """Reading is paused by the ``block`` overflow policy."""
        return self._pipeline.paused

    def kafka_verdict(self) -> KafkaVerdict:
        """The Kafka side in one reason (status, conditions)."""
        return self._pipeline.kafka_verdict()

    @property
    def ready(self) -> bool:
        """Every connection connected, and none stale (used by ``/readyz``)."""
        return self.stats.state is ConnectionState.CONNECTED and all(
            link.session is not None and not link.session.stale() for link in self.links
        )

    async def run(self) -> Summary:
        """Run until stopped, given up or the producer failed; always drains and returns the
        final accounting.

        One exit path: whatever ends the run (a stop, an error, a cancellation), the
        background tasks are cancelled and awaited and the producer's poll thread is stopped
        before ``run`` returns or raises, so nothing of a finished bridge lives on.
        """
        self._pipeline.start(asyncio.get_running_loop())
        background = [
            asyncio.create_task(self._report_forever(), name="report"),
            asyncio.create_task(self._summarize_forever(), name="summary"),
            asyncio.create_task(self._log_rates_forever(), name="rate-logs"),
        ]
        if self._run_state is not None:
            background.append(asyncio.create_task(self._persist_forever(), name="run-state"))
        connection_secrets = SecretWatch.of_connection(self.spec)
        producer_secrets = SecretWatch.of_producer(self.spec)
        if connection_secrets.watching or producer_secrets.watching:
            watching = self._watch_secrets_forever(connection_secrets, producer_secrets)
            background.append(asyncio.create_task(watching, name="secrets"))
        if self.tokens is not None:
            keep_alive = self.tokens.keep_alive(self._stopping)
            background.append(asyncio.create_task(keep_alive, name="token-keep-alive"))
        try:
            try:
                await self._run_links()
            finally:
                summary = await self._drain()
        finally:
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            if self.tokens is not None:
                await self.tokens.close()
            await self._pipeline.close()
        await self._report_now()
        if self._run_state is not None:  # drained and accounted for: not a crash
            await self._persist(clean=True)
        return summary

    def _producer_failed(self, error: ProducerFatal) -> None:
        """librdkafka cannot go on: stop reading (what is held is counted as undelivered)."""
        self._producer_fatal = error
        self.stats.last_error = f"ProducerFatal: {error}"
        log.error("%s: the Kafka producer failed fatally (%s): stopping", self.name, error)
        self.stop()

    async def _watch_secrets_forever(self, connection: SecretWatch, producer: SecretWatch) -> None:
        """Read the secret files again every few seconds: a rotated Secret is taken up by a
        rotation of every connection, without a restart (:mod:`.secret_watch`)."""
        while True:
            await asyncio.sleep(self._secret_check_interval)
            if await asyncio.to_thread(connection.changed):
                log.info("%s: a secret changed: rotating the connections to use it", self.name)
                try:
                    for link in self.links:
                        link.secrets_changed()
                except ConfigError as exc:  # a file swapped again meanwhile: next look
                    log.warning("%s: cannot read the changed secrets: %s", self.name, exc)
            changed = await asyncio.to_thread(producer.changed)
            if changed:
                await self._producer_secrets_changed(changed)

    async def _producer_secrets_changed(self, names: list[str]) -> None:
        """Hand a rotated SASL username or password to the running producer; any other
        changed property waits for the next start."""
        live = [name for name in names if name in LIVE_PRODUCER_SECRETS]
        credentials = await asyncio.to_thread(sasl_credentials, self.spec.kafka) if live else None
        if credentials is not None:
            self._pipeline.set_sasl_credentials(*credentials)
            log.info(
                "%s: kafka.secretProperties %s changed: the producer authenticates with the "
                "new value from its next connection to a broker",
                self.name,
                ", ".join(live),
            )
        fixed = [name for name in names if credentials is None or name not in live]
        if fixed:
            log.warning(
                "%s: kafka.secretProperties %s changed: the producer keeps the old value "
                "until the bridge restarts",
                self.name,
                ", ".join(fixed),
            )

    async def _persist_forever(self) -> None:
        """Leave a trace every second, so a killed run is reported as a gap by the next."""
        while True:
            await self._persist(clean=False)
            await asyncio.sleep(RUN_STATE_SECONDS)

    async def _persist(self, *, clean: bool) -> None:
        """Write the run-state file in a thread (a slow disk must not stall the reads); a
        failed write is logged as a rate and retried at the next tick, never fatal."""
        run_state = self._run_state
        assert run_state is not None
        try:
            await asyncio.to_thread(
                run_state.write,
                connection_id=self.connection_id,
                received=self.stats.received,
                clean=clean,
            )
        except OSError as exc:
            self._state_file_errors.add(f"{run_state.path}: {exc}")
            self._state_file_errors.flush(force=clean)

    # -- connecting ---------------------------------------------------------------------

    async def _run_links(self) -> None:
        """Every link until the bridge stops, gives up or the producer fails."""
        self._set_state(ConnectionState.CONNECTING)  # before the first report goes out
        self._running = True
        for link in self.links:
            self._start(link)
        tasks = self._link_tasks
        try:
            while tasks:  # links come and go with a live change of the streams
                changed = asyncio.ensure_future(self._links_changed.wait())
                done, _ = await asyncio.wait({*tasks, changed}, return_when=asyncio.FIRST_COMPLETED)
                changed.cancel()
                self._links_changed.clear()
                for task in done - {changed}:
                    tasks.discard(task)
                    task.result()  # a link's unexpected error ends the bridge
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _start(self, link: Link) -> None:
        """Run a link (at the start, or one a live change added)."""
        self._link_tasks.add(asyncio.create_task(link.run(), name=f"link-{link.share.index}"))
        self._links_changed.set()

    def _worst_state(self) -> ConnectionState:
        return min((each.state for each in self.links), key=_STATE_ORDER.index)

    def _link_state(self, link: Link, error: str | None) -> None:
        """A link's state changed: the bridge's is the one of its worst link (one a live
        change closed is not the bridge's any more)."""
        if link in self.links:
            self._set_state(self._worst_state(), error)

    def _give_up(self, error: GaveUp) -> None:
        """A link gave up: the bridge ends (exit 3), its other connections closed."""
        self._gave_up = error
        if not self._stopping.is_set():
            self._end_links()

    def _record_gap(self, gap: Gap) -> None:
        """Count, log, report and (if configured) produce a gap."""
        stats = self.stats
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
        if not self._pipeline.produce_control(self.spec.gaps.topic, record, self._on_gap_delivery):
            self.stats.gap_records_refused += 1
            log.error("%s: the gap record could not be queued for Kafka", self.name)

    def _on_gap_delivery(self, err: object, msg: object) -> None:
        """(poll thread) The delivery report of a gap record."""
        if err is None:
            self.stats.gap_records += 1
        else:
            self.stats.gap_records_failed += 1
            log.error("%s: gap record not delivered: %s", self.name, err)

    def _produce_control_record(self, record: Record) -> None:
        """A frame a rule routed to ``messages.controlTopic``; its delivery is counted apart
        from the data records, like a gap record's."""
        topic = self.spec.messages.control_topic
        if not self._pipeline.produce_control(topic, record, self._on_control_delivery):
            self.stats.control_records_refused += 1
            self._rejections.add("a control record could not be queued for Kafka")

    def _on_control_delivery(self, err: object, msg: object) -> None:
        """(poll thread) The delivery report of a control-topic record."""
        if err is None:
            self.stats.control_records += 1
        else:
            self.stats.control_records_failed += 1

    def _log_sequence_gap(self, gap: SequenceGap) -> None:
        target = self._sequence_regressions if gap.regression else self._sequence_gaps
        target.add(gap.describe())

    # -- draining and reporting ---------------------------------------------------------

    async def _drain(self) -> Summary:
        """Deliver everything received, within the drain timeout; count what is left."""
        if self._gave_up is None:
            self._set_state(ConnectionState.DRAINING)
        stats = self.stats
        await self._pipeline.drain(self.spec.drain_timeout_seconds)
        self._log_rates(force=True)
        undelivered = stats.held
        exit_code = ExitCode.OK
        if self._producer_fatal is not None:
            exit_code = ExitCode.PRODUCER_FATAL
        elif self._gave_up is not None:
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
            control=stats.control_frames,
            split=stats.split_records,
            split_empty=stats.split_empty,
        )
        log.log(
            logging.WARNING if undelivered or stats.failed else logging.INFO,
            "%s: final summary: received=%d produced=%d failed=%d dropped=%d rejected=%d "
            "undelivered=%d reconnects=%d%s",
            self.name,
            summary.received,
            summary.delivered,
            summary.failed,
            summary.dropped,
            summary.rejected,
            summary.undelivered,
            summary.reconnects,
            _message_counts(summary),
        )
        return summary

    def _set_state(self, state: ConnectionState, error: str | None = None) -> None:
        if self.stats.set_state(state, error):
            self._state_changed.set()

    def connections(self) -> dict[str, object]:
        """The summary of the connections (``status.connection.connections``)."""
        states = [
            LinkState(link.share.index, link.state, link.last_error, link.share.streams)
            for link in self.links
        ]
        return connections_summary(states, len(self.links))

    def topics(self) -> tuple[str, ...]:
        """The Kafka topics this bridge writes (``status.topics``)."""
        spec = self.spec
        gaps = spec.gaps.topic if spec.gaps.record else None
        return topics_written(
            spec.kafka.topic, gaps, spec.messages.control_topic, self.stats.routed_topics
        )

    async def _report_now(self) -> None:
        snapshot = StatusSnapshot.of(
            self.stats,
            self.connection_id,
            time.time(),
            kafka=self.kafka_verdict(),
            connections=self.connections(),
            topics=self.topics(),
        )
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
                "%s: state=%s kafka=%s received=%d (+%d) produced=%d failed=%d dropped=%d "
                "buffered=%d reconnects=%d last frame %s",
                self.name,
                stats.state.value,
                self.kafka_verdict().reason.value,
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

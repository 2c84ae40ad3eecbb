"""One WebSocket connection of a bridge, from its subscription to its end.

A session subscribes (unless it is a rotation's successor, subscribed already), reads every
frame into the pipeline, keeps the connection honest (protocol keepalive, staleness watchdog,
application heartbeat) and, when asked or on schedule, opens its successor make-before-break.
It ends with why it ended (:class:`Ended`) or with the :class:`Successor` that takes over.
Everything it shares with its bridge comes through :class:`SessionContext`; a bridge runs one
session at a time today, and several connections per source will run several into one
pipeline.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from websockets.exceptions import ConnectionClosed
from websockets.typing import Data

from .config import MessageRoute, SubscriptionFailurePolicy, WebSocketSourceSpec
from .framing import FrameRejected, Record, RecordBuilder
from .intake import Control, Intake
from .login import LoginState
from .messages import MessageRules
from .pipeline import Pipeline
from .ratelog import RateLimitedLog
from .routing import TopicRouter
from .sequence import FrameChecks
from .source import (
    Failure,
    FrameConsumer,
    SourceConnection,
    as_message,
    describe_failure,
    read_messages,
    shown_url,
)
from .stats import BridgeStats, ConnectionState
from .subscription import SubscriptionState, SubscriptionWatch
from .timeouts import wait_event

log = logging.getLogger(__name__)


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
    """Why a session's connection ended, and how many data frames it delivered."""

    failure: Failure
    frames: int


@dataclass(frozen=True)
class SessionContext:
    """What the sessions of one bridge share with it."""

    spec: WebSocketSourceSpec
    name: str
    stats: BridgeStats
    pipeline: Pipeline
    checks: FrameChecks | None
    rules: MessageRules
    router: TopicRouter | None
    stopping: asyncio.Event
    rejections: RateLimitedLog
    open_connection: Callable[[], Awaitable[SourceConnection | None]]
    """Opens a new connection with the link's current settings and subscribes it (a
    rotation's successor), at the connect gate's turn; None when the link ends first."""
    set_state: Callable[[ConnectionState], None]
    produce_control: Callable[[Record], None]
    """Sends a frame a rule routed to ``control`` to the control topic."""
    report_now: Callable[[], None]
    """Reports the status at once (the subscription's answer)."""
    shown_url: str | None = None
    """The URL as the connect log line shows it (None: ``spec``'s, its secrets ``***``)."""
    expire_token: Callable[[str], None] = lambda name: None
    """A rule said the token ``name`` (``spec.tokens``) expired: fetch it anew."""


class Session:
    """One connection; see the module docstring."""

    def __init__(self, context: SessionContext, ws: SourceConnection, connection_id: str) -> None:
        self._context = context
        self.ws = ws
        self.connection_id = connection_id
        self.data_frames = 0
        """Data frames read (rejected ones included: any frame but a rule's control frame)."""
        self.last_frame_monotonic = time.monotonic()
        """When the staleness watchdog last saw ``data_frames`` grow (or the session began):
        the hot path only counts, the watchdog looks at the clock once per tick."""
        self._end: Failure | None = None
        self._rotate_requested = asyncio.Event()
        self._rotation_required = False
        """A rotation that must happen (a new share): an abandoned one is tried again."""
        self._successor: Successor | None = None
        self._replies: asyncio.Queue[str] = asyncio.Queue()
        spec = context.spec
        self._watch = SubscriptionWatch(spec.subscription) if spec.subscription else None

    def rotate(self, *, until_done: bool = False) -> None:
        """Open the successor now (make-before-break); ``until_done``: if it fails, try again
        after ``reconnect.initialDelaySeconds`` until one takes over."""
        self._rotation_required = self._rotation_required or until_done
        self._rotate_requested.set()

    def stale(self) -> bool:
        """No data frame for ``staleAfterSeconds`` (never, when the watchdog is off)."""
        stale_after = self._context.spec.connection.stale_after_seconds
        return bool(stale_after) and time.monotonic() - self.last_frame_monotonic >= stale_after

    async def run(self, first: Data | None) -> Ended | Successor:
        """Subscribe (unless ``first``, the rotated-in connection's first frame, says it is
        done), then read until the connection ends."""
        context = self._context
        stats = context.stats
        stats.connects += 1
        received_before = stats.received
        if context.checks is not None:
            context.checks.new_connection(self.connection_id)
        builder = RecordBuilder(
            context.spec.kafka,
            source=context.name,
            connection_id=self.connection_id,
            inflate=context.spec.connection.inflate,
        )
        intake = self._intake(builder) if Intake.wanted(context.spec) else None
        helpers: list[asyncio.Task[None]] = []
        failure: Failure | None = None
        try:
            if first is None:
                for message in context.spec.subscribe:
                    await self.ws.send(message)
            self._subscription_sent()
            context.set_state(ConnectionState.CONNECTED)
            self._log_connected()
            helpers = self._start_helpers()
            await self._read(builder, intake, first)
        except ConnectionClosed as exc:
            failure = self._end or describe_failure(exc)
        finally:
            for task in helpers:
                task.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
        if self._successor is not None:
            return self._successor
        ending = failure or self._end or Failure("ConnectionEnded", "connection ended")
        return Ended(ending, stats.received - received_before)

    def _intake(self, builder: RecordBuilder) -> Intake:
        context = self._context
        return Intake(
            context.spec,
            builder,
            context.stats,
            rules=context.rules,
            router=context.router,
            checks=context.checks,
            watch=self._watch,
        )

    def _subscription_sent(self) -> None:
        """The subscribe messages went out: the answer is awaited from now on."""
        if self._watch is None:
            return
        self._watch.sent(time.monotonic())
        self._show_subscription()

    def _show_subscription(self) -> None:
        assert self._watch is not None
        stats = self._context.stats
        stats.subscription = self._watch.state.value
        stats.subscription_message = self._watch.message
        self._context.report_now()

    def _log_connected(self) -> None:
        """One line per connection; an unverified one is flagged every time, not only once."""
        spec, name = self._context.spec, self._context.name
        log.info(
            "%s: connected to %s (connection %s, subprotocol %s)",
            name,
            self._context.shown_url or shown_url(spec),
            self.connection_id,
            self.ws.subprotocol or "none",
        )
        if spec.tls.insecure_skip_verify and spec.url.startswith("wss://"):
            log.warning(
                "%s: connection %s is NOT verified: TLS certificate checks are disabled "
                "(insecureSkipVerify)",
                name,
                self.connection_id,
            )

    def _start_helpers(self) -> list[asyncio.Task[None]]:
        conn = self._context.spec.connection
        helpers = []
        if conn.ping_interval_seconds:
            helpers.append(asyncio.create_task(self._keepalive(), name="keepalive"))
        if conn.stale_after_seconds:
            helpers.append(asyncio.create_task(self._watch_staleness(), name="watchdog"))
        if conn.heartbeat is not None:
            helpers.append(asyncio.create_task(self._heartbeat(), name="heartbeat"))
        if self._watch is not None:
            helpers.append(asyncio.create_task(self._await_subscription(), name="subscription"))
        if self._context.rules.replies:
            helpers.append(asyncio.create_task(self._send_replies(), name="replies"))
        helpers.append(asyncio.create_task(self._rotate_when_asked(), name="rotation"))
        return helpers

    async def _read(
        self, builder: RecordBuilder, intake: Intake | None, first: Data | None
    ) -> None:
        """Every frame into the pipeline until the connection ends.

        The consumer runs once per frame, from picows' callback (no coroutine per frame) or
        from the ``recv()`` loop of the websockets client; it never raises and never waits:
        it returns whether reading must pause, and :func:`~.source.read_messages` waits for
        room then. A frame that needs the :class:`~.intake.Intake` (rules, checks, routing,
        splitting) takes the intake's way, every other one the plain path
        (:meth:`RecordBuilder.build`).
        """
        consumer = self._plain(builder) if intake is None else self._taking(intake)
        if self._context.pipeline.must_pause():
            await self._wait_for_room()
        if first is not None and consumer(*as_message(first)):
            await self._wait_for_room()
        await read_messages(self.ws, consumer, self._wait_for_room)

    def _plain(self, builder: RecordBuilder) -> FrameConsumer:
        """The hot path: a frame's record admitted (the pipeline hands records to the producer
        once per loop wake-up, not once per frame)."""
        stats = self._context.stats
        pipeline = self._context.pipeline
        admit = pipeline.admit
        build = builder.build
        reject = self._reject
        time_ns = time.time_ns
        session = self

        def consume(payload: bytes, binary: bool) -> bool:
            received_ns = time_ns()
            sequence = session.data_frames + 1  # every frame here is data
            session.data_frames = sequence
            stats.received += 1
            stats.received_bytes += len(payload)
            stats.last_frame_ns = received_ns
            try:
                record = build(payload, binary, received_ns // 1000, sequence)
            except Exception as exc:  # a frame, however hostile, never ends the read loop
                reject(exc)
                return False
            return admit(record)

        return consume

    def _taking(self, intake: Intake) -> FrameConsumer:
        """A frame through the intake: its records admitted, its control side acted on."""
        stats = self._context.stats
        pipeline = self._context.pipeline
        admit = pipeline.admit
        take = intake.take
        reject = self._reject
        on_control = self._on_control
        session = self
        sequence = 0

        def consume(payload: bytes, binary: bool) -> bool:
            nonlocal sequence
            received_ns = time.time_ns()
            sequence += 1
            stats.received += 1
            stats.received_bytes += len(payload)
            stats.last_frame_ns = received_ns
            try:
                taken = take(payload, binary, received_ns // 1000, sequence)
            except Exception as exc:  # a frame, however hostile, never ends the read loop
                session.data_frames += 1
                reject(exc)
                return False
            control = taken.control
            # a control frame (a heartbeat, a pong) is no data: it keeps nothing fresh
            if control is None or control.route is MessageRoute.DATA:
                session.data_frames += 1
            pause = False
            for record in taken.records:
                pause = admit(record)
            if control is not None:
                on_control(control)
            return pause

        return consume

    async def _wait_for_room(self) -> None:
        """Overflow ``block`` with a full buffer: read nothing until it drains (unless the
        bridge is stopping: then everything up to the close is read)."""
        context = self._context
        if not context.stopping.is_set():
            await context.pipeline.wait_for_room(context.stopping)

    def _on_control(self, control: Control) -> None:
        """Queue the reply to a ping, send a frame to the control topic, follow the
        subscription (from the consumer: nothing here waits)."""
        context = self._context
        if control.reply is not None:
            self._replies.put_nowait(control.reply)
        if control.record is not None:
            context.produce_control(control.record)
        if control.expires_token is not None:
            self._token_expired(control.rule, control.expires_token)
        if control.answer is not None and self._watch is not None:
            if control.answer.state is SubscriptionState.REJECTED:
                self._subscription_failed()
            elif context.stats.subscription != self._watch.state.value:
                context.stats.last_subscription_failure = None
                self._show_subscription()

    async def _send_replies(self) -> None:
        """The rules' replies, in the order their frames arrived."""
        replies = self._replies
        stats = self._context.stats
        while True:
            reply = await replies.get()
            await self.ws.send(reply)
            stats.replies_sent += 1

    def _subscription_failed(self) -> None:
        """Rejected, or no answer in time: shown in status, then the policy's way out."""
        watch = self._watch
        spec = self._context.spec.subscription
        assert watch is not None
        assert spec is not None
        context = self._context
        context.stats.subscription_failures += 1
        context.stats.last_subscription_failure = (watch.state.value, watch.message)
        self._show_subscription()
        give_up = spec.on_failure is SubscriptionFailurePolicy.GIVE_UP
        log.warning(
            "%s: %s on connection %s: %s; %s",
            context.name,
            watch.state.value,
            self.connection_id,
            watch.message,
            "giving up (subscription.onFailure: giveUp)" if give_up else "reconnecting",
        )
        self._end = Failure(watch.state.value, watch.message, give_up=give_up)
        self.ws.transport.abort()

    def _token_expired(self, rule: str, token: str) -> None:
        """The server said a token expired: this connection ends, the next one connects
        with a new token (the frames before this one are in the pipeline already)."""
        context = self._context
        message = f"the server says token {token} expired (rule {rule})"
        log.warning(
            "%s: %s on connection %s; reconnecting", context.name, message, self.connection_id
        )
        context.expire_token(token)
        self._end = Failure(LoginState.TOKEN_EXPIRED.value, message, token_expired=True)
        self.ws.transport.abort()

    async def _await_subscription(self) -> None:
        """``subscription.timeoutSeconds`` without an answer is a failure too."""
        watch = self._watch
        assert watch is not None
        while (left := watch.seconds_left(time.monotonic())) is not None:
            await asyncio.sleep(left)
            if watch.expired(time.monotonic()):
                self._subscription_failed()
                return

    def _reject(self, exc: Exception) -> None:
        """Count a frame that cannot become a record, by reason, and log it as a rate."""
        reason = "FrameRejected" if isinstance(exc, FrameRejected) else type(exc).__name__
        self._context.stats.reject(reason)
        self._context.rejections.add(f"{reason}: {exc}"[:300])

    def _alive_since(self, moment: float, data_frames: int) -> bool:
        """Whether silence since ``moment`` (when ``data_frames`` had been read) proves
        nothing about the peer.

        While reading is paused (overflow ``block``), neither pongs nor frames can be read, and
        just after a resume they wait behind the backlog; a data frame proves the peer alive.
        """
        pipeline = self._context.pipeline
        return (
            pipeline.paused
            or pipeline.resumed_monotonic >= moment
            or self.data_frames != data_frames
        )

    async def _rotate_when_asked(self) -> None:
        """Make-before-break: on :meth:`rotate` or every ``rotation.intervalSeconds``, open the
        successor; once it delivered a data frame, close this connection with 1000. The
        reader goes on reading it up to the server's close frame (everything the server sent
        before our close arrived), then the session hands over to the successor."""
        interval = self._context.spec.rotation.interval_seconds
        while True:
            if interval:
                await wait_event(self._rotate_requested, interval)
            else:
                await self._rotate_requested.wait()
            self._rotate_requested.clear()
            successor = await self._open_successor()
            if successor is None and self._rotation_required:
                await asyncio.sleep(self._context.spec.reconnect.initial_delay_seconds)
                self._rotate_requested.set()
            if successor is not None:
                self._successor = successor
                log.info(
                    "%s: rotating connection %s to %s",
                    self._context.name,
                    self.connection_id,
                    successor.connection_id,
                )
                await self.ws.close(1000, "ws2kafka rotation")
                return

    async def _open_successor(self) -> Successor | None:
        """A new connection, subscribed, with its first data frame; None (counted and logged)
        when it fails or sends nothing within ``rotation.switchTimeoutSeconds``."""
        context = self._context
        ws: SourceConnection | None = None
        handed_over = False
        try:
            ws = await context.open_connection()
            if ws is None:
                return None
            async with asyncio.timeout(context.spec.rotation.switch_timeout_seconds):
                first = await ws.recv()
            handed_over = True
            return Successor(ws, new_connection_id(), first)
        except Exception as exc:  # the old connection goes on; the next rotation tries again
            context.stats.rotation_failures += 1
            failure = describe_failure(exc)
            log.warning(
                "%s: rotation abandoned, connection %s stays: %s (%s)",
                context.name,
                self.connection_id,
                failure.message,
                failure.reason,
            )
            return None
        finally:
            if ws is not None and not handed_over:
                await ws.close(1000, "ws2kafka rotation abandoned")

    async def _keepalive(self) -> None:
        """Protocol pings; a missing pong drops the connection (half-open detection).

        Suspended while the overflow policy pauses reading: the pong cannot be read then, and
        a deliberate pause is not a dead peer. A pong late behind a backlog does not count
        either (see :meth:`_alive_since`).
        """
        conn = self._context.spec.connection
        pipeline = self._context.pipeline
        while True:
            await asyncio.sleep(conn.ping_interval_seconds)
            if pipeline.paused:
                continue
            sent_at, frames_at = time.monotonic(), self.data_frames
            pong = await self.ws.ping()
            try:
                async with asyncio.timeout(conn.ping_timeout_seconds):
                    await asyncio.shield(pong)
            except TimeoutError:
                if self._alive_since(sent_at, frames_at):
                    continue
                self._end = Failure(
                    "PingTimeout", f"no pong within {conn.ping_timeout_seconds:g} s", 1006
                )
                self.ws.transport.abort()
                return

    async def _watch_staleness(self) -> None:
        """No data frame for ``staleAfterSeconds`` (while reading) -> reconnect.

        Frames are seen once per tick (a quarter of the limit, at most 5 s), so a feed is
        called stale between one limit and one limit plus a tick after its last frame."""
        stale_after = self._context.spec.connection.stale_after_seconds
        pipeline = self._context.pipeline
        seen = self.data_frames
        while True:
            await asyncio.sleep(min(stale_after / 4, 5.0))
            now = time.monotonic()
            if self.data_frames != seen:
                seen = self.data_frames
                self.last_frame_monotonic = now
            silent = now - max(self.last_frame_monotonic, pipeline.resumed_monotonic)
            if silent >= stale_after and not pipeline.paused:
                self._end = Failure("StaleData", f"no data frame for {silent:.1f} s")
                self.ws.transport.abort()
                return

    async def _heartbeat(self) -> None:
        heartbeat = self._context.spec.connection.heartbeat
        assert heartbeat is not None
        while True:
            await asyncio.sleep(heartbeat.interval_seconds)
            await self.ws.send(heartbeat.message)

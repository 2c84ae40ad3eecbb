"""One connection of a bridge, for its whole life: opened, read, lost, opened again.

A link carries out its :class:`~.supervisor.Supervisor`'s decisions for one share of the
source (:mod:`.streams`): it opens a connection through the bridge's shared
:class:`~.connect_gate.ConnectGate`, runs a :class:`~.session.Session` on it, and after every
end or failure waits as decided, or gives up. A bridge without ``streams`` has one link; with
them, one per share, all reading into the one pipeline. Everything a link shares with its
bridge (counters, the gate, gap and state reporting) comes through :class:`LinkHooks`.

A live change of the source's streams gives a link another share (:meth:`Link.reshare`):
its connection is replaced make-before-break, as a rotation does, and every later connection
carries the new share; a link whose streams all went away ends (:meth:`Link.end`).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from websockets.typing import Data

from .config import Inflate, LoginSpec
from .connect_gate import ConnectGate
from .errors import GaveUp
from .framing import inflate, parse_json
from .gaps import Gap
from .login import (
    Credentials,
    LoginAnswer,
    LoginState,
    LoginWatch,
    render_login,
    resolve_credentials,
)
from .policy import POLICY_VIOLATION
from .sequence import FrameChecks
from .session import Ended, Session, SessionContext, Successor, new_connection_id
from .source import (
    REDACTED,
    ConnectFailed,
    Failure,
    Opener,
    SourceConnection,
    as_message,
    build_connect_kwargs,
    build_endpoint,
    describe_failure,
)
from .stats import BridgeStats, ConnectionState
from .streams import Share
from .supervisor import GiveUp, Retry, Supervisor
from .timeouts import wait_event
from .token_client import TokenKeeper
from .tokens import Placed, Token, TokenRefused, place

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LinkHooks:
    """What a link tells its bridge, and the bridge's shared parts it uses."""

    stats: BridgeStats
    gate: ConnectGate
    opener: Opener
    on_state: Callable[[Link, str | None], None]
    """The link's state changed (with the error that changed it)."""
    on_gap: Callable[[Gap], None]
    on_give_up: Callable[[GaveUp], None]
    tokens: TokenKeeper | None = None
    """The bridge's token providers (``spec.tokens``), shared by its links."""


class Link:
    """One share's connection loop; see the module docstring."""

    def __init__(
        self,
        share: Share,
        hooks: LinkHooks,
        *,
        label: str,
        context: SessionContext,
        checks: FrameChecks | None,
        supervisor: Supervisor,
    ) -> None:
        self.share = share
        self.spec = share.spec
        self.label = label
        """How logs name this link: the source, and its index among several."""
        self.state = ConnectionState.STARTING
        self.last_error: str | None = None
        self.connection_id: str | None = None
        self.session: Session | None = None
        self._hooks = hooks
        self._supervisor = supervisor
        self._ending = asyncio.Event()
        self._successor_share = share
        """The share the last successor was opened for (a change may come meanwhile)."""
        self._context = replace(
            context,
            spec=self.spec,
            checks=checks,
            open_connection=self.open_raw,
            set_state=self._set_state,
        )
        self._connect_kwargs = build_connect_kwargs(self.spec)
        self._endpoint = build_endpoint(self.spec)
        self._credentials = self._resolve_credentials()
        self._reauthenticate = False
        self._session_context = self._context
        self._used: dict[str, Token] = {}
        """The tokens the current connection was opened with."""
        self._fresh = False
        """Some of them were fetched for this connection (a refusal is then no expiry)."""

    def _read_secrets(self) -> None:
        """Build the handshake and the login from the secrets as they are now."""
        self._connect_kwargs = build_connect_kwargs(self.spec)
        self._endpoint = build_endpoint(self.spec)
        self._credentials = self._resolve_credentials()

    def secrets_changed(self) -> None:
        """A secret file changed: the next connection uses the new values, and the current
        one is replaced by it now (make-before-break), not at its next failure."""
        self._read_secrets()
        if self.session is not None:
            self.session.rotate(until_done=True)

    def _resolve_credentials(self) -> Credentials | None:
        login = self.spec.login
        return resolve_credentials(login) if login is not None else None

    def reshare(self, share: Share) -> None:
        """Carry ``share`` from now on (other streams, or new secret values): the connection
        is replaced make-before-break (the new one open and subscribed before the old one
        closes; tried again until it is), and every later connection carries the new share."""
        self.share = share
        self.spec = share.spec
        self._context = replace(self._context, spec=share.spec)
        self._read_secrets()
        self._supervisor.reshared(share.streams)
        if self.session is not None:
            self.session.rotate(until_done=True)

    def end(self, code: int, reason: str) -> asyncio.Task[None] | None:
        """No new connection from now on; the open one (if any) is closed with ``code`` and
        read to its end (the task closing it)."""
        self._ending.set()
        if self.session is None:
            return None
        return asyncio.get_running_loop().create_task(self.session.ws.close(code, reason))

    async def open_raw(self) -> SourceConnection | None:
        """A new connection with the current share, subscribed (a rotation's successor), when
        the connect gate gives its turn; None if the link ends first."""
        share = self.share
        if not await self._hooks.gate.acquire(self._ending):
            return None
        ws = await self._connect()
        # the spec it was opened with: the share's, its tokens placed
        for message in self._session_context.spec.subscribe:
            await ws.send(message)
        self._successor_share = share
        return ws

    async def _connect(self) -> SourceConnection:
        """Open a connection to the endpoint; a failure is raised as :class:`ConnectFailed`,
        classified and without the URL's secrets (a client may quote the URL)."""
        placed = await self._place()
        spec = placed.spec
        endpoint, kwargs = self._endpoint, self._connect_kwargs
        if self._hooks.tokens is not None:  # the URL and the headers may hold a token
            endpoint, kwargs = build_endpoint(spec, placed.secrets), build_connect_kwargs(spec)
        try:
            ws = await self._hooks.opener(spec.model_copy(update={"url": endpoint.url}), kwargs)
        except Exception as exc:  # classified here, where the secrets to scrub are known
            failure = endpoint.scrub_failure(describe_failure(exc))
            if failure.authentication:
                failure = self._token_refused(failure)
            raise ConnectFailed(failure) from None
        if self._credentials is not None:
            assert spec.login is not None
            await self._log_in(ws, spec.login, self._credentials, placed.secrets)
        self._session_context = replace(
            self._context, spec=spec, shown_url=endpoint.shown, expire_token=self._expire_token
        )
        return ws

    async def _place(self) -> Placed:
        """The spec of the next connection: the tokens (fetched now when due) filled in; a
        failed fetch is a :class:`ConnectFailed` (``TokenFetchFailed``)."""
        keeper = self._hooks.tokens
        if keeper is None:
            return Placed(self.spec, ())
        try:
            self._used, self._fresh = await keeper.tokens()
        except TokenRefused as refused:
            failure = Failure(
                "TokenFetchFailed", str(refused), authentication=refused.authentication
            )
            raise ConnectFailed(failure) from None
        return place(self.spec, self._used)

    def _token_refused(self, failure: Failure) -> Failure:
        """A 401/403 handshake or a 1008 close with tokens: every token is fetched anew. One
        that was not fetched for this connection had expired (the ordinary backoff); a fresh
        one refused is an authentication failure (the long backoff)."""
        keeper = self._hooks.tokens
        if keeper is None:
            return failure
        for name, token in self._used.items():
            keeper.expired(name, token.value)
        if self._fresh and failure.authentication:
            keeper.show_expired(f"a new token was refused: {failure.message}")
            return failure
        message = f"{failure.message}: the token is fetched anew"
        keeper.show_expired(message)
        return replace(
            failure,
            reason="TokenExpired",
            message=message,
            authentication=False,
            token_expired=True,
        )

    def _expire_token(self, name: str) -> None:
        """A rule of the current connection said the token ``name`` expired."""
        keeper = self._hooks.tokens
        token = self._used.get(name)
        if keeper is not None:
            keeper.expired(name, token.value if token is not None else None)
            keeper.show_expired(f"the server says token {name} expired")

    async def _log_in(
        self,
        ws: SourceConnection,
        spec: LoginSpec,
        credentials: Credentials,
        tokens: tuple[str, ...],
    ) -> None:
        """Send the login (rendered now: a fresh timestamp and signature) and wait for the
        answer; a refusal or no answer in time closes the connection and is raised as
        :class:`ConnectFailed`, like a refused handshake. Frames before the answer are
        control frames (the data only flows after ``subscribe``)."""
        message = render_login(spec, credentials, now=time.time(), nonce=secrets.token_hex(8))
        watch = LoginWatch(spec)
        self._hooks.stats.authentication = LoginState.PENDING
        try:
            try:
                async with asyncio.timeout(spec.timeout_seconds):
                    await ws.send(message.text)
                    answer = await self._login_answer(ws, watch)
            except TimeoutError:
                answer = watch.timed_out()
        except BaseException as exc:  # closed meanwhile, or the bridge stops: no connection
            ws.transport.abort()
            if isinstance(exc, Exception):
                raise ConnectFailed(describe_failure(exc)) from None
            raise
        scrubbed = message.scrub(answer.message)
        for token in tokens:
            scrubbed = scrubbed.replace(token, REDACTED)
        answer = LoginAnswer(answer.state, scrubbed)
        self._show_login(answer)
        if answer.state is not LoginState.AUTHENTICATED:
            ws.transport.abort()
            rejected = answer.state is LoginState.REJECTED
            failure = Failure(answer.state.value, answer.message, authentication=rejected)
            raise ConnectFailed(failure)

    async def _login_answer(self, ws: SourceConnection, watch: LoginWatch) -> LoginAnswer:
        """Read up to the login's answer; every frame until then (a greeting, the answer) is
        received and counted as a control frame, like the subscription's answer."""
        method = self.spec.connection.inflate
        stats = self._hooks.stats
        while True:
            payload, binary = as_message(await ws.recv())
            stats.received += 1
            stats.received_bytes += len(payload)
            stats.control_frames += 1
            if binary and method is not Inflate.NONE:
                payload = inflate(payload, method)
            answer = watch.observe(payload, parse_json(payload))
            if answer is not None:
                return answer

    def _show_login(self, answer: LoginAnswer) -> None:
        """Count the login's outcome and show it in status (the state change reports it)."""
        stats = self._hooks.stats
        stats.logins[answer.state] = stats.logins.get(answer.state, 0) + 1
        stats.authentication = answer.state
        stats.authentication_message = answer.message
        if answer.state is LoginState.AUTHENTICATED:
            stats.last_authentication_failure = None
            log.info("%s: logged in (%s)", self.label, answer.message)
        else:
            stats.last_authentication_failure = (answer.state, answer.message)

    async def run(self) -> None:
        """Open, read, and follow the supervisor's decision after every failure or end."""
        supervisor = self._supervisor
        stopping = self._ending
        successor: Successor | None = None
        while not stopping.is_set():
            if successor is None:
                self._set_state(ConnectionState.CONNECTING)
                opened_for = self.share
                try:
                    if self._reauthenticate:
                        self._read_secrets()
                        self._reauthenticate = False
                    ws = await self._open()
                except Exception as exc:  # every failure is classified, counted and retried
                    failure = describe_failure(exc)
                    self._count_failure(failure, connect=True)
                    if not await self._follow(supervisor.connect_failed(failure)):
                        return
                    continue
                if ws is None:
                    return
                connection_id = new_connection_id()
                opened = supervisor.opened(connection_id, time.time())
                if opened.reconnect:
                    self._hooks.stats.reconnects += 1
                if opened.gap is not None:
                    self._hooks.on_gap(opened.gap)
                first: Data | None = None
            else:
                ws, connection_id = successor.ws, successor.connection_id
                first = successor.first
                opened_for = self._successor_share
                supervisor.rotated()
                self._hooks.stats.rotations += 1
            opened_at = time.monotonic()
            outcome = await self._run_session(ws, connection_id, first, opened_for)
            if isinstance(outcome, Successor):
                successor = outcome
                if stopping.is_set():
                    await successor.ws.close(1001, "ws2kafka shutting down")
                continue
            successor = None
            if stopping.is_set():
                return
            failure = outcome.failure
            if failure.close_code == POLICY_VIOLATION:
                failure = self._token_refused(failure)
            self._count_failure(failure, connect=False)
            lived = time.monotonic() - opened_at
            decision = supervisor.ended(
                connection_id, failure, frames=outcome.frames, at=time.time(), lived=lived
            )
            if not await self._follow(decision):
                return

    async def _run_session(
        self,
        ws: SourceConnection,
        connection_id: str,
        first: Data | None,
        opened_for: Share,
    ) -> Ended | Successor:
        """One connection, as the current session (what stop, rotate and ready act on), with
        the spec it was opened with (its tokens placed: :meth:`_connect`).

        ``opened_for``: the share the connection was opened for; if the link's share changed
        meanwhile (during the handshake), the connection is replaced at once.
        """
        current = opened_for is self.share
        session = Session(self._session_context, ws, connection_id)
        self.session = session
        self.connection_id = connection_id
        if not current:
            session.rotate(until_done=True)
        try:
            return await session.run(first)
        finally:
            self.session = None

    async def _open(self) -> SourceConnection | None:
        """The next connection, or None when the bridge stops first.

        A handshake may take up to ``connectTimeoutSeconds``, and a stop cannot close a
        connection that does not exist yet: without this race, a stop during the handshake
        would wait for it, and a connection opened after the stop would be read forever.
        """
        stopping = self._ending
        if not await self._hooks.gate.acquire(stopping):
            return None
        opening: asyncio.Future[SourceConnection] = asyncio.ensure_future(self._connect())
        stopped = asyncio.create_task(stopping.wait())
        try:
            await asyncio.wait((opening, stopped), return_when=asyncio.FIRST_COMPLETED)
        finally:
            opening.cancel()  # no-op once it finished
            stopped.cancel()
            await asyncio.wait((opening, stopped))
        if opening.cancelled():
            return None
        ws = opening.result()  # a failed attempt raises here, for the caller to classify
        if stopping.is_set():
            await ws.close(1001, "ws2kafka shutting down")
            return None
        return ws

    async def _follow(self, decision: Retry | GiveUp) -> bool:
        """Carry out the supervisor's decision: wait before the next attempt (False when the
        bridge is stopping meanwhile), or give up (False)."""
        if isinstance(decision, GiveUp):
            if decision.reconnect_disabled:
                log.error("%s: connection ended and reconnect is disabled", self.label)
            self._set_state(ConnectionState.GAVE_UP, str(decision.error))
            log.error("%s: %s", self.label, decision.error)
            self._hooks.on_give_up(decision.error)
            return False
        failure = decision.failure
        self._reauthenticate = self._reauthenticate or decision.reauthenticate
        self._set_state(decision.state, f"{failure.reason}: {failure.message}")
        if failure.retry_after is not None:
            self._hooks.gate.hold(failure.retry_after)
        log.warning(
            "%s: %s (%s); attempt %d, next in %.1f s%s",
            self.label,
            failure.message,
            failure.reason,
            decision.attempt,
            decision.delay,
            ", re-reading secrets" if decision.reauthenticate else "",
        )
        await wait_event(self._ending, decision.delay)
        return not self._ending.is_set()

    def _count_failure(self, failure: Failure, *, connect: bool) -> None:
        stats = self._hooks.stats
        stats.count_error(failure.reason)
        if connect:
            stats.connect_failures += 1
        if failure.authentication:
            stats.auth_failures += 1
        if failure.close_code is not None:
            stats.count_close(failure.close_code)
        self.last_error = f"{failure.reason}: {failure.message}"
        stats.last_error = self.last_error

    def _set_state(self, state: ConnectionState, error: str | None = None) -> None:
        if error is not None:
            self.last_error = error
        if state is not self.state or error is not None:
            self.state = state
            self._hooks.on_state(self, error)

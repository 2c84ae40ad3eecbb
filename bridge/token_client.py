"""The token providers' HTTP calls and their timer: the I/O side of :mod:`.tokens`.

One :class:`TokenKeeper` per bridge holds every provider's :class:`~.tokens.TokenBook`; its
links ask it for the tokens before each connect (:meth:`TokenKeeper.tokens`: a fetch for each
one due, one at a time, so several connections share one fetch) and tell it when the server
refused one (:meth:`TokenKeeper.expired`); :meth:`TokenKeeper.keep_alive` runs the keep-alive
requests on their timers. The requests go out through aiohttp with the WebSocket's TLS
settings and through the proxy the WebSocket takes to the same host
(:func:`~.source.environment_proxy`: ``NO_PROXY``, ``WSS_PROXY``, ``SOCKS_PROXY`` through
aiohttp-socks, ``HTTPS_PROXY``, ``HTTP_PROXY``). Outcomes are counted in
:class:`~.stats.BridgeStats`; every message is scrubbed of secrets before it is logged or
reported.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import ssl
import time
from collections.abc import Callable

import aiohttp
from aiohttp_socks import ProxyConnector

from .config import TokenRequestSpec, WebSocketSourceSpec
from .login import LoginState
from .source import build_ssl_context, environment_proxy
from .stats import BridgeStats
from .tokens import (
    HttpRequest,
    Token,
    TokenBook,
    TokenRefused,
    read_keep_alive,
    read_token,
    render_request,
)

log = logging.getLogger(__name__)

#: The label values of ``ws2kafka_token_requests_total{request}``.
FETCH = "fetch"
KEEP_ALIVE = "keepAlive"


class TokenKeeper:
    """Every token provider of one bridge; see the module docstring."""

    def __init__(
        self,
        spec: WebSocketSourceSpec,
        stats: BridgeStats,
        *,
        label: str,
        on_change: Callable[[], None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._spec = spec
        self._stats = stats
        self._label = label
        self._on_change = on_change
        self._clock = clock
        self.books = [TokenBook(token) for token in spec.tokens]
        self._lock = asyncio.Lock()
        self._changed = asyncio.Event()
        self._sessions: dict[str | None, aiohttp.ClientSession] = {}
        self._ssl: ssl.SSLContext | None = None

    def rekey(self, spec: WebSocketSourceSpec) -> None:
        """New secret values (inline mode read its Secrets again): the next requests use
        them; the tokens held stay until they are due."""
        self._spec = spec
        providers = {token.name: token for token in spec.tokens}
        for book in self.books:
            book.spec = providers[book.name]
        self._ssl = None

    async def tokens(self) -> tuple[dict[str, Token], bool]:
        """The current tokens, each one that is due fetched now; and whether any was
        fetched now (a refusal of a fresh token is no expiry). Raises
        :class:`~.tokens.TokenRefused` when a fetch fails (counted and shown in status)."""
        async with self._lock:
            fetched = False
            for book in self.books:
                if book.due(self._clock()):
                    await self._fetch(book)
                    fetched = True
            tokens = {book.name: book.token for book in self.books if book.token is not None}
        if fetched:
            self._show_next_refresh()
            self._changed.set()
        return tokens, fetched

    def expired(self, name: str | None, value: str | None = None) -> None:
        """The server refused a token (``name``; None: every one of them), or said it
        expired: fetch anew before the next connect."""
        expiries = self._stats.token_expiries
        for book in self.books:
            if (name is None or book.name == name) and book.expired(value):
                expiries[book.name] = expiries.get(book.name, 0) + 1
        self._changed.set()
        self._show_next_refresh()

    async def _fetch(self, book: TokenBook) -> None:
        request = self._render(book.spec.request, book.name, None)
        try:
            status, body = await self._send(request)
            token = read_token(book.spec, request, status, body, now=self._clock())
        except TokenRefused as refused:
            self._count(book.name, FETCH, "failed")
            message = f"token {book.name}: {refused}"
            self._show_failure(LoginState.TOKEN_FETCH_FAILED, message)
            raise TokenRefused(message, status=refused.status) from None
        book.fetched(token)
        self._count(book.name, FETCH, "ok")
        stats = self._stats
        if self._spec.login is None:  # a login's answer decides it otherwise
            stats.authentication = LoginState.AUTHENTICATED
            stats.authentication_message = f"token {book.name} fetched"
            stats.last_authentication_failure = None
        log.info("%s: token %s fetched from %s", self._label, book.name, request.shown)

    def _render(self, spec: TokenRequestSpec, name: str, token: str | None) -> HttpRequest:
        """The request as it goes out now: a signed one is signed with this moment's
        timestamp and a fresh nonce."""
        return render_request(spec, name, token, now=self._clock(), nonce=secrets.token_hex(8))

    async def _send(self, request: HttpRequest) -> tuple[int, bytes]:
        """One request; every client failure is a :class:`TokenRefused`, scrubbed."""
        session, proxy = self._client(environment_proxy(request.url))
        timeout = aiohttp.ClientTimeout(total=request.timeout)
        ssl_context = self._ssl_context() if request.url.startswith("https://") else None
        try:
            async with session.request(
                request.method,
                request.url,
                headers=list(request.headers),
                data=request.body,
                timeout=timeout,
                ssl=ssl_context or True,
                proxy=proxy,
            ) as response:
                return response.status, await response.read()
        except TimeoutError:
            raise TokenRefused(
                f"no answer from {request.shown} within {request.timeout:g} s"
            ) from None
        except aiohttp.ClientError as exc:
            detail = request.scrub(str(exc) or type(exc).__name__)
            raise TokenRefused(f"{request.shown}: {type(exc).__name__}: {detail}") from None

    def _client(self, proxy: str | None) -> tuple[aiohttp.ClientSession, str | None]:
        """The session for requests through ``proxy`` (one per proxy), and the proxy each of
        its requests names: an HTTP proxy is named per request, a SOCKS proxy is the
        session's connector."""
        socks = proxy is not None and proxy.startswith("socks")
        session = self._sessions.get(proxy)
        if session is None:
            connector = ProxyConnector.from_url(proxy) if socks and proxy else None
            session = aiohttp.ClientSession(connector=connector)
            self._sessions[proxy] = session
        return session, None if socks else proxy

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = build_ssl_context(self._spec.tls)
        return self._ssl

    async def keep_alive(self, stopping: asyncio.Event) -> None:
        """Each keep-alive when it is due, until the bridge stops (a fetch or an expiry
        wakes the timer: its next time changed)."""
        while not stopping.is_set():
            self._changed.clear()
            due = [(at, book) for book in self.books if (at := book.keep_alive_at()) is not None]
            if due:
                at, book = min(due, key=lambda pair: pair[0])
                wait = at - self._clock()
                if wait <= 0:
                    await self._keep(book)
                    continue
            else:
                wait = None
            waiters = [asyncio.ensure_future(stopping.wait())]
            waiters.append(asyncio.ensure_future(self._changed.wait()))
            try:
                await asyncio.wait(waiters, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()

    async def _keep(self, book: TokenBook) -> None:
        keep_alive = book.spec.keep_alive
        token = book.token
        assert keep_alive is not None
        assert token is not None
        request = self._render(keep_alive.request, book.name, token.value)
        try:
            status, body = await self._send(request)
            read_keep_alive(book.spec, request, status, body)
        except TokenRefused as refused:
            book.keep_alive_failed(self._clock())
            self._count(book.name, KEEP_ALIVE, "failed")
            log.warning("%s: keep-alive of token %s failed: %s", self._label, book.name, refused)
        else:
            book.kept_alive(self._clock())
            self._count(book.name, KEEP_ALIVE, "ok")
            log.info("%s: token %s kept alive", self._label, book.name)
        self._show_next_refresh()

    def _count(self, name: str, request: str, outcome: str) -> None:
        key = (name, request, outcome)
        requests = self._stats.token_requests
        requests[key] = requests.get(key, 0) + 1

    def _show_failure(self, state: LoginState, message: str) -> None:
        stats = self._stats
        stats.authentication = state
        stats.authentication_message = message
        stats.last_authentication_failure = (state, message)
        self._on_change()

    def show_expired(self, message: str) -> None:
        """A connection ended because the server refused or expired a token."""
        self._show_failure(LoginState.TOKEN_EXPIRED, message)

    def _show_next_refresh(self) -> None:
        times = [at for book in self.books if (at := book.next_refresh_at()) is not None]
        self._stats.next_token_refresh = min(times) if times else None
        self._on_change()

    async def close(self) -> None:
        sessions, self._sessions = self._sessions, {}
        for session in sessions.values():
            await session.close()

"""Tokens fetched over HTTP before connecting, without I/O: what to ask, what the answer says,
when to ask again, and where the token goes.

Private streams often want a credential that a REST call hands out: Binance's listenKey
(``POST`` creates it, ``PUT`` every 30 minutes keeps it, it expires after 60), KuCoin's bullet
token (which also names the endpoint and the ping interval), an OAuth access token.
``spec.tokens`` describes each provider; this module renders its requests
(:func:`render_request`), reads its answers (:func:`read_token`, :func:`read_keep_alive`),
keeps one provider's state and decides when it is due (:class:`TokenBook`), and fills the
tokens into a connection's spec (:func:`place`). The HTTP calls and the timer are
:mod:`.token_client`'s. A token is a secret: it is never in a ``repr``, and every text that
could quote it is scrubbed with :meth:`HttpRequest.scrub` or :attr:`Placed.secrets`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import quote, quote_plus

from pydantic import SecretStr

from .config import (
    LOGIN_PLACEHOLDER,
    TOKEN_PLACEHOLDER,
    DurationUnit,
    Header,
    QueryParameter,
    SecretValue,
    TokenRequestSpec,
    TokenSpec,
    WebSocketSourceSpec,
)
from .framing import MISSING, lookup, parse_json
from .signing import computed_values, sign
from .source import REDACTED, redact_url

#: The longest answer kept for a message: a refusal is quoted, never a whole page.
MAX_MESSAGE_CHARS = 300


class TokenRefused(Exception):
    """A token request failed: its message is scrubbed of every secret and may be shown."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        """The HTTP status, when the server answered."""

    @property
    def authentication(self) -> bool:
        """The server refused the credentials (401/403): waiting will not fix it."""
        return self.status in (401, 403)


@dataclass(frozen=True)
class HttpRequest:
    """One rendered token request; only its method and shown URL are in a ``repr``."""

    method: str
    url: str = field(repr=False)
    shown: str
    """The URL as it may be shown: every query value ``***``, the token too."""
    headers: tuple[tuple[str, str], ...] = field(repr=False)
    body: bytes | None = field(repr=False)
    timeout: float
    secrets: tuple[str, ...] = field(repr=False)
    """The secret values and the token, as written and percent-encoded, longest first."""

    def scrub(self, text: str) -> str:
        """``text`` (a client's error, a server's answer) without a secret or the URL."""
        text = text.replace(self.url, self.shown)
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        return text


def _secret_forms(values: list[str]) -> tuple[str, ...]:
    """Every way a value may be written in a URL or a message, longest first."""
    forms = {form for value in values if value for form in (value, quote(value, safe=""))}
    forms |= {quote_plus(value) for value in values if value}
    forms |= {json.dumps(value)[1:-1] for value in values if value}
    return tuple(sorted(forms, key=len, reverse=True))


def render_request(
    spec: TokenRequestSpec, name: str, token: str | None, *, now: float, nonce: str
) -> HttpRequest:
    """The request at ``now`` (epoch seconds) with ``nonce``: its secrets resolved now (a
    ConfigError names a missing source), its signatures computed, and ``{name.token}``
    filled with ``token`` (a keep-alive's)."""
    values = {key: source.resolve() for key, source in spec.values.items()}
    context = {**values, **computed_values(spec.timestamp, spec.expires_after_ms, now, nonce)}
    signatures = {
        key: sign(signature, values, context) for key, signature in spec.signatures.items()
    }
    context.update(signatures)
    secrets = [token or "", *values.values(), *signatures.values()]
    tokens = {name: token or ""}

    def filled(text: str, escape: Any = str) -> str:
        """Both kinds of placeholder in one pass: a value that holds braces stays as it is."""

        def value(match: re.Match[str]) -> str:
            return str(escape(tokens[match[1]] if match[1] else context[match[3]]))

        return re.sub(_REQUEST_PLACEHOLDER, value, text)

    def named_values(items: Sequence[Header | QueryParameter]) -> list[tuple[str, str]]:
        """Each item's name and value: a secret resolved (and kept to scrub), a plain value
        with its placeholders filled in."""
        found = []
        for item in items:
            if item.value_from is not None:
                value = item.value_from.resolve()
                secrets.append(value)
            else:
                value = filled(item.value or "")
            found.append((item.name, value))
        return found

    pairs = named_values(spec.query)
    headers = named_values(spec.headers)
    url = re.sub(TOKEN_PLACEHOLDER, lambda match: quote(tokens[match[1]], safe=""), spec.url)
    if pairs:
        added = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in pairs)
        url = f"{url}{'&' if '?' in url else '?'}{added}"
    body = None
    if spec.body is not None:
        body = filled(spec.body, _body_escape(spec.content_type)).encode()
        headers.append(("Content-Type", spec.content_type))
    ordered = _secret_forms(secrets)
    shown = redact_url(url)
    for secret in ordered:
        shown = shown.replace(secret, REDACTED)
    return HttpRequest(
        spec.method.value, url, shown, tuple(headers), body, spec.timeout_seconds, ordered
    )


#: ``{name.token}`` (groups 1 and 2) or a value, computed value or signature (group 3).
_REQUEST_PLACEHOLDER: Final = f"{TOKEN_PLACEHOLDER}|{LOGIN_PLACEHOLDER}"


def _body_escape(content_type: str) -> Any:
    """How a value is written into a body of this type."""
    kind = content_type.split(";")[0].strip().lower()
    if kind == "application/json" or kind.endswith("+json"):
        return lambda value: json.dumps(value)[1:-1]
    if kind == "application/x-www-form-urlencoded":
        return lambda value: quote_plus(value)
    return str


@dataclass(frozen=True)
class Token:
    """What one fetch gave: the token (never in a ``repr``) and what came with it."""

    value: str = field(repr=False)
    endpoint: str | None
    """The WebSocket URL the answer named (not secret: the server's address)."""
    ping_interval: float | None
    """Seconds, as the answer said."""
    fetched_at: float
    expires_at: float | None
    """Epoch seconds (None: it lives until the server refuses it)."""


def _seconds(value: Any, unit: DurationUnit) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    if number <= 0:
        return None
    return number / 1000 if unit is DurationUnit.MILLISECONDS else number


def _refusal(spec: TokenSpec, request: HttpRequest, status: int, body: bytes) -> str:
    """The server's own words in a refused request (scrubbed), or its status."""
    words = _words(spec, parse_json(body)) or body.decode(errors="replace")
    return request.scrub(f"HTTP {status}: {words.strip()}")[:MAX_MESSAGE_CHARS]


def _words(spec: TokenSpec, document: Any) -> str | None:
    """The server's own words at ``messagePointer`` (Kraken answers a refusal with HTTP 200
    and ``{"error":["EAPI:Invalid key"]}``), or None."""
    if spec.message_pointer is None:
        return None
    words = lookup(document, spec.message_pointer)
    if words is MISSING or words in (None, "", []):
        return None
    if isinstance(words, list) and all(isinstance(word, str) for word in words):
        return "; ".join(words)
    return words if isinstance(words, str) else json.dumps(words)


def read_token(
    spec: TokenSpec, request: HttpRequest, status: int, body: bytes, *, now: float
) -> Token:
    """The token in the answer to the fetch; raises :class:`TokenRefused` for a refusal
    or an answer without a token (or with an endpoint that is no WebSocket URL)."""
    if not 200 <= status < 300:
        raise TokenRefused(_refusal(spec, request, status, body), status=status)
    document = parse_json(body)
    value = lookup(document, spec.token)
    if not isinstance(value, str) or not value:
        words = _words(spec, document)
        said = f": {request.scrub(words)[:MAX_MESSAGE_CHARS]}" if words else ""
        raise TokenRefused(f"HTTP {status}: the answer has no token at {spec.token}{said}")
    endpoint = None
    if spec.endpoint is not None:
        endpoint = lookup(document, spec.endpoint)
        if not isinstance(endpoint, str) or not endpoint.startswith(("ws://", "wss://")):
            raise TokenRefused(f"HTTP {status}: the answer has no ws(s):// URL at {spec.endpoint}")
    ping = None
    if spec.ping_interval is not None:
        ping = _seconds(lookup(document, spec.ping_interval), spec.ping_interval_unit)
    life = spec.lifetime_seconds
    if spec.expires_in is not None:
        life = _seconds(lookup(document, spec.expires_in), spec.expires_in_unit) or life
    expires_at = now + life if life is not None else None
    return Token(value, endpoint, ping, now, expires_at)


def read_keep_alive(spec: TokenSpec, request: HttpRequest, status: int, body: bytes) -> None:
    """Raises :class:`TokenRefused` unless the keep-alive was accepted (any 2xx)."""
    if not 200 <= status < 300:
        raise TokenRefused(_refusal(spec, request, status, body), status=status)


class TokenBook:
    """One provider's token and what is due for it; every moment is handed in (epoch s)."""

    def __init__(self, spec: TokenSpec) -> None:
        self.spec = spec
        self.token: Token | None = None
        self._kept_alive_at = 0.0

    @property
    def name(self) -> str:
        return self.spec.name

    def due(self, now: float) -> bool:
        """A connect at ``now`` needs a new token: none yet, refused, or about to expire."""
        token = self.token
        if token is None:
            return True
        expires_at = token.expires_at
        return expires_at is not None and now >= expires_at - self.spec.refresh_margin_seconds

    def fetched(self, token: Token) -> None:
        self.token = token
        self._kept_alive_at = token.fetched_at

    def expired(self, value: str | None = None) -> bool:
        """The server said the token expired (or refused it): fetch anew before the next
        connect. With ``value``, only if that is still the token (several connections may
        report one expiry). Whether it was the current token."""
        token = self.token
        if token is None or (value is not None and token.value != value):
            return False
        self.token = None
        return True

    def keep_alive_at(self) -> float | None:
        """When the next keep-alive is due (None: no keep-alive, or no token to keep)."""
        keep_alive = self.spec.keep_alive
        if keep_alive is None or self.token is None:
            return None
        return self._kept_alive_at + keep_alive.interval_seconds

    def kept_alive(self, now: float) -> None:
        """The server accepted a keep-alive at ``now``: the token lives on."""
        token = self.token
        self._kept_alive_at = now
        if token is not None and self.spec.lifetime_seconds is not None:
            self.token = Token(
                token.value,
                token.endpoint,
                token.ping_interval,
                token.fetched_at,
                now + self.spec.lifetime_seconds,
            )

    def keep_alive_failed(self, now: float) -> None:
        """A keep-alive failed: the next is tried one interval later (a refused one does not
        end the connection: the server says so when the token expires)."""
        self._kept_alive_at = now

    def next_refresh_at(self) -> float | None:
        """When the token is next kept alive or fetched anew (status ``nextRefreshTime``)."""
        keep_alive = self.keep_alive_at()
        if keep_alive is not None:
            return keep_alive
        token = self.token
        if token is None or token.expires_at is None:
            return None
        return token.expires_at - self.spec.refresh_margin_seconds


@dataclass(frozen=True)
class Placed:
    """A connection's spec with the tokens filled in, and every form of them to scrub."""

    spec: WebSocketSourceSpec = field(repr=False)
    secrets: tuple[str, ...] = field(repr=False)


def place(spec: WebSocketSourceSpec, tokens: Mapping[str, Token]) -> Placed:
    """``spec`` with ``{name.token}`` and ``{name.endpoint}`` filled in: in the URL (the
    token percent-encoded), in query and header values (which then count as secret values),
    in the subscribe and login messages (JSON-escaped); a fetched ping interval replaces the
    heartbeat's (or, without one, the protocol ping's)."""
    if not tokens:
        return Placed(spec, ())

    def fill(text: str, escape: Any) -> str:
        def value(match: re.Match[str]) -> str:
            token = tokens[match[1]]
            if match[2] == "endpoint":
                return token.endpoint or ""
            return str(escape(token.value))

        return re.sub(TOKEN_PLACEHOLDER, value, text)

    def as_json(value: str) -> str:
        return json.dumps(value)[1:-1]

    query = [
        QueryParameter(name=p.name, value_from=SecretValue(value=SecretStr(fill(p.value, str))))
        if p.value is not None and _holds(p.value)
        else p
        for p in spec.query
    ]
    headers = [
        Header(name=h.name, value_from=SecretValue(value=SecretStr(fill(h.value, str))))
        if h.value is not None and _holds(h.value)
        else h
        for h in spec.headers
    ]
    update: dict[str, Any] = {
        "url": fill(spec.url, lambda value: quote(value, safe="")),
        "query": query,
        "headers": headers,
        "subscribe": [fill(message, as_json) for message in spec.subscribe],
    }
    if spec.login is not None:
        update["login"] = spec.login.model_copy(
            update={"message": fill(spec.login.message, as_json)}
        )
    pings = [token.ping_interval for token in tokens.values() if token.ping_interval]
    if pings:
        update["connection"] = _with_ping(spec, min(pings))
    secrets = _secret_forms([token.value for token in tokens.values()])
    return Placed(spec.model_copy(update=update), secrets)


def _holds(text: str) -> bool:
    return re.search(TOKEN_PLACEHOLDER, text) is not None


def _with_ping(spec: WebSocketSourceSpec, seconds: float) -> Any:
    connection = spec.connection
    heartbeat = connection.heartbeat
    if heartbeat is not None:
        beat = heartbeat.model_copy(update={"interval_seconds": seconds})
        return connection.model_copy(update={"heartbeat": beat})
    return connection.model_copy(update={"ping_interval_seconds": seconds})

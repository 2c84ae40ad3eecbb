"""A signed login message and the server's answer to it, without I/O.

Private streams (OKX, Bybit, Deribit) want a login message right after the connect: an API
key, a timestamp or expiry, and an HMAC over them keyed with the account's secret.
``spec.login`` describes the message as a template; :func:`render_login` fills it in for one
connect, with the clock and the nonce handed in (a retried login is rendered anew, so a
stale timestamp is never sent again), and :class:`LoginWatch` tells the server's answer.
The link sends the message and reads the answer (:mod:`.link`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from .config import LoginSpec
from .messages import Conditions
from .signing import computed_values, fill, sign
from .source import REDACTED
from .subscription import server_message


class LoginState(StrEnum):
    """The reason of the ``Authenticated`` condition, and of a failed connect."""

    PENDING = "Pending"
    AUTHENTICATED = "Authenticated"
    REJECTED = "LoginRejected"
    TIMEOUT = "LoginTimeout"
    TOKEN_FETCH_FAILED = "TokenFetchFailed"
    """A token provider's request failed (``spec.tokens``)."""
    TOKEN_EXPIRED = "TokenExpired"
    """The server refused a token or said it expired: a new one is fetched."""


#: The outcomes of a login (``ws2kafka_logins_total{outcome}``).
LOGIN_OUTCOMES = (LoginState.AUTHENTICATED, LoginState.REJECTED, LoginState.TIMEOUT)


@dataclass(frozen=True)
class Credentials:
    """``login.values``, resolved; never in a ``repr``."""

    values: Mapping[str, str] = field(repr=False)


def resolve_credentials(spec: LoginSpec) -> Credentials:
    """Read the login's secrets now (a ConfigError names a missing source)."""
    return Credentials({name: value.resolve() for name, value in spec.values.items()})


@dataclass(frozen=True)
class LoginMessage:
    """One connect's login: the text to send, and what must never be shown."""

    text: str = field(repr=False)
    timestamp: str
    """The ``{timestamp}`` it carries (not secret)."""
    secrets: tuple[str, ...] = field(repr=False)
    """The secret values and the signature, longest first."""

    def scrub(self, text: str) -> str:
        """``text`` (e.g. a server's answer that quotes the login) without any secret."""
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        return text


def render_login(
    spec: LoginSpec, credentials: Credentials, *, now: float, nonce: str
) -> LoginMessage:
    """The login message for a connect at ``now`` (epoch seconds) with ``nonce``."""
    computed = computed_values(spec.timestamp, spec.expires_after_ms, now, nonce)
    values = {**credentials.values, **computed}
    if spec.signature is not None:
        values["signature"] = sign(spec.signature, credentials.values, values)
    text = fill(spec.message, values, _json_escape)
    secrets = [*credentials.values.values(), values.get("signature", "")]
    ordered = sorted({secret for secret in secrets if secret}, key=len, reverse=True)
    return LoginMessage(text, values["timestamp"], tuple(ordered))


def _json_escape(value: str) -> str:
    """A value as the inside of a JSON string: a quote in a passphrase cannot break out."""
    return json.dumps(value)[1:-1]


@dataclass(frozen=True, slots=True)
class LoginAnswer:
    """The server's answer to a login, in its own words."""

    state: LoginState
    message: str


class LoginWatch:
    """Tells the answer to a login among the frames that follow it."""

    def __init__(self, spec: LoginSpec) -> None:
        self._spec = spec
        self._success = Conditions(spec.success)
        self._failure = Conditions(spec.failure)

    def observe(self, payload: bytes, document: Any) -> LoginAnswer | None:
        """The answer this frame is, or None (a frame that is no answer is skipped)."""
        if self._failure.hold(payload, document):
            message = server_message(payload, document, self._spec.message_pointer)
            return LoginAnswer(LoginState.REJECTED, message)
        if self._success.hold(payload, document):
            return LoginAnswer(LoginState.AUTHENTICATED, "the server accepted the login")
        return None

    def timed_out(self) -> LoginAnswer:
        seconds = self._spec.timeout_seconds
        return LoginAnswer(LoginState.TIMEOUT, f"no answer to the login within {seconds:g} s")

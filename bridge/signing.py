"""Templates with computed values and HMAC signatures, without I/O: what a signed login
message (:mod:`.login`) and a signed token request (:mod:`.tokens`) have in common.

Exchanges sign a request with an HMAC keyed by the account's secret, over a text that holds
a timestamp (OKX, KuCoin), an expiry (Bybit) or a nonce (Kraken), so that a captured request
cannot be replayed later. The clock and the nonce are handed in: every render is a new
timestamp, and the tests pin both.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from .config import (
    LOGIN_PLACEHOLDER,
    KeyEncoding,
    LoginTimestamp,
    Signature,
    SignatureAlgorithm,
    SignatureEncoding,
)


def computed_values(
    timestamp: LoginTimestamp, expires_after_ms: int, now: float, nonce: str
) -> dict[str, str]:
    """``{timestamp}`` (written as ``timestamp`` says), ``{expires}`` (epoch milliseconds
    ``expires_after_ms`` after ``now``) and ``{nonce}``."""
    millis = round(now * 1000)
    if timestamp is LoginTimestamp.SECONDS:
        stamp = str(int(now))
    elif timestamp is LoginTimestamp.MILLISECONDS:
        stamp = str(millis)
    else:
        moment = datetime.fromtimestamp(millis / 1000, UTC)
        stamp = moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {"timestamp": stamp, "expires": str(millis + expires_after_ms), "nonce": nonce}


_DIGESTS: Mapping[SignatureAlgorithm, Callable[[], Any]] = {
    SignatureAlgorithm.HMAC_SHA256: hashlib.sha256,
    SignatureAlgorithm.HMAC_SHA512: hashlib.sha512,
}


def sign(spec: Signature, keys: Mapping[str, str], values: Mapping[str, str]) -> str:
    """The HMAC of the filled-in payload (followed by the SHA-256 digest of ``sha256Of``,
    Kraken's scheme), keyed with the value ``spec.key`` names in ``keys``."""
    key = _key_bytes(keys[spec.key], spec.key_encoding)
    payload = fill(spec.payload, values, str).encode()
    if spec.sha256_of is not None:
        payload += hashlib.sha256(fill(spec.sha256_of, values, str).encode()).digest()
    digest = hmac.new(key, payload, _DIGESTS[spec.algorithm]).digest()
    if spec.encoding is SignatureEncoding.HEX:
        return digest.hex()
    return base64.b64encode(digest).decode()


def _key_bytes(key: str, encoding: KeyEncoding) -> bytes:
    if encoding is KeyEncoding.BASE64:
        return base64.b64decode(key)
    if encoding is KeyEncoding.HEX:
        return bytes.fromhex(key)
    return key.encode()


def fill(template: str, values: Mapping[str, str], escape: Callable[[str], str]) -> str:
    """``template`` with every ``{name}`` replaced by its value, as ``escape`` writes it (the
    config's validators made sure every name has one)."""
    return re.sub(LOGIN_PLACEHOLDER, lambda match: escape(values[match[1]]), template)

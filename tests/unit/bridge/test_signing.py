"""HMAC signatures and computed values (``bridge/signing.py``), shared by signed logins and
signed token requests: the RFC 4231 vectors, the keys' encodings, Kraken's digest-suffixed
scheme against the example in Kraken's documentation, and the timestamps' three forms."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from ws2kafka.bridge.config import LoginTimestamp, Signature
from ws2kafka.bridge.signing import computed_values, fill, sign

#: 2024-01-10T08:55:47.123Z
NOW = 1704876947.123


@pytest.mark.parametrize(
    ("algorithm", "expected"),
    [  # RFC 4231, test case 2
        ("hmacSha256", "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
        (
            "hmacSha512",
            "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554"
            "9758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737",
        ),
    ],
)
def test_signatures_match_the_rfc_4231_vectors(algorithm: str, expected: str) -> None:
    spec = Signature.model_validate(
        {"algorithm": algorithm, "key": "secret", "payload": "what do ya want for nothing?"}
    )
    assert sign(spec, {"secret": "Jefe"}, {}) == expected


@pytest.mark.parametrize("encoding", ["base64", "hex"])
def test_an_encoded_key_is_decoded_before_signing(encoding: str) -> None:
    raw = b"\x00raw-key\xff"
    key = base64.b64encode(raw).decode() if encoding == "base64" else raw.hex()
    spec = Signature.model_validate({"key": "secret", "keyEncoding": encoding, "payload": "p"})
    assert sign(spec, {"secret": key}, {}) == hmac.new(raw, b"p", hashlib.sha256).hexdigest()


def test_kraken_api_sign_matches_the_example_of_krakens_documentation() -> None:
    # https://docs.kraken.com/api/docs/guides/spot-rest-auth: HMAC-SHA512 of the URI path
    # followed by SHA-256(nonce + POST data), keyed with the base64-decoded secret
    secret = (
        "kQH5HW/8p1uGOVjbgWA7FunAmGO8lsSUXNsu3eow76sz84Q18fWxnyRzBHCd3pd5nE9qa99HAZtuZuj6F1huXg=="
    )
    spec = Signature.model_validate(
        {
            "algorithm": "hmacSha512",
            "encoding": "base64",
            "key": "secret",
            "keyEncoding": "base64",
            "payload": "/0/private/AddOrder",
            "sha256Of": "{nonce}nonce={nonce}&ordertype=limit&pair=XBTUSD&price=37500"
            "&type=buy&volume=1.25",
        }
    )
    expected = (
        "4/dpxb3iT4tp/ZCVEwSnEsLxx0bqyhLpdfOpc6fn7OR8+UClSV5n9E6aSS8MPtnRfp32bAb0nmbRn6H8ndwLUQ=="
    )
    assert sign(spec, {"secret": secret}, {"nonce": "1616492376594"}) == expected


@pytest.mark.parametrize(
    ("timestamp", "expected"),
    [
        (LoginTimestamp.SECONDS, "1704876947"),
        (LoginTimestamp.MILLISECONDS, "1704876947123"),
        (LoginTimestamp.ISO8601, "2024-01-10T08:55:47.123Z"),
    ],
)
def test_timestamps_are_seconds_milliseconds_or_iso(
    timestamp: LoginTimestamp, expected: str
) -> None:
    values = computed_values(timestamp, 5000, NOW, "n0")
    assert values == {"timestamp": expected, "expires": "1704876952123", "nonce": "n0"}


def test_fill_writes_each_value_as_the_escape_says_and_once() -> None:
    # a value holding braces is not filled again
    values = {"a": '{b}"', "b": "never"}
    assert fill("<{a}|{b}>", values, str.upper) == '<{B}"|NEVER>'

"""Token providers without sockets: the requests rendered, the answers read, when a token is
due, and where it goes (``bridge/tokens.py``); the spec's rules for them (``config.py``)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from typing import Any

import pytest
from pydantic import ValidationError

from ws2kafka.bridge.config import TokenRequestSpec, TokenSpec, WebSocketSourceSpec, parse_spec
from ws2kafka.bridge.errors import ConfigError
from ws2kafka.bridge.policy import decide_retry
from ws2kafka.bridge.source import Failure, build_endpoint
from ws2kafka.bridge.tokens import (
    HttpRequest,
    Token,
    TokenBook,
    TokenRefused,
    place,
    read_keep_alive,
    read_token,
    render_request,
)

API_KEY = "tok-api-key-5d1e9c"
LISTEN_KEY = "lk/Secret+9f3a7b2c"  # a slash and a plus: percent-encoded in URLs

BINANCE: dict[str, Any] = {
    "name": "listenKey",
    "request": {
        "method": "POST",
        "url": "https://api.example/api/v3/userDataStream",
        "headers": [{"name": "X-MBX-APIKEY", "valueFrom": {"value": API_KEY}}],
    },
    "token": "/listenKey",
    "lifetimeSeconds": 3600,
    "messagePointer": "/msg",
    "keepAlive": {
        "intervalSeconds": 1800,
        "request": {
            "method": "PUT",
            "url": "https://api.example/api/v3/userDataStream",
            "query": [{"name": "listenKey", "value": "{listenKey.token}"}],
            "headers": [{"name": "X-MBX-APIKEY", "valueFrom": {"value": API_KEY}}],
        },
    },
}

KUCOIN: dict[str, Any] = {
    "name": "bullet",
    "request": {"url": "https://api.example/api/v1/bullet-public"},
    "token": "/data/token",
    "endpoint": "/data/instanceServers/0/endpoint",
    "pingInterval": "/data/instanceServers/0/pingInterval",
    "lifetimeSeconds": 86400,
}


def spec_with(**fields: Any) -> WebSocketSourceSpec:
    return parse_spec(
        {"url": "ws://feed/ws", "kafka": {"bootstrapServers": "k:9092", "topic": "t"}, **fields}
    )


def token_spec(data: dict[str, Any]) -> TokenSpec:
    return TokenSpec.model_validate(data)


#: 2024-01-10T08:55:47.123Z: the moment a request is rendered at.
NOW = 1704876947.123


def rendered(spec: TokenRequestSpec, name: str, token: str | None) -> HttpRequest:
    return render_request(spec, name, token, now=NOW, nonce="5e1f0c")


def test_a_fetch_request_resolves_its_secrets_and_shows_none() -> None:
    request = rendered(token_spec(BINANCE).request, "listenKey", None)
    assert (request.method, request.url) == ("POST", "https://api.example/api/v3/userDataStream")
    assert request.headers == (("X-MBX-APIKEY", API_KEY),)
    assert request.body is None
    assert API_KEY not in repr(request)
    assert request.scrub(f"refused {API_KEY}") == "refused ***"


def test_a_keep_alive_carries_the_token_percent_encoded_and_shows_it_as_stars() -> None:
    keep_alive = token_spec(BINANCE).keep_alive
    assert keep_alive is not None
    request = rendered(keep_alive.request, "listenKey", LISTEN_KEY)
    assert request.method == "PUT"
    assert request.url.endswith("?listenKey=lk%2FSecret%2B9f3a7b2c")
    assert request.shown == "https://api.example/api/v3/userDataStream?listenKey=***"
    assert LISTEN_KEY not in repr(request)
    assert request.scrub(f"cannot PUT {request.url}") == f"cannot PUT {request.shown}"
    assert request.scrub("key lk%2FSecret%2B9f3a7b2c") == "key ***"


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/json", '{"secret":"a\\"b&c d"}'),
        ("application/x-www-form-urlencoded", '{"secret":"a%22b%26c+d"}'),
        ("text/plain", '{"secret":"a"b&c d"}'),
    ],
)
def test_a_body_takes_its_secret_values_as_its_content_type_writes_them(
    content_type: str, body: str
) -> None:
    spec = token_spec(
        {
            **KUCOIN,
            "request": {
                "url": "https://auth.example/token",
                "body": '{"secret":"{clientSecret}"}',
                "contentType": content_type,
                "values": {"clientSecret": {"value": 'a"b&c d'}},
            },
        }
    )
    request = rendered(spec.request, "bullet", None)
    assert request.body == body.encode()
    assert ("Content-Type", content_type) in request.headers
    assert request.scrub(request.body.decode()).count("***") == 1


SECRET = "tok-secret-0b8e4a"
PASSPHRASE = "tok-pass-7c2d"
KRAKEN_SECRET = base64.b64encode(b"kraken-secret-\x00\xff-91c3").decode()

KUCOIN_PRIVATE: dict[str, Any] = {
    "url": "https://api.example/api/v1/bullet-private",
    "values": {
        "apiKey": {"value": API_KEY},
        "secret": {"value": SECRET},
        "passphrase": {"value": PASSPHRASE},
    },
    "timestamp": "milliseconds",
    "signatures": {
        "sign": {
            "encoding": "base64",
            "key": "secret",
            "payload": "{timestamp}POST/api/v1/bullet-private",
        },
        "signedPassphrase": {"encoding": "base64", "key": "secret", "payload": "{passphrase}"},
    },
    "headers": [
        {"name": "KC-API-KEY", "value": "{apiKey}"},
        {"name": "KC-API-SIGN", "value": "{sign}"},
        {"name": "KC-API-TIMESTAMP", "value": "{timestamp}"},
        {"name": "KC-API-PASSPHRASE", "value": "{signedPassphrase}"},
        {"name": "KC-API-KEY-VERSION", "value": "2"},
    ],
}

KRAKEN: dict[str, Any] = {
    "url": "https://api.example/0/private/GetWebSocketsToken",
    "values": {"apiKey": {"value": API_KEY}, "secret": {"value": KRAKEN_SECRET}},
    "timestamp": "milliseconds",
    "contentType": "application/x-www-form-urlencoded",
    "body": "nonce={timestamp}",
    "signatures": {
        "apiSign": {
            "algorithm": "hmacSha512",
            "encoding": "base64",
            "key": "secret",
            "keyEncoding": "base64",
            "payload": "/0/private/GetWebSocketsToken",
            "sha256Of": "{timestamp}nonce={timestamp}",
        }
    },
    "headers": [
        {"name": "API-Key", "value": "{apiKey}"},
        {"name": "API-Sign", "value": "{apiSign}"},
    ],
}


def b64_hmac(key: bytes, payload: bytes, digest: Any = hashlib.sha256) -> str:
    return base64.b64encode(hmac.new(key, payload, digest).digest()).decode()


def test_a_kucoin_private_bullet_request_is_signed_with_its_timestamp_and_passphrase() -> None:
    request = rendered(TokenRequestSpec.model_validate(KUCOIN_PRIVATE), "bullet", None)
    stamp = "1704876947123"
    assert dict(request.headers) == {
        "KC-API-KEY": API_KEY,
        "KC-API-SIGN": b64_hmac(SECRET.encode(), f"{stamp}POST/api/v1/bullet-private".encode()),
        "KC-API-TIMESTAMP": stamp,
        "KC-API-PASSPHRASE": b64_hmac(SECRET.encode(), PASSPHRASE.encode()),
        "KC-API-KEY-VERSION": "2",
    }
    shown = request.scrub(" ".join(value for _, value in request.headers))
    assert shown == f"*** *** {stamp} *** 2"  # the key, both signatures: never shown
    assert all(value not in repr(request) for value in (API_KEY, SECRET, PASSPHRASE))


def test_a_kraken_token_request_signs_its_path_and_the_digest_of_nonce_and_body() -> None:
    request = rendered(TokenRequestSpec.model_validate(KRAKEN), "ws", None)
    nonce = "1704876947123"
    assert request.body == f"nonce={nonce}".encode()
    digest = hashlib.sha256(f"{nonce}nonce={nonce}".encode()).digest()
    key = base64.b64decode(KRAKEN_SECRET)
    expected = b64_hmac(key, b"/0/private/GetWebSocketsToken" + digest, hashlib.sha512)
    assert dict(request.headers)["API-Sign"] == expected
    assert request.scrub(expected) == "***"


def test_every_request_is_signed_anew() -> None:
    spec = TokenRequestSpec.model_validate(KUCOIN_PRIVATE)
    first = render_request(spec, "bullet", None, now=NOW, nonce="a")
    later = render_request(spec, "bullet", None, now=NOW + 0.001, nonce="b")
    assert dict(first.headers)["KC-API-SIGN"] != dict(later.headers)["KC-API-SIGN"]


def test_a_value_that_holds_braces_is_sent_as_it_is() -> None:
    spec = TokenRequestSpec.model_validate(
        {
            "url": "https://api.example/t",
            "values": {"apiKey": {"value": "{timestamp}"}},
            "headers": [{"name": "X-Key", "value": "{apiKey}"}],
        }
    )
    assert rendered(spec, "t", None).headers == (("X-Key", "{timestamp}"),)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (
            {"headers": [{"name": "X-Secret", "value": "{secret}"}]},
            "header X-Secret: the signing key {secret} may not be sent",
        ),
        ({"body": "s={secret}"}, "body: the signing key {secret} may not be sent"),
        (
            {"headers": [{"name": "X", "value": "{unknown}"}]},
            "header X: {unknown} is neither a value nor computed here",
        ),
        (
            {"signatures": {"sign": {"key": "missing", "payload": "p"}}},
            "signature sign: key must name one of values",
        ),
        (
            {"signatures": {"apiKey": {"key": "secret", "payload": "p"}}},
            "signature apiKey is named like a value",
        ),
        (
            {
                "signatures": {
                    **KUCOIN_PRIVATE["signatures"],
                    "sign": {"key": "secret", "payload": "{signedPassphrase}"},
                }
            },
            "signature sign: {signedPassphrase} is neither a value nor computed here",
        ),
        (
            {"values": {"nonce": {"value": "n"}, "secret": {"value": "s"}}},
            "nonce is computed by the bridge",
        ),
    ],
)
def test_a_signed_request_that_cannot_work_is_refused(change: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(problem)):
        TokenRequestSpec.model_validate({**KUCOIN_PRIVATE, **change})


def test_the_answer_gives_the_token_its_endpoint_ping_interval_and_expiry() -> None:
    spec = token_spec(KUCOIN)
    request = rendered(spec.request, "bullet", None)
    answer = {
        "code": "200000",
        "data": {
            "token": "bullet-token-77",
            "instanceServers": [{"endpoint": "wss://ws.example/", "pingInterval": 18000}],
        },
    }
    token = read_token(spec, request, 200, json.dumps(answer).encode(), now=1000.0)
    assert token == Token("bullet-token-77", "wss://ws.example/", 18.0, 1000.0, 87400.0)
    assert "bullet-token-77" not in repr(token)


def test_expires_in_from_the_answer_wins_over_the_lifetime() -> None:
    spec = token_spec({**BINANCE, "expiresIn": "/expires", "expiresInUnit": "ms"})
    request = rendered(spec.request, "listenKey", None)
    token = read_token(spec, request, 200, b'{"listenKey":"k","expires":90000}', now=10.0)
    assert token.expires_at == 100.0


@pytest.mark.parametrize(
    ("status", "body", "message", "authentication"),
    [
        (
            401,
            b'{"code":-2015,"msg":"Invalid API-key ' + API_KEY.encode() + b'"}',
            "HTTP 401: Invalid API-key ***",
            True,
        ),
        (503, b"<html>busy</html>", "HTTP 503: <html>busy</html>", False),
        (200, b'{"other":1}', "HTTP 200: the answer has no token at /listenKey", False),
        (200, b"not json", "HTTP 200: the answer has no token at /listenKey", False),
    ],
)
def test_a_refused_fetch_says_why_in_the_servers_words_without_a_secret(
    status: int, body: bytes, message: str, authentication: bool
) -> None:
    spec = token_spec(BINANCE)
    request = rendered(spec.request, "listenKey", None)
    with pytest.raises(TokenRefused) as refused:
        read_token(spec, request, status, body, now=0.0)
    assert (refused.value.message, refused.value.authentication) == (message, authentication)


def test_an_endpoint_that_is_no_websocket_url_is_refused() -> None:
    spec = token_spec(KUCOIN)
    request = rendered(spec.request, "bullet", None)
    body = b'{"data":{"token":"t","instanceServers":[{"endpoint":"https://x"}]}}'
    with pytest.raises(TokenRefused, match="no ws"):
        read_token(spec, request, 200, body, now=0.0)


def test_a_keep_alive_is_accepted_by_any_2xx() -> None:
    spec = token_spec(BINANCE)
    request = rendered(spec.request, "listenKey", None)
    read_keep_alive(spec, request, 200, b"{}")
    with pytest.raises(TokenRefused, match="This listenKey does not exist"):
        read_keep_alive(
            spec, request, 400, b'{"code":-1125,"msg":"This listenKey does not exist."}'
        )


def test_a_token_is_due_before_the_first_connect_near_its_expiry_and_after_a_refusal() -> None:
    book = TokenBook(token_spec({**KUCOIN, "lifetimeSeconds": 100, "refreshMarginSeconds": 10}))
    assert book.due(0.0)
    book.fetched(Token("one", None, None, 0.0, 100.0))
    assert not book.due(89.0)
    assert book.due(90.0)
    assert book.keep_alive_at() is None
    assert book.next_refresh_at() == 90.0
    assert not book.expired("an older token")  # another connection's report, already handled
    assert not book.due(1.0)
    assert book.expired("one")
    assert book.due(1.0)
    assert book.next_refresh_at() is None


def test_a_keep_alive_is_due_one_interval_after_the_fetch_and_extends_the_life() -> None:
    book = TokenBook(token_spec(BINANCE))
    book.fetched(Token("k", None, None, 100.0, 3700.0))
    assert book.keep_alive_at() == 1900.0
    assert book.next_refresh_at() == 1900.0
    book.kept_alive(1900.0)
    assert book.keep_alive_at() == 3700.0
    assert book.token is not None
    assert book.token.expires_at == 5500.0
    book.keep_alive_failed(3700.0)
    assert book.keep_alive_at() == 5500.0
    assert book.token.expires_at == 5500.0  # not extended: the server did not accept it


def test_a_token_without_lifetime_lives_until_the_server_refuses_it() -> None:
    book = TokenBook(token_spec({**KUCOIN, "lifetimeSeconds": None}))
    book.fetched(Token("t", None, None, 0.0, None))
    assert not book.due(1e9)
    assert book.next_refresh_at() is None


def test_placing_fills_url_query_headers_and_messages_and_scrubs_every_form() -> None:
    spec = spec_with(
        url="ws://feed/ws/{listenKey.token}",
        query=[{"name": "key", "value": "{listenKey.token}"}, {"name": "plain", "value": "1"}],
        headers=[{"name": "X-Token", "value": "Bearer {listenKey.token}"}],
        subscribe=['{"op":"subscribe","key":"{listenKey.token}"}'],
        tokens=[BINANCE],
    )
    token = Token('lk"/+', None, None, 0.0, None)
    placed = place(spec, {"listenKey": token})
    assert placed.spec.url == "ws://feed/ws/lk%22%2F%2B"
    assert placed.spec.subscribe == ['{"op":"subscribe","key":"lk\\"/+"}']
    [secret_query, plain] = placed.spec.query
    assert secret_query.value_from is not None
    assert secret_query.value_from.resolve() == 'lk"/+'
    assert plain.value == "1"
    [header] = placed.spec.headers
    assert header.value_from is not None
    assert header.value_from.resolve() == 'Bearer lk"/+'
    endpoint = build_endpoint(placed.spec, placed.secrets)
    assert endpoint.url == "ws://feed/ws/lk%22%2F%2B?key=lk%22%2F%2B&plain=1"
    assert endpoint.shown == "ws://feed/ws/***?key=***&plain=1"
    assert 'lk"/+' not in repr(placed) + repr(endpoint)
    assert endpoint.scrub('refused lk\\"/+ and lk"/+') == "refused *** and ***"


def test_placing_a_fetched_endpoint_and_ping_interval() -> None:
    spec = spec_with(
        url="{bullet.endpoint}?token={bullet.token}&connectId=ws2kafka",
        connection={"heartbeat": {"message": '{"type":"ping"}', "intervalSeconds": 20}},
        tokens=[KUCOIN],
    )
    token = Token("t0", "wss://ws.example/", 0.5, 0.0, None)
    placed = place(spec, {"bullet": token}).spec
    assert placed.url == "wss://ws.example/?token=t0&connectId=ws2kafka"
    assert placed.connection.heartbeat is not None
    assert placed.connection.heartbeat.interval_seconds == 0.5
    without_heartbeat = place(spec_with(tokens=[KUCOIN]), {"bullet": token}).spec
    assert without_heartbeat.connection.ping_interval_seconds == 0.5


def test_placing_into_the_login_message() -> None:
    spec = spec_with(
        tokens=[KUCOIN],
        login={
            "message": '{"op":"auth","token":"{bullet.token}","key":"{apiKey}"}',
            "values": {"apiKey": {"value": API_KEY}},
            "success": [{"pointer": "/ok"}],
        },
    )
    placed = place(spec, {"bullet": Token("t1", None, None, 0.0, None)}).spec
    assert placed.login is not None
    assert placed.login.message == '{"op":"auth","token":"t1","key":"{apiKey}"}'


def test_no_tokens_place_nothing() -> None:
    spec = spec_with()
    assert place(spec, {}).spec is spec


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"url": "ws://x/{nope.token}"}, "url: {nope.token} names no token of tokens"),
        ({"url": "{listenKey.endpoint}"}, "token listenKey has no endpoint pointer"),
        ({"subscribe": ["{other.token}"]}, "subscribe: {other.token} names no token"),
        ({"tokens": [BINANCE, BINANCE]}, "token names must be unique"),
        (
            {"messages": {"rules": [{"name": "x", "match": [{"text": "e"}], "expiresToken": "y"}]}},
            "rule x: expiresToken names no token of tokens",
        ),
        (
            {"tokens": [{**BINANCE, "request": {"url": "https://x/{listenKey.token}"}}]},
            "only a keep-alive may hold a token",
        ),
        (
            {"tokens": [{**KUCOIN, "request": {"url": "https://x/", "body": "{missing}"}}]},
            "body: {missing} is neither a value nor computed here",
        ),
        ({"url": "http://x/"}, "must start with ws:// or wss://"),
    ],
)
def test_the_spec_refuses_tokens_it_cannot_place(fields: dict[str, Any], problem: str) -> None:
    base: dict[str, Any] = {"tokens": [BINANCE], **fields}
    with pytest.raises(ConfigError) as error:
        spec_with(**base)
    assert any(problem in line for line in error.value.problems), error.value.problems


def test_an_expired_token_is_retried_with_the_ordinary_backoff_and_fetched_anew() -> None:
    expired = Failure("TokenExpired", "the server says so", token_expired=True)
    decision = decide_retry(expired, 1, spec_with().reconnect, rand=lambda: 0.5)
    assert decision.reauthenticate
    assert decision.delay == 2.5
    assert decision.state.value == "Backoff"

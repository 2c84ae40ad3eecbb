"""Signed logins (``spec.login``): the exchanges' messages rendered and signed exactly as
their documentation says, anew for every connect, and the bridge's login before subscribing
on scripted connections: refusals shown in the server's words, never with a secret."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from ws2kafka.bridge.config import LoginSpec, WebSocketSourceSpec, parse_spec
from ws2kafka.bridge.errors import ConfigError
from ws2kafka.bridge.login import (
    LoginState,
    LoginWatch,
    render_login,
    resolve_credentials,
)
from ws2kafka.bridge.metrics import BridgeCollector
from ws2kafka.bridge.reporting import StatusSnapshot
from ws2kafka.bridge.service import Bridge
from ws2kafka.devstack.harness import RecordingSink, ScriptedConnection, bridge_spec, run_until

API_KEY = "985d5b66-57ce-40fb-b714-afc0b9787083"
SECRET = "5B48A1C8D7B1D6F1E1A2B3C4D5E6F7A8"
PASSPHRASE = 'pass"phrase\\1'
#: 2024-01-10T08:55:47.123Z
NOW = 1704876947.123

OKX: dict[str, Any] = {
    "message": '{"op":"login","args":[{"apiKey":"{apiKey}","passphrase":"{passphrase}",'
    '"timestamp":"{timestamp}","sign":"{signature}"}]}',
    "values": {
        "apiKey": {"value": API_KEY},
        "passphrase": {"value": PASSPHRASE},
        "secret": {"value": SECRET},
    },
    "timestamp": "seconds",
    "signature": {
        "algorithm": "hmacSha256",
        "encoding": "base64",
        "key": "secret",
        "payload": "{timestamp}GET/users/self/verify",
    },
    "success": [{"pointer": "/event", "equals": "login"}, {"pointer": "/code", "equals": "0"}],
    "failure": [{"pointer": "/event", "equals": "error"}],
    "messagePointer": "/msg",
}
BYBIT: dict[str, Any] = {
    "message": '{"op":"auth","args":["{apiKey}",{expires},"{signature}"]}',
    "values": {"apiKey": {"value": API_KEY}, "secret": {"value": SECRET}},
    "expiresAfterMs": 5000,
    "signature": {"key": "secret", "payload": "GET/realtime{expires}"},
    "success": [{"pointer": "/op", "equals": "auth"}, {"pointer": "/success", "equals": True}],
    "failure": [{"pointer": "/op", "equals": "auth"}, {"pointer": "/success", "equals": False}],
    "messagePointer": "/ret_msg",
}
DERIBIT: dict[str, Any] = {
    "message": '{"jsonrpc":"2.0","id":9929,"method":"public/auth","params":'
    '{"grant_type":"client_signature","client_id":"{clientId}","timestamp":{timestamp},'
    '"signature":"{signature}","nonce":"{nonce}","data":""}}',
    "values": {"clientId": {"value": "AMANDA"}, "clientSecret": {"value": SECRET}},
    "timestamp": "milliseconds",
    "signature": {"key": "clientSecret", "payload": "{timestamp}\n{nonce}\n"},
    "success": [{"pointer": "/id", "equals": 9929}, {"pointer": "/result"}],
    "failure": [{"pointer": "/id", "equals": 9929}, {"pointer": "/error"}],
    "messagePointer": "/error/message",
}


def render(spec: dict[str, Any], now: float = NOW, nonce: str = "1iqt2wls") -> Any:
    login = LoginSpec.model_validate(spec)
    message = render_login(login, resolve_credentials(login), now=now, nonce=nonce)
    return message, json.loads(message.text)


def hmac_of(key: str, payload: str, digest: Any = hashlib.sha256) -> bytes:
    return hmac.new(key.encode(), payload.encode(), digest).digest()


def test_okx_login_is_signed_with_base64_hmac_sha256_of_seconds_get_and_the_verify_path() -> None:
    message, document = render(OKX)
    signature = base64.b64encode(hmac_of(SECRET, "1704876947GET/users/self/verify")).decode()
    assert document == {
        "op": "login",
        "args": [
            {
                "apiKey": API_KEY,
                "passphrase": PASSPHRASE,  # JSON-escaped in the text, intact once parsed
                "timestamp": "1704876947",
                "sign": signature,
            }
        ],
    }
    assert message.timestamp == "1704876947"


def test_bybit_auth_is_signed_with_hex_hmac_sha256_of_get_realtime_and_expires() -> None:
    _, document = render(BYBIT)
    expires = 1704876947123 + 5000
    signature = hmac_of(SECRET, f"GET/realtime{expires}").hex()
    assert document == {"op": "auth", "args": [API_KEY, expires, signature]}


def test_deribit_client_signature_signs_timestamp_nonce_and_empty_data() -> None:
    _, document = render(DERIBIT)
    params = document["params"]
    assert (params["timestamp"], params["nonce"], params["data"]) == (1704876947123, "1iqt2wls", "")
    assert params["signature"] == hmac_of(SECRET, "1704876947123\n1iqt2wls\n").hex()


def test_timestamps_are_taken_anew_per_connect() -> None:
    first, _ = render(BYBIT, now=NOW)
    again, _ = render(BYBIT, now=NOW + 0.001)  # a millisecond later
    assert first.text != again.text  # a retried login is never the same message


def test_nothing_secret_is_in_a_repr_and_scrub_removes_the_secrets_and_signature() -> None:
    message, document = render(OKX)
    login = LoginSpec.model_validate(OKX)
    for text in (repr(message), repr(login), repr(resolve_credentials(login))):
        assert SECRET not in text
        assert API_KEY not in text
        assert document["args"][0]["sign"] not in text
    echoed = f"bad login {message.text}"
    assert API_KEY not in message.scrub(echoed)
    assert document["args"][0]["sign"] not in message.scrub(echoed)


@pytest.mark.parametrize(
    ("frame", "state", "words"),
    [
        ('{"event":"login","code":"0","msg":"","connId":"a4d3ae55"}', "Authenticated", None),
        (
            '{"event":"error","code":"60009","msg":"Login failed.","connId":"a"}',
            "LoginRejected",
            "Login failed.",
        ),
        ('{"event":"subscribe","arg":{}}', None, None),
    ],
)
def test_the_answer_is_told_by_the_spec_conditions(
    frame: str, state: str | None, words: str | None
) -> None:
    answer = LoginWatch(LoginSpec.model_validate(OKX)).observe(frame.encode(), json.loads(frame))
    assert (answer.state if answer else None) == state
    if words is not None:
        assert answer is not None
        assert answer.message == words


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"message": '{"k":"{apiKeys}"}'}, "message: {apiKeys} is neither a value nor computed"),
        ({"values": {"timestamp": {"value": "x"}}}, "timestamp is computed by the bridge"),
        ({"values": {"1x": {"value": "x"}}}, "value name '1x'"),
        ({"signature": {"key": "nope", "payload": "p"}}, "signature.key must name one of values"),
        ({"message": '{"s":"{secret}"}'}, "the signing key may not be sent in the message"),
        (
            {"signature": {"key": "secret", "payload": "{signature}"}},
            "signature.payload: {signature} is neither",
        ),
    ],
)
def test_a_login_that_cannot_be_rendered_is_refused_naming_the_problem(
    change: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_spec(
            {
                "url": "ws://x/ws",
                "kafka": {"bootstrapServers": "k:1", "topic": "t"},
                "login": {**BYBIT, **change},
            }
        )
    assert problem in str(refused.value)


def login_spec(**login: Any) -> WebSocketSourceSpec:
    return bridge_spec(
        "127.0.0.1:1",
        "ws://feed:1/private",
        "t",
        subscribe=['{"op":"subscribe","args":["order"]}'],
        login={**BYBIT, **login},
        reconnect={"initialDelaySeconds": 0.01, "maxDelaySeconds": 0.02},
        drainTimeoutSeconds=0.5,
    )


async def test_a_refused_login_is_retried_with_a_fresh_signature_before_subscribing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(1)
    refused = ScriptedConnection(['{"success":false,"ret_msg":"error sign!","op":"auth"}'])
    accepted = ScriptedConnection(['{"success":true,"ret_msg":"","op":"auth"}', "d1", "d2"])
    connections = [refused, accepted]

    async def opener(*_: object) -> ScriptedConnection:
        return connections.pop(0) if len(connections) > 1 else connections[0]

    bridge = Bridge(
        login_spec(), name="private", opener=opener, sink_factory=RecordingSink().attach
    )
    await run_until(bridge, lambda: bridge.stats.delivered == 2, "two frames")
    [first] = refused.sent  # the login only: no subscription after a refusal
    second, subscribe = accepted.sent
    assert subscribe == '{"op":"subscribe","args":["order"]}'
    assert json.loads(first)["args"][1] < json.loads(second)["args"][1]  # a fresh expiry
    assert json.loads(first)["args"][2] != json.loads(second)["args"][2]
    assert bridge.stats.logins == {LoginState.REJECTED: 1, LoginState.AUTHENTICATED: 1}
    assert bridge.stats.auth_failures == 1
    assert bridge.stats.authentication == LoginState.AUTHENTICATED
    assert bridge.stats.last_authentication_failure is None
    assert bridge.stats.errors == {"LoginRejected": 1}
    lines = [record.getMessage() for record in caplog.records]
    assert any("error sign! (LoginRejected)" in line for line in lines)
    assert [line for line in lines if SECRET in line or API_KEY in line] == []
    status = StatusSnapshot.of(bridge.stats, None, 0.0).to_status()
    assert status["authentication"] == {
        "state": "Authenticated",
        "message": "the server accepted the login",
        "lastFailure": None,
        "nextRefreshTime": None,
    }
    registry = CollectorRegistry()
    registry.register(BridgeCollector(lambda: [("ns/private", bridge.stats)]))
    metrics = generate_latest(registry).decode()
    for line in (
        'ws2kafka_logins_total{outcome="Authenticated",source="ns/private"} 1.0',
        'ws2kafka_logins_total{outcome="LoginRejected",source="ns/private"} 1.0',
        'ws2kafka_logins_total{outcome="LoginTimeout",source="ns/private"} 0.0',
        'ws2kafka_authentication_state{source="ns/private",state="Authenticated"} 1.0',
    ):
        assert line in metrics, line


async def test_a_login_without_an_answer_times_out_and_shows_why() -> None:
    silent = ScriptedConnection([])
    bridge = Bridge(
        login_spec(timeoutSeconds=0.05),
        name="private",
        opener=silent.opener(),
        sink_factory=RecordingSink().attach,
    )
    await run_until(bridge, lambda: bridge.stats.logins.get(LoginState.TIMEOUT, 0) >= 1, "timeout")
    assert bridge.stats.last_authentication_failure == (
        LoginState.TIMEOUT,
        "no answer to the login within 0.05 s",
    )
    assert bridge.stats.auth_failures == 0  # a silent server is no proof of bad credentials
    assert SECRET not in str(bridge.stats.last_error)


def test_websockets_debug_log_of_a_sent_frame_hides_its_content() -> None:
    from websockets.frames import Frame, Opcode

    from ws2kafka.bridge.source import CLIENT_LOG, RedactHeaderValues

    frame = Frame(Opcode.TEXT, f'{{"apiKey":"{API_KEY}"}}'.encode())
    record = logging.LogRecord(CLIENT_LOG.name, logging.DEBUG, __file__, 1, "> %s", (frame,), None)
    assert RedactHeaderValues().filter(record)
    assert record.getMessage() == "> TEXT [49 bytes, redacted]"

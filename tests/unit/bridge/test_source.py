"""How connection failures are classified and which close code they are counted under; which
proxy of the environment a host is reached through."""

import pytest
from websockets.exceptions import ConnectionClosedError, ConnectionClosedOK
from websockets.frames import Close

from ws2kafka.bridge.config import TlsSpec
from ws2kafka.bridge.errors import AuthenticationFailed, ConfigError, HandshakeFailed
from ws2kafka.bridge.source import build_ssl_context, describe_failure, environment_proxy


@pytest.mark.parametrize(
    ("exc", "code", "message"),
    [
        # the server closed: its code, echoed by the bridge
        (ConnectionClosedOK(Close(1001, "bye"), Close(1001, "bye"), True), 1001, "1001 bye"),
        # the bridge failed the connection (frame too big, bad UTF-8): only its own frame
        (ConnectionClosedError(None, Close(1009, "too big")), 1009, "1009 too big"),
        (ConnectionClosedError(None, Close(1007, "bad utf-8")), 1007, "1007 bad utf-8"),
        # the bridge closed first and the server answered with another code
        (ConnectionClosedOK(Close(1000, ""), Close(1001, "stop"), False), 1001, "1001 stop"),
        # the TCP connection just vanished
        (ConnectionClosedError(None, None), 1006, "1006 no close frame received"),
    ],
)
def test_the_close_code_is_the_one_of_the_side_that_closed_first(
    exc: ConnectionClosedError, code: int, message: str
) -> None:
    failure = describe_failure(exc)
    assert (failure.close_code, failure.message) == (code, f"closed with {message}")


def test_handshake_failures_carry_retry_after_and_authentication() -> None:
    assert describe_failure(HandshakeFailed(429, 3.0)).retry_after == 3.0
    denied = describe_failure(AuthenticationFailed(401))
    assert (denied.reason, denied.authentication) == ("AuthenticationFailed", True)


@pytest.mark.parametrize(
    ("tls", "problem"),
    [
        ({"caFile": "/nonexistent/ca.pem"}, "spec.tls.caFile: cannot load /nonexistent/ca.pem: "),
        ({"ca": {"value": "not a certificate"}}, "spec.tls.ca: cannot load "),
        (
            {"ca": {"secretKeyRef": {"name": "s", "key": "ca"}}},
            "spec.tls.ca: secretKeyRef and configMapKeyRef are resolved by the operator",
        ),
        (
            {"clientCertFile": "/nonexistent/c.pem", "clientKeyFile": "/nonexistent/k.pem"},
            "spec.tls.clientCertFile: cannot load /nonexistent/c.pem: ",
        ),
        (
            {"clientCert": {"value": "x"}, "clientKey": {"value": "y"}},
            "spec.tls.clientCert: cannot load ",
        ),
    ],
)
def test_unusable_tls_material_is_a_config_error_naming_the_field(
    tls: dict[str, object], problem: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        build_ssl_context(TlsSpec.model_validate(tls))
    [line] = raised.value.problems
    assert line.startswith(problem), line


def test_the_proxy_comes_from_the_environment_like_websockets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("http", "https", "ws", "wss", "all", "socks", "no"):
        monkeypatch.delenv(f"{name}_proxy", raising=False)
        monkeypatch.delenv(f"{name.upper()}_PROXY", raising=False)
    assert environment_proxy("ws://feed") is None
    monkeypatch.setenv("http_proxy", "http://plain:3128")
    assert environment_proxy("ws://feed") == "http://plain:3128"
    assert environment_proxy("wss://feed") is None
    monkeypatch.setenv("https_proxy", "http://proxy:3128")
    assert environment_proxy("wss://feed") == "http://proxy:3128"
    assert environment_proxy("ws://feed") == "http://proxy:3128"  # preferred for ws:// too
    monkeypatch.setenv("wss_proxy", "socks5h://socks:1080")
    assert environment_proxy("wss://feed") == "socks5h://socks:1080"
    monkeypatch.setenv("no_proxy", "feed,.cluster.local")
    assert environment_proxy("wss://feed") is None
    assert environment_proxy("ws://kafka.svc.cluster.local:9000") is None
    assert environment_proxy("ws://elsewhere") == "http://proxy:3128"
    # a token request to a host takes the proxy a WebSocket to that host would
    assert environment_proxy("https://api.elsewhere/token") == "socks5h://socks:1080"
    assert environment_proxy("http://api.elsewhere/token") == "http://proxy:3128"
    assert environment_proxy("https://feed/token") is None

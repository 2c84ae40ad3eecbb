"""How connection failures are classified and which close code they are counted under."""

import pytest
from websockets.exceptions import ConnectionClosedError, ConnectionClosedOK
from websockets.frames import Close

from ws2kafka.bridge.errors import AuthenticationFailed, HandshakeFailed
from ws2kafka.bridge.source import describe_failure


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

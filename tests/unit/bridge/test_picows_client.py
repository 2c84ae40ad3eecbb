"""The picows client's translation to the websockets API the bridge understands (no network)."""

from __future__ import annotations

from picows.websockets.exceptions import ConnectionClosedError as PicowsClosedError
from picows.websockets.exceptions import ConnectionClosedOK as PicowsClosedOK
from websockets.exceptions import ConnectionClosedError, ConnectionClosedOK

from ws2kafka.bridge.picows_client import _unlisted_status, closed_to_websockets
from ws2kafka.bridge.source import describe_failure


def test_a_connection_closed_without_close_frames_is_a_1006_error() -> None:
    exc = closed_to_websockets(PicowsClosedError(None, None, None))
    assert isinstance(exc, ConnectionClosedError)
    failure = describe_failure(exc)
    assert (failure.reason, failure.close_code) == ("ConnectionClosedError", 1006)


def test_the_ok_or_error_kind_is_kept() -> None:
    assert isinstance(closed_to_websockets(PicowsClosedOK(None, None, None)), ConnectionClosedOK)


def test_a_status_picows_cannot_parse_is_read_from_the_raw_response() -> None:
    raw = b"HTTP/1.1 520 Unknown Error\r\nServer: cf\r\nretry-after: 7"
    assert _unlisted_status(raw) == (520, "7")
    assert _unlisted_status(b"HTTP/1.1 599") == (599, None)
    assert _unlisted_status(b"HTTP/1.0 520 Unknown Error") is None
    assert _unlisted_status(None) is None

"""The picows client's translation to the websockets API the bridge understands (no network)."""

from __future__ import annotations

import pytest
from picows.websockets.exceptions import ConnectionClosedError as PicowsClosedError
from picows.websockets.exceptions import ConnectionClosedOK as PicowsClosedOK
from websockets.exceptions import ConnectionClosedError, ConnectionClosedOK

from ws2kafka.bridge.picows_client import _proxy, closed_to_websockets
from ws2kafka.bridge.source import describe_failure


def test_a_connection_closed_without_close_frames_is_a_1006_error() -> None:
    exc = closed_to_websockets(PicowsClosedError(None, None, None))
    assert isinstance(exc, ConnectionClosedError)
    failure = describe_failure(exc)
    assert (failure.reason, failure.close_code) == ("ConnectionClosedError", 1006)


def test_the_ok_or_error_kind_is_kept() -> None:
    assert isinstance(closed_to_websockets(PicowsClosedOK(None, None, None)), ConnectionClosedOK)


def test_the_proxy_comes_from_the_environment_like_websockets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("http_proxy", "https_proxy", "ws_proxy", "wss_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    assert _proxy("ws://feed") is None
    monkeypatch.setenv("https_proxy", "http://proxy:3128")
    assert _proxy("wss://feed") == "http://proxy:3128"
    assert _proxy("ws://feed") is None

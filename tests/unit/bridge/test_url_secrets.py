"""Secrets in the URL's query (``spec.query``): appended at every connect, shown as ``***``
wherever the URL is (the connect log, failures, the clients' DEBUG request line)."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from ws2kafka.bridge.service import Bridge
from ws2kafka.bridge.source import (
    CLIENT_LOG,
    RedactHeaderValues,
    build_endpoint,
    describe_failure,
    redact_url,
    shown_url,
)
from ws2kafka.devstack.harness import RecordingSink, ScriptedConnection, bridge_spec, run_until

SECRET = "s3cr3t/t+k&n=1"
ENCODED = "s3cr3t%2Ft%2Bk%26n%3D1"


def spec_with_query(url: str = "ws://feed:1/ws?lang=en", **fields: Any) -> Any:
    return bridge_spec(
        "127.0.0.1:1",
        url,
        "t",
        query=[
            {"name": "token", "valueFrom": {"env": "FEED_TOKEN"}},
            {"name": "depth", "value": "10"},
        ],
        drainTimeoutSeconds=0.5,
        **fields,
    )


@pytest.fixture(autouse=True)
def token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEED_TOKEN", SECRET)


@pytest.mark.parametrize(
    ("url", "names", "shown"),
    [
        ("ws://h/p?token=abc&depth=1", {"token"}, "ws://h/p?token=***&depth=1"),
        ("ws://h/p?token=abc&depth=1", None, "ws://h/p?token=***&depth=***"),
        ("ws://u:pw@h:9/p?a=1#frag", set(), "ws://u:***@h:9/p?a=1#frag"),
        ("/ws?key=k&flag", None, "/ws?key=***&flag"),
        ("ws://h/p", None, "ws://h/p"),
    ],
)
def test_redact_url_hides_secret_values_and_passwords_and_keeps_names(
    url: str, names: set[str] | None, shown: str
) -> None:
    assert redact_url(url, names) == shown


def test_the_query_is_appended_encoded_after_the_urls_own_and_shown_redacted() -> None:
    spec = spec_with_query("ws://feed:1/ws?lang=en#top")
    endpoint = build_endpoint(spec)
    assert endpoint.url == f"ws://feed:1/ws?lang=en&token={ENCODED}&depth=10#top"
    assert endpoint.shown == "ws://feed:1/ws?lang=en&token=***&depth=10#top"
    assert shown_url(spec) == endpoint.shown
    assert SECRET not in repr(endpoint)
    assert ENCODED not in repr(endpoint)
    assert SECRET not in repr(spec)


def test_a_failure_that_quotes_the_url_or_the_secret_is_scrubbed() -> None:
    endpoint = build_endpoint(spec_with_query())
    quoted = describe_failure(ValueError(f"{endpoint.url} isn't a valid URI ({SECRET})"))
    scrubbed = endpoint.scrub_failure(quoted)
    assert scrubbed.message == f"{endpoint.shown} isn't a valid URI (***)"
    assert scrubbed.reason == "ValueError"


def test_the_clients_debug_request_line_never_shows_a_query_value() -> None:
    record = logging.LogRecord(
        CLIENT_LOG.name,
        logging.DEBUG,
        __file__,
        1,
        "> GET %s HTTP/1.1",
        (f"/ws?token={ENCODED}",),
        None,
    )
    assert RedactHeaderValues().filter(record)
    assert record.getMessage() == "> GET /ws?token=*** HTTP/1.1"


async def test_the_bridge_connects_with_the_secret_and_shows_it_nowhere(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(1)
    urls: list[str] = []
    connection = ScriptedConnection(["a", "b"])

    async def refuse_first(spec: Any, _: object) -> ScriptedConnection:
        urls.append(spec.url)
        if len(urls) == 1:
            raise ValueError(f"cannot open {spec.url}")
        return connection

    spec = spec_with_query(reconnect={"initialDelaySeconds": 0.01, "maxDelaySeconds": 0.02})
    bridge = Bridge(spec, name="query", opener=refuse_first, sink_factory=RecordingSink().attach)
    await run_until(bridge, lambda: bridge.stats.delivered == 2, "two frames")
    assert urls == [f"ws://feed:1/ws?lang=en&token={ENCODED}&depth=10"] * 2
    assert bridge.stats.last_error == (
        "ValueError: cannot open ws://feed:1/ws?lang=en&token=***&depth=10"
    )
    lines = [record.getMessage() for record in caplog.records]
    assert any("connected to ws://feed:1/ws?lang=en&token=***&depth=10" in line for line in lines)
    assert [line for line in lines if SECRET in line or ENCODED in line] == []

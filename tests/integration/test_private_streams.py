"""Private streams: the login examples (``examples/okx-orders.yaml``,
``examples/bybit-orders.yaml``) run, unchanged but for their URL, broker, topic, secrets and
scaled-down timings, against local feeds that check the exchange's exact signature and its
timestamp window (``devstack/private_feeds.py``), into the real broker.

Data flows after the login with both clients, and every reconnect logs in anew (a feed whose
window is shorter than a connection's life refuses a reused timestamp); a wrong secret shows
as ``LoginRejected`` in the exchange's words, and no secret shows anywhere, at any log level.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from ws2kafka.bridge.config import WebSocketSourceSpec, parse_spec
from ws2kafka.bridge.login import LoginState
from ws2kafka.bridge.service import Bridge, ExitCode
from ws2kafka.bridge.stats import ConnectionState
from ws2kafka.devstack.exchange_feeds import ExchangeFeed
from ws2kafka.devstack.harness import (
    RecordingReporter,
    new_topic,
    record_count,
    run_to_end,
    run_until,
    value_of,
)
from ws2kafka.devstack.kafka import KafkaBroker
from ws2kafka.devstack.private_feeds import Account, BybitPrivateFeed, OkxPrivateFeed

pytestmark = pytest.mark.kafka

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

ACCOUNT = Account("prv-key-4f0c9a61e2d8", "prv-secret-9b7e13c5a4f2", "prv-pass-61d0e8b3")
WRONG_SECRET = "prv-wrong-2c8d5e7f0a91"
#: Every form of a credential that must never show (the API key and passphrase are secret
#: too: they come from a Secret).
SECRETS = (ACCOUNT.api_key, ACCOUNT.secret, ACCOUNT.passphrase, WRONG_SECRET)


@dataclass(frozen=True)
class Private:
    """A private-stream example and the feed that imitates its exchange."""

    example: str
    feed: Callable[..., ExchangeFeed]
    rejection: str
    """The exchange's words for a wrong signature."""
    values: dict[str, str]
    """The example's login values (its Secret's keys) and what the account holds for them."""

    @property
    def name(self) -> str:
        return self.example.removesuffix(".yaml")


PRIVATE = [
    Private(
        "okx-orders.yaml",
        OkxPrivateFeed,
        "Login failed.",
        {"apiKey": ACCOUNT.api_key, "secret": ACCOUNT.secret, "passphrase": ACCOUNT.passphrase},
    ),
    Private(
        "bybit-orders.yaml",
        BybitPrivateFeed,
        "error sign!",
        {"apiKey": ACCOUNT.api_key, "secret": ACCOUNT.secret},
    ),
]


def private_spec(
    private: Private, url: str, kafka: KafkaBroker, topic: str, *, client: str, secret: str
) -> WebSocketSourceSpec:
    """The example's WebSocketSource, its Secret's values given inline (a local config)."""
    documents = list(yaml.safe_load_all((EXAMPLES / private.example).read_text()))
    [source] = [doc for doc in documents if doc.get("kind") == "WebSocketSource"]
    spec: dict[str, Any] = source["spec"]
    values = {**private.values, "secret": secret}
    login = spec["login"]
    if "expiresAfterMs" in login:
        login["expiresAfterMs"] = 1000  # scaled down like the heartbeat: within the window
    assert set(login["values"]) == set(values)
    login["values"] = {name: {"value": value} for name, value in values.items()}
    spec["connection"].update(client=client, heartbeat={**spec["connection"]["heartbeat"]})
    spec["connection"]["heartbeat"]["intervalSeconds"] = 0.1
    spec["kafka"].update(bootstrapServers=kafka.bootstrap_servers, topic=topic)
    spec.update(
        url=url,
        reconnect={"initialDelaySeconds": 0.05, "maxDelaySeconds": 0.2},
        drainTimeoutSeconds=20,
    )
    return parse_spec(spec)


def expected_records(frames: list[str]) -> list[bytes]:
    """One record per order: each frame's ``data`` array, split."""
    return [
        json.dumps(order, separators=(",", ":")).encode()
        for frame in frames
        for order in json.loads(frame)["data"]
    ]


@pytest.mark.parametrize("private", PRIVATE, ids=[private.name for private in PRIVATE])
async def test_data_flows_after_the_login_and_every_reconnect_logs_in_anew(
    kafka: KafkaBroker, private: Private, client: str
) -> None:
    topic = new_topic(kafka)
    # a window of 2 s and connections of 3 s: a timestamp (or expiry) of the first login,
    # sent again on the reconnect, would be refused
    feed = private.feed(ACCOUNT, window=2.0, frames_per_connection=20, frame_interval=0.15)
    async with feed:
        spec = private_spec(private, feed.url, kafka, topic, client=client, secret=ACCOUNT.secret)
        bridge = Bridge(spec, name=private.name)

        def streamed() -> bool:
            conns = feed.connections
            return (
                len(conns) > feed.disconnects
                and conns[-1].data_sent == feed.frames_per_connection
                and bridge.stats.delivered >= len(expected_records(feed.data_frames))
            )

        summary = await run_until(bridge, streamed, "every order delivered", timeout=40)
    assert len(feed.connections) == feed.disconnects + 1
    for conn in feed.connections:
        assert conn.authenticated
        assert conn.unexpected == []  # nothing before the login, the subscription after it
        assert conn.missed is None, conn.missed
        assert len(conn.logins) == 1
    first, second = (conn.logins[0] for conn in feed.connections)
    assert float(second) - float(first) >= 2.0 * (1000 if private.name.startswith("bybit") else 1)
    assert (summary.exit_code, summary.reconnects) == (ExitCode.OK, 1)
    assert bridge.stats.logins == {LoginState.AUTHENTICATED: 2}
    assert bridge.stats.authentication == LoginState.AUTHENTICATED
    expected = expected_records(feed.data_frames)
    assert [value_of(m) for m in kafka.consume_all(topic, expected=len(expected))] == expected
    assert record_count(kafka, topic) == len(expected)


@pytest.mark.parametrize("private", PRIVATE, ids=[private.name for private in PRIVATE])
async def test_a_wrong_secret_is_login_rejected_in_the_exchanges_words_and_never_shown(
    kafka: KafkaBroker, private: Private, client: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(1)  # every level: DEBUG and the clients' own
    topic = new_topic(kafka)
    async with private.feed(ACCOUNT) as feed:
        spec = private_spec(private, feed.url, kafka, topic, client=client, secret=WRONG_SECRET)
        spec = spec.model_copy(
            update={"reconnect": spec.reconnect.model_copy(update={"max_attempts": 2})}
        )
        reporter = RecordingReporter()
        bridge = Bridge(spec, name=private.name, reporter=reporter)
        summary = await run_to_end(bridge, timeout=30)
    assert summary.exit_code == ExitCode.GAVE_UP
    assert [conn.authenticated for conn in feed.connections] == [False, False]
    assert all(conn.symbols == [] and conn.data_sent == 0 for conn in feed.connections)
    assert [len(conn.logins) for conn in feed.connections] == [1, 1]  # retried, signed anew
    assert float(feed.connections[0].logins[0]) <= float(feed.connections[1].logins[0])
    assert bridge.stats.logins == {LoginState.REJECTED: 2}
    assert bridge.stats.auth_failures == 2
    rejected = {"state": "LoginRejected", "message": private.rejection}
    reported = {**rejected, "lastFailure": rejected, "nextRefreshTime": None}
    assert reported in [s["authentication"] for s in reporter.statuses]
    assert any(s["state"] == ConnectionState.AUTH_FAILED for s in reporter.statuses)
    assert bridge.stats.last_error is not None
    assert private.rejection in bridge.stats.last_error
    # nothing secret anywhere: the bridge's log records (the feed's own are its business),
    # the statuses it reported, its stats
    lines = [r.getMessage() for r in caplog.records if not r.name.startswith("websockets.server")]
    shown = [*lines, json.dumps(reporter.statuses), repr(bridge.stats), repr(spec)]
    assert [text for text in shown if any(secret in text for secret in SECRETS)] == []
    assert record_count(kafka, topic) == 0

"""Private streams: the login and token examples (``examples/okx-orders.yaml``,
``examples/bybit-orders.yaml``, ``examples/deribit-user-trades.yaml``) run, unchanged but for
their URL, broker, topic, secrets and scaled-down timings, against local feeds that check the
exchange's exact signature and its timestamp window (``devstack/private_feeds.py``), into the
real broker.

Data flows after the login with both clients, and every reconnect logs in anew (a feed whose
window is shorter than a connection's life refuses a reused timestamp); a wrong secret shows
as ``LoginRejected`` in the exchange's words, and no secret shows anywhere, at any log level.

Tokens fetched over HTTP (``examples/binance-user-data.yaml``, ``examples/kucoin-trades.yaml``)
run against local REST + WebSocket feeds of Binance's listenKey and KuCoin's bullet: the data
flows across keep-alives and refreshes with nothing lost, an expired key is fetched anew on
the stream's word, a failing token endpoint is ``TokenFetchFailed``, and no token or API key
shows anywhere. Signed token requests (``examples/kucoin-orders.yaml``,
``examples/kraken-executions.yaml``) are checked by feeds that recompute KuCoin's and
Kraken's signatures and refuse a stale timestamp or a nonce that does not grow: each fetch
is signed anew, and a wrong secret is ``TokenFetchFailed`` in the exchange's words.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

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
from ws2kafka.devstack.private_feeds import (
    Account,
    BinanceUserDataFeed,
    BybitPrivateFeed,
    DeribitPrivateFeed,
    KrakenTokenFeed,
    KucoinBulletFeed,
    KucoinPrivateBulletFeed,
    OkxPrivateFeed,
    TokenFeed,
)

pytestmark = pytest.mark.kafka

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

ACCOUNT = Account("prv-key-4f0c9a61e2d8", "prv-secret-9b7e13c5a4f2", "prv-pass-61d0e8b3")
WRONG_SECRET = "prv-wrong-2c8d5e7f0a91"
#: Every form of a credential that must never show (the API key and passphrase are secret
#: too: they come from a Secret).
SECRETS = (ACCOUNT.api_key, ACCOUNT.secret, ACCOUNT.passphrase, WRONG_SECRET)
#: Kraken's secret is Base64 (of 64 bytes, as Kraken's).
KRAKEN = Account("prv-kraken-key-8e3f1b", base64.b64encode(b"kraken-secret-\x01\xfe" * 3).decode())
KRAKEN_WRONG = base64.b64encode(b"kraken-wrong-\x02\xfd" * 3).decode()


@dataclass(frozen=True)
class Private:
    """A private-stream example and the feed that imitates its exchange."""

    example: str
    feed: Callable[..., ExchangeFeed]
    rejection: str
    """The exchange's words for a wrong signature."""
    values: dict[str, str]
    """The example's login values (its Secret's keys) and what the account holds for them."""
    secret: str = "secret"
    """The value that keys the signature."""
    milliseconds: bool = False
    """The login's timestamp (or expiry) is in epoch milliseconds."""

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
        milliseconds=True,
    ),
    Private(
        "deribit-user-trades.yaml",
        DeribitPrivateFeed,
        "invalid_credentials",
        {"clientId": ACCOUNT.api_key, "clientSecret": ACCOUNT.secret},
        secret="clientSecret",
        milliseconds=True,
    ),
]


def private_spec(
    private: Private, url: str, kafka: KafkaBroker, topic: str, *, client: str, secret: str
) -> WebSocketSourceSpec:
    """The example's WebSocketSource, its Secret's values given inline (a local config)."""
    documents = list(yaml.safe_load_all((EXAMPLES / private.example).read_text()))
    [source] = [doc for doc in documents if doc.get("kind") == "WebSocketSource"]
    spec: dict[str, Any] = source["spec"]
    values = {**private.values, private.secret: secret}
    login = spec["login"]
    if "expiresAfterMs" in login:
        login["expiresAfterMs"] = 1000  # scaled down like the heartbeat: within the window
    assert set(login["values"]) == set(values)
    login["values"] = {name: {"value": value} for name, value in values.items()}
    connection = spec.setdefault("connection", {})
    connection["client"] = client
    if "heartbeat" in connection:  # the client's own heartbeat (OKX, Bybit), scaled down
        connection["heartbeat"] = {**connection["heartbeat"], "intervalSeconds": 0.1}
    spec["kafka"].update(bootstrapServers=kafka.bootstrap_servers, topic=topic)
    spec.update(
        url=url,
        reconnect={"initialDelaySeconds": 0.05, "maxDelaySeconds": 0.2},
        drainTimeoutSeconds=20,
    )
    return parse_spec(spec)


def assert_once_in_order(kafka: KafkaBroker, topic: str, expected: list[bytes]) -> None:
    """``topic`` holds ``expected``, each record once, in order, and nothing else."""
    assert [value_of(m) for m in kafka.consume_all(topic, expected=len(expected))] == expected
    assert record_count(kafka, topic) == len(expected)


def expected_records(frames: list[str], split: str = "/data") -> list[bytes]:
    """One record per order: each frame's array at ``split`` (a JSON pointer), split."""

    def elements(frame: str) -> list[Any]:
        node = json.loads(frame)
        for key in split.strip("/").split("/"):
            node = node[key]
        assert isinstance(node, list)
        return node

    return [
        json.dumps(order, separators=(",", ":")).encode()
        for frame in frames
        for order in elements(frame)
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
        assert spec.kafka.split is not None
        split = spec.kafka.split.pointer

        def streamed() -> bool:
            conns = feed.connections
            return (
                len(conns) > feed.disconnects
                and conns[-1].data_sent == feed.frames_per_connection
                and bridge.stats.delivered >= len(expected_records(feed.data_frames, split))
            )

        summary = await run_until(bridge, streamed, "every order delivered", timeout=40)
    assert len(feed.connections) == feed.disconnects + 1
    for conn in feed.connections:
        assert conn.authenticated
        assert conn.unexpected == []  # nothing before the login, the subscription after it
        assert conn.missed is None, conn.missed
        assert len(conn.logins) == 1
    first, second = (conn.logins[0] for conn in feed.connections)
    assert float(second) - float(first) >= 2.0 * (1000 if private.milliseconds else 1)
    assert (summary.exit_code, summary.reconnects) == (ExitCode.OK, 1)
    assert bridge.stats.logins == {LoginState.AUTHENTICATED: 2}
    assert bridge.stats.authentication == LoginState.AUTHENTICATED
    assert_once_in_order(kafka, topic, expected_records(feed.data_frames, split))


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


# -- tokens fetched over HTTP (spec.tokens) ------------------------------------------------

LISTEN_KEY_LIFETIME = 1.0
"""The feed's listenKey life, scaled down from Binance's 60 minutes."""


def example_spec(name: str) -> dict[str, Any]:
    documents = list(yaml.safe_load_all((EXAMPLES / name).read_text()))
    [source] = [doc for doc in documents if doc.get("kind") == "WebSocketSource"]
    spec: dict[str, Any] = source["spec"]
    return spec


def with_base(url: str, base: str) -> str:
    """``url`` (an exchange's) on the local feed: its path kept, its origin ``base``'s."""
    parts = urlsplit(url)
    return urlunsplit(urlsplit(base)[:2] + parts[2:])


def binance_spec(
    feed: BinanceUserDataFeed,
    kafka: KafkaBroker,
    topic: str,
    *,
    client: str,
    api_key: str,
    keep_alive_seconds: float | None,
) -> WebSocketSourceSpec:
    """examples/binance-user-data.yaml on the local feed, its timings scaled down (a
    keep-alive every ``keep_alive_seconds``; None: none, so the key expires)."""
    spec = example_spec("binance-user-data.yaml")
    [token] = spec["tokens"]
    for request in [token["request"], token["keepAlive"]["request"]]:
        request["url"] = with_base(request["url"], feed.base)
        assert [header["name"] for header in request["headers"]] == ["X-MBX-APIKEY"]
        request["headers"][0]["valueFrom"] = {"value": api_key}
    token["lifetimeSeconds"] = LISTEN_KEY_LIFETIME
    token["refreshMarginSeconds"] = 0
    if keep_alive_seconds is None:
        del token["keepAlive"]
    else:
        token["keepAlive"]["intervalSeconds"] = keep_alive_seconds
    spec["url"] = with_base(spec["url"], feed.ws_base)
    assert spec["url"].endswith("/ws/{listenKey.token}")
    spec["kafka"].update(bootstrapServers=kafka.bootstrap_servers, topic=topic)
    spec.update(
        connection={"client": client},
        reconnect={"initialDelaySeconds": 0.05, "maxDelaySeconds": 0.2},
        drainTimeoutSeconds=20,
    )
    return parse_spec(spec)


def kucoin_spec(
    feed: KucoinBulletFeed,
    kafka: KafkaBroker,
    topic: str,
    *,
    client: str,
    lifetime: float,
    example: str = "kucoin-trades.yaml",
    values: dict[str, str] | None = None,
) -> WebSocketSourceSpec:
    """``example`` (KuCoin's public or private bullet) on the local feed, the token's life
    scaled down; a private one's Secret values given inline."""
    spec = example_spec(example)
    [token] = spec["tokens"]
    request = token["request"]
    request["url"] = with_base(request["url"], feed.base)
    if values is not None:
        assert set(request["values"]) == set(values)
        request["values"] = {name: {"value": value} for name, value in values.items()}
    token.update(lifetimeSeconds=lifetime, refreshMarginSeconds=0)
    assert spec["connection"]["heartbeat"]["intervalSeconds"] == 18  # the fetched one wins
    spec["connection"]["client"] = client
    spec["kafka"].update(bootstrapServers=kafka.bootstrap_servers, topic=topic)
    spec.update(reconnect={"initialDelaySeconds": 0.05, "maxDelaySeconds": 0.2})
    return parse_spec(spec)


def kraken_spec(
    feed: KrakenTokenFeed, kafka: KafkaBroker, topic: str, *, client: str, secret: str
) -> WebSocketSourceSpec:
    """examples/kraken-executions.yaml on the local feed, its Secret's values inline."""
    spec = example_spec("kraken-executions.yaml")
    [token] = spec["tokens"]
    request = token["request"]
    request["url"] = with_base(request["url"], feed.base)
    assert set(request["values"]) == {"apiKey", "secret"}
    request["values"] = {"apiKey": {"value": KRAKEN.api_key}, "secret": {"value": secret}}
    spec["url"] = with_base(spec["url"], feed.ws_base)
    spec["connection"] = {"client": client}
    spec["messages"]["controlTopic"] = f"{topic}-status"
    spec["kafka"].update(bootstrapServers=kafka.bootstrap_servers, topic=topic)
    spec.update(reconnect={"initialDelaySeconds": 0.05, "maxDelaySeconds": 0.2})
    return parse_spec(spec)


def leaks(
    caplog: pytest.LogCaptureFixture, reporter: RecordingReporter, bridge: Bridge, *secret: str
) -> list[str]:
    """Every text the bridge showed (its log records at every level, its statuses, its
    stats, its spec) that holds one of ``secret`` (the feed's own log is its business)."""
    feeds = ("aiohttp.access", "aiohttp.server", "aiohttp.web")
    lines = [r.getMessage() for r in caplog.records if not r.name.startswith(feeds)]
    shown = [*lines, json.dumps(reporter.statuses), repr(bridge.stats), repr(bridge.spec)]
    return [text for text in shown if any(value in text for value in secret)]


def token_requests(bridge: Bridge, request: str, outcome: str, token: str) -> int:
    return bridge.stats.token_requests.get((token, request, outcome), 0)


def assert_every_frame_once(kafka: KafkaBroker, topic: str, frames: list[str]) -> None:
    """Every data frame the feed sent is in ``topic`` once, in order, and nothing else."""
    assert_once_in_order(kafka, topic, [frame.encode() for frame in frames])


async def test_a_listen_key_kept_alive_carries_the_data_across_refreshes_with_nothing_lost(
    kafka: KafkaBroker, client: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(1)
    topic = new_topic(kafka)
    # 3 s of data, a key that lives 1 s, kept alive every 0.3 s: it never expires
    async with BinanceUserDataFeed(
        ACCOUNT.api_key, lifetime=LISTEN_KEY_LIFETIME, frames=60
    ) as feed:
        spec = binance_spec(
            feed, kafka, topic, client=client, api_key=ACCOUNT.api_key, keep_alive_seconds=0.3
        )
        reporter = RecordingReporter()
        bridge = Bridge(spec, name="binance-user-data", reporter=reporter)

        def streamed() -> bool:
            return len(feed.data_frames) == feed.frames and bridge.stats.delivered == feed.frames

        summary = await run_until(bridge, streamed, "every order delivered", timeout=40)
    assert (summary.exit_code, summary.reconnects) == (ExitCode.OK, 0)
    [conn] = feed.connections
    assert not conn.expired_sent
    assert feed.keep_alives >= 2
    assert feed.expired_keep_alives == 0
    assert token_requests(bridge, "fetch", "ok", "listenKey") == 1
    # the stop may cut the last keep-alive's answer short: the feed counted it, not the bridge
    kept_alive = token_requests(bridge, "keepAlive", "ok", "listenKey")
    assert feed.keep_alives - 1 <= kept_alive <= feed.keep_alives
    assert kept_alive >= 2
    assert bridge.stats.authentication == LoginState.AUTHENTICATED
    statuses = [s["authentication"] for s in reporter.statuses if s["authentication"]]
    assert statuses[-1]["nextRefreshTime"] is not None
    assert len({s["nextRefreshTime"] for s in statuses}) >= 3  # moved on by each keep-alive
    assert_every_frame_once(kafka, topic, feed.data_frames)
    assert leaks(caplog, reporter, bridge, ACCOUNT.api_key, *feed.tokens) == []


async def test_an_expired_listen_key_is_fetched_anew_and_the_stream_goes_on(
    kafka: KafkaBroker, client: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(1)
    topic = new_topic(kafka)
    # no keep-alive: the key expires after 1 s, the stream says so, the bridge fetches anew
    async with BinanceUserDataFeed(
        ACCOUNT.api_key, lifetime=LISTEN_KEY_LIFETIME, frames=50
    ) as feed:
        spec = binance_spec(
            feed, kafka, topic, client=client, api_key=ACCOUNT.api_key, keep_alive_seconds=None
        )
        reporter = RecordingReporter()
        bridge = Bridge(spec, name="binance-user-data", reporter=reporter)

        def streamed() -> bool:
            return len(feed.data_frames) == feed.frames and bridge.stats.delivered == feed.frames

        summary = await run_until(bridge, streamed, "every order delivered", timeout=40)
    assert summary.exit_code == ExitCode.OK
    assert len(feed.connections) >= 2
    assert all(conn.expired_sent for conn in feed.connections[:-1])
    assert len({conn.token for conn in feed.connections}) == len(feed.connections)  # new keys
    assert summary.reconnects == len(feed.connections) - 1
    assert bridge.stats.token_expiries == {"listenKey": len(feed.connections) - 1}
    assert token_requests(bridge, "fetch", "ok", "listenKey") == len(feed.connections)
    assert feed.refused_handshakes == 0  # never connected with the expired key
    states = [s["authentication"]["state"] for s in reporter.statuses if s["authentication"]]
    assert "TokenExpired" in states
    assert states[-1] == "Authenticated"
    assert bridge.stats.errors.get("TokenExpired") == len(feed.connections) - 1
    assert_every_frame_once(kafka, topic, feed.data_frames)
    assert leaks(caplog, reporter, bridge, ACCOUNT.api_key, *feed.tokens) == []


async def test_a_failing_token_endpoint_shows_token_fetch_failed_and_no_secret(
    kafka: KafkaBroker, client: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(1)
    topic = new_topic(kafka)
    async with BinanceUserDataFeed(ACCOUNT.api_key, lifetime=60, frames=10) as feed:
        spec = binance_spec(
            feed, kafka, topic, client=client, api_key=WRONG_SECRET, keep_alive_seconds=30
        )
        spec = spec.model_copy(
            update={"reconnect": spec.reconnect.model_copy(update={"max_attempts": 2})}
        )
        reporter = RecordingReporter()
        bridge = Bridge(spec, name="binance-user-data", reporter=reporter)
        summary = await run_to_end(bridge, timeout=30)
    assert summary.exit_code == ExitCode.GAVE_UP
    assert (feed.fetches, feed.connections) == (2, [])
    assert token_requests(bridge, "fetch", "failed", "listenKey") == 2
    message = "token listenKey: HTTP 401: Invalid API-key, IP, or permissions for action."
    failed = {"state": "TokenFetchFailed", "message": message}
    assert {**failed, "lastFailure": failed, "nextRefreshTime": None} in [
        s["authentication"] for s in reporter.statuses
    ]
    assert any(s["state"] == ConnectionState.AUTH_FAILED for s in reporter.statuses)
    assert bridge.stats.errors == {"TokenFetchFailed": 2}
    assert leaks(caplog, reporter, bridge, WRONG_SECRET, ACCOUNT.api_key) == []
    assert record_count(kafka, topic) == 0


async def test_a_failing_token_endpoint_is_retried_until_it_answers(
    kafka: KafkaBroker, client: str
) -> None:
    topic = new_topic(kafka)
    async with KucoinBulletFeed(
        lifetime=60,
        ping_interval_ms=300,
        ping_timeout_ms=1000,
        frames_per_connection=10,
        disconnects=0,
        frames=10,
    ) as feed:
        feed.failing_fetches = 2
        spec = kucoin_spec(feed, kafka, topic, client=client, lifetime=60)
        reporter = RecordingReporter()
        bridge = Bridge(spec, name="kucoin-trades", reporter=reporter)

        def delivered() -> bool:
            return bridge.stats.delivered == feed.frames

        await run_until(bridge, delivered, "every trade delivered", timeout=30)
    states = [s["authentication"]["state"] for s in reporter.statuses if s["authentication"]]
    assert states[0] == "TokenFetchFailed"
    assert states[-1] == "Authenticated"
    assert token_requests(bridge, "fetch", "failed", "bullet") == 2
    assert token_requests(bridge, "fetch", "ok", "bullet") == 1
    assert bridge.stats.errors == {"TokenFetchFailed": 2}


KUCOIN_VALUES = {
    "apiKey": ACCOUNT.api_key,
    "secret": ACCOUNT.secret,
    "passphrase": ACCOUNT.passphrase,
}


@pytest.mark.parametrize("private", [False, True], ids=["bullet-public", "bullet-private"])
async def test_a_bullet_token_names_the_endpoint_and_ping_interval_and_is_fetched_anew(
    kafka: KafkaBroker, client: str, caplog: pytest.LogCaptureFixture, private: bool
) -> None:
    caplog.set_level(1)
    topic = new_topic(kafka)
    # tokens that live 0.8 s (the bridge is told 0.5 s), connections of 20 frames (~1 s):
    # each reconnect fetches a new token, or the feed refuses it; pings every 0.2 s (from
    # the answer, not the example's 18 s), or the feed closes the connection. The private
    # bullet is signed anew for each fetch, or the feed refuses the stale timestamp.
    timings: dict[str, Any] = {
        "lifetime": 0.8,
        "ping_interval_ms": 200,
        "ping_timeout_ms": 400,
        "frames_per_connection": 20,
        "disconnects": 2,
        "frames": 60,
    }
    if private:
        feed: KucoinBulletFeed = KucoinPrivateBulletFeed(ACCOUNT, window=0.5, **timings)
        example, values = "kucoin-orders.yaml", KUCOIN_VALUES
    else:
        feed, example, values = KucoinBulletFeed(**timings), "kucoin-trades.yaml", None
    async with feed:
        spec = kucoin_spec(
            feed, kafka, topic, client=client, lifetime=0.5, example=example, values=values
        )
        reporter = RecordingReporter()
        bridge = Bridge(spec, name=example.removesuffix(".yaml"), reporter=reporter)

        def streamed() -> bool:
            return len(feed.data_frames) == feed.frames and bridge.stats.delivered == feed.frames

        summary = await run_until(bridge, streamed, "every trade delivered", timeout=40)
    assert (summary.exit_code, summary.reconnects) == (ExitCode.OK, 2)
    assert [conn.missed for conn in feed.connections] == [None, None, None]
    assert [conn.data_sent for conn in feed.connections] == [20, 20, 20]
    assert [conn.token for conn in feed.connections] == feed.tokens  # one per connection
    assert feed.refused_handshakes == 0
    assert token_requests(bridge, "fetch", "ok", "bullet") == 3
    for conn in feed.connections:
        pings = [m for m in conn.messages if json.loads(m).get("type") == "ping"]
        assert len(pings) >= 3
    assert_every_frame_once(kafka, topic, feed.data_frames)
    assert leaks(caplog, reporter, bridge, *feed.tokens, *SECRETS) == []
    if isinstance(feed, KucoinPrivateBulletFeed):
        assert len(set(feed.timestamps)) == len(feed.timestamps) == 3


async def test_a_kraken_token_is_signed_with_a_new_nonce_for_each_fetch_and_nothing_is_lost(
    kafka: KafkaBroker, client: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(1)
    topic = new_topic(kafka)
    # tokens a subscription must use within 0.8 s (the answer says 0.5 s), connections of 20
    # executions (~1 s): each reconnect fetches a new token, signed with a larger nonce
    async with KrakenTokenFeed(
        KRAKEN, lifetime=0.8, expires=0.5, frames_per_connection=20, disconnects=2, frames=60
    ) as feed:
        spec = kraken_spec(feed, kafka, topic, client=client, secret=KRAKEN.secret)
        reporter = RecordingReporter()
        bridge = Bridge(spec, name="kraken-executions", reporter=reporter)

        def streamed() -> bool:
            return len(feed.data_frames) == feed.frames and bridge.stats.delivered >= feed.frames

        summary = await run_until(bridge, streamed, "every execution delivered", timeout=40)
    assert (summary.exit_code, summary.reconnects) == (ExitCode.OK, 2)
    assert [conn.data_sent for conn in feed.connections] == [20, 20, 20]
    assert [conn.token for conn in feed.connections] == feed.tokens  # one per connection
    assert feed.refused_subscriptions == 0
    assert len(set(feed.nonces)) == 3
    assert feed.nonces == sorted(feed.nonces)
    assert token_requests(bridge, "fetch", "ok", "ws") == 3
    assert bridge.stats.authentication == LoginState.AUTHENTICATED
    assert_once_in_order(kafka, topic, expected_records(feed.data_frames))
    assert leaks(caplog, reporter, bridge, KRAKEN.api_key, KRAKEN.secret, *feed.tokens) == []


@pytest.mark.parametrize("exchange", ["kucoin", "kraken"])
async def test_a_wrong_secret_in_a_signed_token_request_is_token_fetch_failed_in_its_words(
    kafka: KafkaBroker, client: str, caplog: pytest.LogCaptureFixture, exchange: str
) -> None:
    caplog.set_level(1)
    topic = new_topic(kafka)
    feed: TokenFeed
    if exchange == "kucoin":
        feed = KucoinPrivateBulletFeed(
            ACCOUNT,
            lifetime=60,
            ping_interval_ms=300,
            ping_timeout_ms=1000,
            frames_per_connection=10,
            disconnects=0,
            frames=10,
        )
        values = {**KUCOIN_VALUES, "secret": WRONG_SECRET}
        words, wrong = "HTTP 401: Invalid KC-API-SIGN", WRONG_SECRET
    else:
        feed = KrakenTokenFeed(
            KRAKEN, lifetime=60, expires=50, frames_per_connection=10, disconnects=0, frames=10
        )
        words = "HTTP 200: the answer has no token at /result/token: EAPI:Invalid signature"
        wrong = KRAKEN_WRONG
    async with feed:
        if isinstance(feed, KucoinPrivateBulletFeed):
            spec = kucoin_spec(
                feed,
                kafka,
                topic,
                client=client,
                lifetime=60,
                example="kucoin-orders.yaml",
                values=values,
            )
        else:
            assert isinstance(feed, KrakenTokenFeed)
            spec = kraken_spec(feed, kafka, topic, client=client, secret=wrong)
        spec = spec.model_copy(
            update={"reconnect": spec.reconnect.model_copy(update={"max_attempts": 2})}
        )
        reporter = RecordingReporter()
        bridge = Bridge(spec, name=f"{exchange}-private", reporter=reporter)
        summary = await run_to_end(bridge, timeout=60)
    assert summary.exit_code == ExitCode.GAVE_UP
    assert (feed.fetches, feed.connections, feed.tokens) == (2, [], [])
    [token] = spec.tokens
    assert token_requests(bridge, "fetch", "failed", token.name) == 2
    failed = {"state": "TokenFetchFailed", "message": f"token {token.name}: {words}"}
    assert {**failed, "lastFailure": failed, "nextRefreshTime": None} in [
        s["authentication"] for s in reporter.statuses
    ]
    assert bridge.stats.errors == {"TokenFetchFailed": 2}
    secrets = (*SECRETS, KRAKEN.api_key, KRAKEN.secret, wrong)
    assert leaks(caplog, reporter, bridge, *secrets) == []
    assert record_count(kafka, topic) == 0

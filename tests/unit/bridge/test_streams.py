"""Streams spread over connections, the shared connect gate, and a bridge of several
connections on scripted ones: one pipeline, each connection on its own."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from ws2kafka.bridge.config import ConnectRateSpec, WebSocketSourceSpec
from ws2kafka.bridge.connect_gate import ConnectGate
from ws2kafka.bridge.errors import ConfigError
from ws2kafka.bridge.service import Bridge, ExitCode
from ws2kafka.bridge.stats import ConnectionState
from ws2kafka.bridge.streams import shares, subscribe_messages
from ws2kafka.devstack.harness import (
    RecordingSink,
    ScriptedConnection,
    bridge_spec,
    run_to_end,
    run_until,
)
from ws2kafka.devstack.waiting import until

TEMPLATE = '{"method":"SUBSCRIBE","params":{streams},"id":{n}}'


def spec(names: list[str], **streams: Any) -> WebSocketSourceSpec:
    fields = {"names": names, "maxPerConnection": 3, "subscribeTemplate": TEMPLATE, **streams}
    return bridge_spec(
        "127.0.0.1:1",
        "ws://127.0.0.1:1/ws",
        "t",
        drainTimeoutSeconds=5,
        subscribe=['{"op":"auth"}'],
        streams=fields,
    )


def test_streams_are_shared_out_in_order_under_the_cap() -> None:
    names = [f"s{i}" for i in range(7)]
    parts = shares(spec(names, maxPerMessage=2))
    assert [share.streams for share in parts] == [
        ("s0", "s1", "s2"),
        ("s3", "s4", "s5"),
        ("s6",),
    ]
    assert parts[0].spec.subscribe == [
        '{"op":"auth"}',
        '{"method":"SUBSCRIBE","params":["s0", "s1"],"id":1}',
        '{"method":"SUBSCRIBE","params":["s2"],"id":2}',
    ]
    assert [json.loads(m)["params"] for m in parts[2].spec.subscribe[1:]] == [["s6"]]


def test_streams_can_go_into_the_url_instead() -> None:
    parts = shares(
        spec(
            ["a@trade", "b@trade", "c@trade", "d@trade"],
            subscribeTemplate=None,
            urlTemplate="ws://127.0.0.1:1/stream?streams={streams}",
        )
    )
    assert [share.spec.url for share in parts] == [
        "ws://127.0.0.1:1/stream?streams=a@trade/b@trade/c@trade",
        "ws://127.0.0.1:1/stream?streams=d@trade",
    ]
    assert parts[0].spec.subscribe == ['{"op":"auth"}']


def test_a_source_without_streams_is_one_connection_as_written() -> None:
    plain = bridge_spec("k:9", "ws://f/x", "t", subscribe=["hello"])
    (only,) = shares(plain)
    assert only.spec is plain


@pytest.mark.parametrize(
    ("streams", "message"),
    [
        ({"maxConnections": 2}, "7 streams do not fit maxConnections 2 x maxPerConnection 3"),
        ({"urlTemplate": "ws://x/{streams}"}, "exactly one of subscribeTemplate or urlTemplate"),
        ({"subscribeTemplate": '{"params":[]}'}, "must contain {streams}"),
    ],
)
def test_streams_that_cannot_be_placed_are_refused(streams: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        spec([f"s{i}" for i in range(7)], **streams)


def test_subscribe_messages_number_their_groups() -> None:
    messages = subscribe_messages('{"ids":{streams},"n":{n}}', ("a", "b", "c"), 0)
    assert messages == ['{"ids":["a", "b", "c"],"n":1}']


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_gate_admits_so_many_attempts_per_window_and_honours_retry_after() -> None:
    clock = Clock()
    gate = ConnectGate(ConnectRateSpec(connects=2, per_seconds=10), clock)
    assert gate.delay() == 0
    gate.record()
    clock.now += 1
    gate.record()
    assert gate.delay() == 9.0  # the first attempt leaves the window at 1010
    clock.now = 1010.0
    assert gate.delay() == 0
    gate.hold(30)  # a 429 with Retry-After: 30
    assert gate.delay() == 30
    assert ConnectGate(None, clock).delay() == 0


def opener(
    connections: dict[str, list[ScriptedConnection]],
) -> Callable[..., Awaitable[ScriptedConnection]]:
    """Hands out the next scripted connection for each URL (a share's URL names it)."""

    async def open_for(spec: WebSocketSourceSpec, _: object) -> ScriptedConnection:
        queue = connections[spec.url]
        return queue.pop(0) if len(queue) > 1 else queue[0]

    return open_for


def url_spec(names: list[str], **fields: Any) -> WebSocketSourceSpec:
    return bridge_spec(
        "127.0.0.1:1",
        "ws://127.0.0.1:1/ws",
        "t",
        drainTimeoutSeconds=5,
        streams={
            "names": names,
            "maxPerConnection": 1,
            "urlTemplate": "ws://feed/{streams}",
        },
        **fields,
    )


async def test_several_connections_feed_one_pipeline_and_each_recovers_on_its_own() -> None:
    first_a = ScriptedConnection(["a1", "a2"])
    second_a = ScriptedConnection(["a3"])
    feeds = {
        "ws://feed/a": [first_a, second_a],
        "ws://feed/b": [ScriptedConnection(["b1", "b2", "b3"])],
    }
    sink = RecordingSink()
    bridge = Bridge(
        url_spec(["a", "b"], sequence=None),
        name="multi",
        opener=opener(feeds),
        sink_factory=sink.attach,
    )
    assert len(bridge.links) == 2

    async def drop_a_once() -> None:
        await until(lambda: bridge.stats.delivered >= 5, 10, "five frames")
        first_a.abort()

    dropping = asyncio.create_task(drop_a_once())
    summary = await run_until(bridge, lambda: bridge.stats.delivered == 6, "six frames")
    await dropping
    values = sorted(record.value for batch in sink.batches for record in batch)
    assert values == [b"a1", b"a2", b"a3", b"b1", b"b2", b"b3"]
    assert summary.reconnects == 1  # only connection a reconnected
    assert bridge.stats.gaps == 1
    gap = bridge.stats.last_gap
    assert gap is not None
    assert (gap.connection, gap.streams) == (0, ("a",))  # a's gap, and b's streams not in it
    assert summary.balanced


async def test_one_connection_down_makes_the_bridge_not_connected() -> None:
    feeds = {"ws://feed/a": [ScriptedConnection(["a1"])], "ws://feed/b": []}

    async def refuse_b(spec: WebSocketSourceSpec, kwargs: object) -> ScriptedConnection:
        if spec.url.endswith("/b"):
            raise ConnectionRefusedError("b refused")
        return await opener(feeds)(spec, kwargs)

    bridge = Bridge(
        url_spec(["a", "b"], reconnect={"maxAttempts": 3, "initialDelaySeconds": 0.01}),
        name="multi",
        opener=refuse_b,
        sink_factory=RecordingSink().attach,
    )
    states: list[ConnectionState] = []

    async def watch() -> None:
        while True:
            states.append(bridge.stats.state)
            await asyncio.sleep(0.005)

    watching = asyncio.create_task(watch())
    summary = await run_to_end(bridge)
    watching.cancel()
    assert summary.exit_code == ExitCode.GAVE_UP  # b gave up: the whole bridge ends
    assert ConnectionState.CONNECTED not in states  # never all connected
    assert bridge.stats.delivered == 1  # a's frame still delivered in the drain

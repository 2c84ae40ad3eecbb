"""The whole bridge with message rules and a subscription to confirm, on scripted
connections and a recording sink: replies go out on the connection, control frames never
reach the data topic, a refused subscription is shown and followed by its policy."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

from ws2kafka.bridge.config import WebSocketSourceSpec
from ws2kafka.bridge.metrics import BridgeCollector
from ws2kafka.bridge.reporting import StatusSnapshot
from ws2kafka.bridge.service import Bridge, ExitCode
from ws2kafka.bridge.subscription import SubscriptionState
from ws2kafka.devstack.harness import (
    RecordingSink,
    ScriptedConnection,
    bridge_spec,
    run_to_end,
    run_until,
)

SUBSCRIBE = '{"method":"SUBSCRIBE","params":["btcusdt@trade"],"id":1}'
ACK = '{"result":null,"id":1}'
REFUSAL = '{"error":{"code":2,"msg":"Invalid request: unknown stream"},"id":1}'


def spec(**fields: Any) -> WebSocketSourceSpec:
    defaults: dict[str, Any] = {
        "subscription": {
            "success": [{"pointer": "/result", "isNull": True}, {"pointer": "/id"}],
            "failure": [{"pointer": "/error"}],
            "messagePointer": "/error/msg",
            "timeoutSeconds": 0.3,
        }
    }
    return bridge_spec(
        "127.0.0.1:1",
        "ws://127.0.0.1:1/x",
        "t",
        drainTimeoutSeconds=5,
        subscribe=[SUBSCRIBE],
        messages={
            "controlTopic": "control",
            "rules": [
                {
                    "name": "ping",
                    "match": [{"pointer": "/ping"}],
                    "kind": "ping",
                    "reply": '{"pong":{/ping}}',
                },
                {"name": "status", "match": [{"pointer": "/event"}], "route": "control"},
            ],
        },
        **(defaults | fields),
    )


def opener(connections: list[ScriptedConnection]) -> Callable[..., Awaitable[ScriptedConnection]]:
    """Hands out the connections in turn (a reconnect gets the next one)."""

    async def open_next(*_: object) -> ScriptedConnection:
        return connections.pop(0) if len(connections) > 1 else connections[0]

    return open_next


def bridge_on(connections: list[ScriptedConnection], **fields: Any) -> tuple[Bridge, RecordingSink]:
    sink = RecordingSink()
    bridge = Bridge(
        spec(**fields), name="rules", opener=opener(connections), sink_factory=sink.attach
    )
    return bridge, sink


def produced(sink: RecordingSink) -> list[bytes]:
    return [record.value for batch in sink.batches for record in batch]


async def test_pings_are_answered_and_control_frames_stay_out_of_the_data_topic() -> None:
    feed = ScriptedConnection(
        [
            ACK,
            '{"ping":1700000000000}',
            '{"e":"trade","t":1}',
            '{"event":"maintenance","in":300}',
            '{"ping":1700000000001}',
            '{"e":"trade","t":2}',
        ]
    )
    bridge, sink = bridge_on([feed])
    summary = await run_until(bridge, lambda: bridge.stats.delivered == 2, "two trades")
    assert feed.sent == [SUBSCRIBE, '{"pong":1700000000000}', '{"pong":1700000000001}']
    assert produced(sink) == [b'{"e":"trade","t":1}', b'{"e":"trade","t":2}']
    assert [(topic, record.value) for topic, record in sink.controls] == [
        ("control", b'{"event":"maintenance","in":300}')
    ]
    stats = bridge.stats
    assert (stats.replies_sent, stats.control_frames, stats.control_records) == (2, 4, 1)
    assert stats.subscription == SubscriptionState.SUBSCRIBED
    assert summary.balanced, summary
    assert summary.control == 4
    registry = CollectorRegistry()
    registry.register(BridgeCollector(lambda: [("ns/rules", stats)]))
    metrics = generate_latest(registry).decode()
    for line in (
        'ws2kafka_messages_matched_total{kind="ping",rule="ping",source="ns/rules"} 2.0',
        'ws2kafka_messages_matched_total{kind="acknowledgement",rule="subscription",'
        'source="ns/rules"} 1.0',
        'ws2kafka_control_records_total{outcome="delivered",source="ns/rules"} 1.0',
        'ws2kafka_replies_sent_total{source="ns/rules"} 2.0',
        'ws2kafka_subscription_state{source="ns/rules",state="Subscribed"} 1.0',
    ):
        assert line in metrics, line


async def test_a_refused_subscription_is_shown_and_the_bridge_reconnects() -> None:
    refusing = ScriptedConnection([REFUSAL, '{"e":"trade","t":0}'])
    accepting = ScriptedConnection([ACK, '{"e":"trade","t":1}'])
    bridge, sink = bridge_on([refusing, accepting])
    summary = await run_until(
        bridge, lambda: bridge.stats.delivered == 1, "the trade after a new subscription"
    )
    assert bridge.stats.subscription == SubscriptionState.SUBSCRIBED
    assert bridge.stats.last_subscription_failure is None  # cleared by the success
    assert bridge.stats.subscription_failures == 1
    assert produced(sink) == [b'{"e":"trade","t":1}']  # the refused connection's rest is gone
    assert summary.reconnects == 1
    assert bridge.stats.errors == {"SubscriptionRejected": 1}
    assert bridge.stats.last_error == ("SubscriptionRejected: Invalid request: unknown stream")


async def test_a_refusal_stays_in_status_while_the_next_connection_waits_for_its_answer() -> None:
    """The next connection is Pending within the backoff: the refusal must not vanish from
    status (and from the Subscribed condition) until a subscription succeeds."""
    refusing = ScriptedConnection([REFUSAL])
    silent = ScriptedConnection([])
    bridge, _ = bridge_on([refusing, silent])

    def pending_after_the_refusal() -> bool:
        status = StatusSnapshot.of(bridge.stats, None, 0.0).to_status()["subscription"]
        return (
            isinstance(status, dict)
            and status["state"] == "Pending"
            and bool(status["lastFailure"])
        )

    await run_until(bridge, pending_after_the_refusal, "Pending with the last refusal")
    assert bridge.stats.last_subscription_failure == (
        "SubscriptionRejected",
        "Invalid request: unknown stream",
    )


async def test_a_refused_subscription_gives_up_when_the_policy_says_so() -> None:
    bridge, _ = bridge_on(
        [ScriptedConnection([REFUSAL])],
        subscription={
            "success": [{"pointer": "/result"}],
            "failure": [{"pointer": "/error"}],
            "messagePointer": "/error/msg",
            "onFailure": "giveUp",
        },
    )
    summary = await run_to_end(bridge)
    assert summary.exit_code == ExitCode.GAVE_UP
    assert bridge.stats.subscription == SubscriptionState.REJECTED
    assert bridge.stats.subscription_message == "Invalid request: unknown stream"


async def test_no_answer_in_time_is_a_subscription_timeout() -> None:
    silent = ScriptedConnection(['{"e":"trade","t":0}'])
    accepting = ScriptedConnection([ACK, '{"e":"trade","t":1}'])
    bridge, _ = bridge_on([silent, accepting])
    await run_until(bridge, lambda: bool(bridge.stats.errors), "the timeout's reconnect")
    assert bridge.stats.errors == {"SubscriptionTimeout": 1}
    assert bridge.stats.subscription_failures == 1

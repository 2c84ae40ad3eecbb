"""Message rules, subscription answers, topic routing and splitting, without sockets."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from ws2kafka.bridge.config import (
    FrameCondition,
    MessageKind,
    MessageRoute,
    MessageRule,
    MessagesSpec,
    SubscriptionSpec,
    TopicRoutingSpec,
    WebSocketSourceSpec,
)
from ws2kafka.bridge.errors import ConfigError
from ws2kafka.bridge.framing import HEADER_INDEX, HEADER_KIND, HEADER_RULE, RecordBuilder
from ws2kafka.bridge.intake import SUBSCRIPTION_RULE, Intake
from ws2kafka.bridge.messages import Conditions, MessageRules, Template, json_equal
from ws2kafka.bridge.routing import TopicRouter
from ws2kafka.bridge.sequence import FrameChecks
from ws2kafka.bridge.stats import BridgeStats, Fallback
from ws2kafka.bridge.subscription import SubscriptionState, SubscriptionWatch
from ws2kafka.devstack.harness import bridge_spec


def condition(**fields: Any) -> FrameCondition:
    return FrameCondition.model_validate(fields)


def doc(payload: bytes) -> Any:
    return json.loads(payload)


@pytest.mark.parametrize(
    ("fields", "payload", "holds"),
    [
        ({"text": "pong"}, b"pong", True),
        ({"text": "pong"}, b"pong ", False),
        ({"pointer": "/ping"}, b'{"ping":1}', True),
        ({"pointer": "/ping"}, b'{"pong":1}', False),
        ({"pointer": "/result", "isNull": True}, b'{"result":null,"id":1}', True),
        ({"pointer": "/result", "isNull": True}, b'{"id":1}', False),  # absent is not null
        ({"pointer": "/id", "equals": 1}, b'{"id":true}', False),  # true is not 1 in JSON
        ({"pointer": "/id", "equals": 1}, b'{"id":1.0}', True),
        ({"pointer": "/1", "equals": "hb"}, b'[17,"hb"]', True),
        ({"pointer": "/type", "oneOf": ["error", "reject"]}, b'{"type":"reject"}', True),
        ({"pointer": "/a/b", "equals": {"c": [1]}}, b'{"a":{"b":{"c":[1]}}}', True),
    ],
)
def test_a_condition_tests_the_frame_as_json_or_as_text(
    fields: dict[str, Any], payload: bytes, holds: bool
) -> None:
    document = json.loads(payload) if payload.startswith((b"{", b"[")) else None
    assert Conditions([condition(**fields)]).hold(payload, document) is holds


def test_json_equality_is_not_pythons() -> None:
    assert not json_equal(True, 1)
    assert not json_equal(0, False)
    assert json_equal(1, 1.0)
    assert not json_equal([1, True], [1, 1])
    assert not json_equal({"a": 1}, {"a": 1, "b": 2})


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({}, "give exactly one of text or pointer"),
        ({"text": "a", "pointer": "/a"}, "give exactly one of text or pointer"),
        ({"text": "a", "equals": 1}, "equals, oneOf and isNull test a pointer's value"),
        ({"pointer": "/a", "equals": 1, "oneOf": [1]}, "give one of equals, oneOf or isNull"),
        ({"pointer": "/a", "equals": None}, "equals cannot be null"),
        ({"pointer": "/a", "oneOf": [1, None]}, "oneOf cannot hold null"),
        ({"text": "a", "isNull": True}, "test a pointer's value"),
    ],
)
def test_a_condition_that_tests_nothing_or_two_things_is_refused(
    fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        condition(**fields)


def test_a_reply_copies_values_out_of_the_frame() -> None:
    template = Template('{"pong": {/ping}, "for": {/who}, "none": {/missing}}')
    document = {"ping": 1_700_000_000_000, "who": 'a"b'}
    assert json.loads(template.render(document)) == {
        "pong": 1_700_000_000_000,
        "for": 'a"b',
        "none": None,
    }
    assert not Template('{"op":"pong"}').needs_json


def rule(name: str, **fields: Any) -> MessageRule:
    return MessageRule.model_validate({"name": name, **fields})


def test_the_first_matching_rule_decides() -> None:
    rules = MessageRules(
        [
            rule("ping", match=[{"pointer": "/ping"}], kind="ping", reply='{"pong":{/ping}}'),
            rule("hb", match=[{"pointer": "/event", "equals": "heartbeat"}], kind="heartbeat"),
            rule("any-event", match=[{"pointer": "/event"}], route="control"),
        ]
    )
    ping = rules.match(b"", {"ping": 42})
    assert ping is not None
    assert (ping.name, ping.kind, ping.route, ping.reply) == (
        "ping",
        MessageKind.PING,
        MessageRoute.DROP,
        '{"pong":42}',
    )
    heartbeat = rules.match(b"", {"event": "heartbeat"})
    assert heartbeat is not None
    assert heartbeat.name == "hb"
    other = rules.match(b"", {"event": "systemStatus"})
    assert other is not None
    assert (other.name, other.route) == ("any-event", MessageRoute.CONTROL)
    assert rules.match(b"", {"price": 1}) is None
    assert rules.match(b"", None) is None  # not JSON: no pointer rule matches


def test_rule_names_are_unique_and_a_control_route_needs_a_topic() -> None:
    ack = {"name": "ack", "match": [{"pointer": "/result"}]}
    with pytest.raises(ValidationError, match="rule names must be unique"):
        MessagesSpec.model_validate({"rules": [ack, ack]})
    with pytest.raises(ValidationError, match="set controlTopic"):
        MessagesSpec.model_validate({"rules": [{**ack, "route": "control"}]})
    assert rule("data", match=[{"text": "x"}], kind="data").destination is MessageRoute.DATA


def test_a_subscription_needs_subscribe_messages() -> None:
    with pytest.raises(ConfigError, match="spec: subscription describes the answer"):
        bridge_spec("k:9", "ws://f/x", "t", subscription={"success": [{"pointer": "/result"}]})


def watch(**fields: Any) -> SubscriptionWatch:
    spec = SubscriptionSpec.model_validate(
        {
            "success": [{"pointer": "/result", "isNull": True}, {"pointer": "/id"}],
            "failure": [{"pointer": "/error"}],
            "messagePointer": "/error/msg",
            "timeoutSeconds": 5,
            **fields,
        }
    )
    return SubscriptionWatch(spec)


def test_a_subscription_is_acknowledged_or_rejected_in_the_servers_words() -> None:
    accepted = watch()
    accepted.sent(100.0)
    assert accepted.observe(b"", {"e": "trade"}) is None
    answer = accepted.observe(b"", {"result": None, "id": 1})
    assert answer is not None
    assert (answer.state, answer.kind) == (
        SubscriptionState.SUBSCRIBED,
        MessageKind.ACKNOWLEDGEMENT,
    )
    assert accepted.state is SubscriptionState.SUBSCRIBED
    assert not accepted.expired(200.0)

    refused = watch()
    refused.sent(100.0)
    frame = b'{"error":{"code":2,"msg":"Invalid request: unknown stream"},"id":1}'
    answer = refused.observe(frame, doc(frame))
    assert answer is not None
    assert answer.state is SubscriptionState.REJECTED
    assert refused.message == "Invalid request: unknown stream"


def test_without_a_message_pointer_the_whole_frame_is_the_message_and_it_is_bounded() -> None:
    refused = watch(messagePointer=None)
    frame = json.dumps({"error": "x" * 1000}).encode()
    refused.observe(frame, doc(frame))
    assert refused.message.startswith('{"error": "xxx')
    assert len(refused.message) == 256


def test_no_answer_in_time_is_a_timeout() -> None:
    silent = watch()
    assert not silent.expired(1e9)  # not sent yet: nothing is awaited
    silent.sent(100.0)
    assert silent.seconds_left(101.0) == 4.0
    assert not silent.expired(104.9)
    assert silent.expired(105.0)
    assert silent.state is SubscriptionState.TIMEOUT
    assert "no acknowledgement within 5 s" in silent.message
    assert silent.seconds_left(106.0) is None


def router(**fields: Any) -> tuple[TopicRouter, BridgeStats]:
    stats = BridgeStats()
    spec = TopicRoutingSpec.model_validate({"template": "trades.{/s}", **fields})
    return TopicRouter(spec, stats), stats


def test_routing_names_topics_by_the_frame_within_bounds() -> None:
    route, stats = router(allowed=r"^trades\.[A-Z]+$", maxTopics=2)
    assert route.route({"s": "BTC"}) == "trades.BTC"
    assert route.route({"s": "ETH"}) == "trades.ETH"
    assert route.route({"s": "BTC"}) == "trades.BTC"
    assert route.route({"s": "SOL"}) is None  # a third topic
    assert route.route({"s": "btc"}) is None  # not allowed
    assert route.route({"s": "a/b"}) is None  # not a topic name
    assert route.route({"s": True}) is None  # not a name
    assert route.route({"x": 1}) is None
    assert stats.routed_topics == {"trades.BTC", "trades.ETH"}
    assert stats.routing_fallbacks == {
        Fallback.TOO_MANY_TOPICS: 1,
        Fallback.NOT_ALLOWED: 2,
        Fallback.FIELD_MISSING: 2,
    }


def test_a_routing_template_must_name_a_field_and_allowed_must_compile() -> None:
    with pytest.raises(ValidationError, match="template names no field"):
        TopicRoutingSpec.model_validate({"template": "trades"})
    with pytest.raises(ValidationError, match="not a regular expression"):
        TopicRoutingSpec.model_validate({"template": "t.{/s}", "allowed": "("})


def intake_for(spec: WebSocketSourceSpec, with_watch: bool = False) -> tuple[Intake, BridgeStats]:
    stats = BridgeStats()
    builder = RecordBuilder(
        spec.kafka, source="s", connection_id="c", inflate=spec.connection.inflate
    )
    checks = None
    if spec.sequence is not None or spec.rotation.dedupe is not None:
        checks = FrameChecks(spec.sequence, spec.rotation.dedupe, stats, lambda gap: None)
    routing = spec.kafka.routing
    intake = Intake(
        spec,
        builder,
        stats,
        rules=MessageRules(spec.messages.rules),
        router=TopicRouter(routing, stats) if routing is not None else None,
        checks=checks,
        watch=SubscriptionWatch(spec.subscription) if with_watch and spec.subscription else None,
    )
    return intake, stats


OKX = bridge_spec(
    "k:9",
    "ws://f/x",
    "okx",
    subscribe=['{"op":"subscribe","args":[{"channel":"trades","instId":"BTC-USDT"}]}'],
    subscription={
        "success": [{"pointer": "/event", "equals": "subscribe"}],
        "failure": [{"pointer": "/event", "equals": "error"}],
        "messagePointer": "/msg",
    },
    messages={
        "controlTopic": "okx-control",
        "rules": [
            {"name": "pong", "match": [{"text": "pong"}], "kind": "pong"},
            {"name": "notice", "match": [{"pointer": "/event"}], "route": "control"},
        ],
    },
    kafka={
        "key": {"source": "jsonPointer", "pointer": "/instId"},
        "timestamp": {"source": "jsonPointer", "pointer": "/ts"},
        "split": {"pointer": "/data"},
        "routing": {"template": "okx.{/instId}"},
    },
    sequence={"pointer": "/seqId"},
)


def test_an_okx_frame_splits_into_one_record_per_trade_each_routed_and_keyed() -> None:
    intake, stats = intake_for(OKX)
    frame = json.dumps(
        {
            "arg": {"channel": "trades", "instId": "BTC-USDT"},
            "seqId": 7,
            "data": [
                {"instId": "BTC-USDT", "px": "1", "ts": "1700000000001"},
                {"instId": "ETH-USDT", "px": "2", "ts": 1700000000002},
            ],
        }
    ).encode()
    taken = intake.take(frame, False, 1_800_000_000_000_000, 3)
    assert taken.control is None
    first, second = taken.records
    assert json.loads(first.value) == {"instId": "BTC-USDT", "px": "1", "ts": "1700000000001"}
    assert (first.key, first.topic) == (b"BTC-USDT", "okx.BTC-USDT")
    assert (second.key, second.topic, second.timestamp_ms) == (
        b"ETH-USDT",
        "okx.ETH-USDT",
        1_700_000_000_002,
    )
    assert first.timestamp_ms == 1_700_000_000_001  # epoch ms as a string, as OKX sends it
    assert dict(first.headers or [])[HEADER_INDEX] == b"0"
    assert dict(second.headers or [])[HEADER_INDEX] == b"1"
    assert stats.split_records == 1
    assert intake.take(b'{"seqId":8,"data":[]}', False, 0, 4).records == []
    assert stats.split_empty == 1
    assert stats.sequence_gaps == 0  # the sequence is checked once per frame, not per element


def test_control_frames_never_become_data_records() -> None:
    intake, stats = intake_for(OKX, with_watch=True)
    pong = intake.take(b"pong", False, 0, 1)
    assert (pong.records, pong.control and pong.control.rule) == ([], "pong")
    ack = intake.take(b'{"event":"subscribe","arg":{}}', False, 0, 2)
    assert ack.records == []
    assert ack.control is not None
    assert ack.control.answer is not None
    assert ack.control.rule == SUBSCRIPTION_RULE
    notice = intake.take(b'{"event":"notice","msg":"restart soon"}', False, 1_000_000, 3)
    assert notice.records == []
    assert notice.control is not None
    assert notice.control.record is not None
    headers = dict(notice.control.record.headers or [])
    assert (headers[HEADER_RULE], headers[HEADER_KIND]) == (b"notice", b"control")
    assert stats.control_frames == 3
    assert stats.rule_matches == {
        ("pong", "pong"): 1,
        (SUBSCRIPTION_RULE, "acknowledgement"): 1,
        ("notice", "control"): 1,
    }


def test_a_data_rule_with_a_reply_answers_and_still_produces() -> None:
    spec = bridge_spec(
        "k:9",
        "ws://f/x",
        "t",
        messages={
            "rules": [
                {
                    "name": "ack-me",
                    "match": [{"pointer": "/ackId"}],
                    "kind": "data",
                    "reply": '{"ack":{/ackId}}',
                }
            ]
        },
    )
    intake, stats = intake_for(spec)
    taken = intake.take(b'{"ackId":"m-1","v":1}', False, 0, 1)
    assert len(taken.records) == 1
    assert taken.control is not None
    assert taken.control.reply == '{"ack":"m-1"}'
    assert stats.control_frames == 0


def test_without_message_features_frames_take_the_plain_path() -> None:
    assert not Intake.wanted(bridge_spec("k:9", "ws://f/x", "t"))
    assert Intake.wanted(OKX)

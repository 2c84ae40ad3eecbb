"""A frame, however hostile, is delivered or counted as rejected with its reason; it never
stops the read loop, and the accounting always adds up.

Each example crashed the bridge before (exit 1 at once, counts not adding up); the property
test throws arbitrary JSON, malformed JSON and nasty numbers at every JSON feature together.
No sockets and no librdkafka: a scripted connection and a recording sink.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ws2kafka.bridge.config import WebSocketSourceSpec
from ws2kafka.bridge.framing import RecordBuilder
from ws2kafka.bridge.intake import Intake
from ws2kafka.bridge.messages import MessageRules
from ws2kafka.bridge.routing import TopicRouter
from ws2kafka.bridge.sequence import FrameChecks
from ws2kafka.bridge.service import Bridge, ExitCode, Summary
from ws2kafka.bridge.stats import BridgeStats
from ws2kafka.devstack.harness import RecordingSink, ScriptedConnection, bridge_spec, run_until

DEEP = b"[" * 100_000 + b"]" * 100_000

#: Every JSON feature at once: pointer key, pointer timestamp, sequence per partition, dedupe,
#: message rules with a reply, topic routing and splitting.
ALL_FEATURES: dict[str, Any] = {
    "kafka": {
        "key": {"source": "jsonPointer", "pointer": "/k"},
        "timestamp": {"source": "jsonPointer", "pointer": "/T"},
        "routing": {"template": "t.{/p}", "maxTopics": 3},
        "split": {"pointer": "/data"},
    },
    "sequence": {"pointer": "/seq", "partitionPointer": "/p"},
    "rotation": {"dedupe": {"pointer": "/id", "windowSize": 100}},
    "messages": {
        "controlTopic": "control",
        "rules": [
            {"name": "ping", "match": [{"pointer": "/ping"}], "reply": '{"pong":{/ping}}'},
            {
                "name": "ack",
                "match": [{"pointer": "/x", "oneOf": [0, 1, "a"]}],
                "kind": "acknowledgement",
                "route": "control",
            },
            {"name": "hb", "match": [{"text": "hb"}], "kind": "heartbeat"},
        ],
    },
}

HOSTILE = [
    b'{"seq":"\xc2\xb2"}',  # "²".isdigit() is true, int("²") raises
    b'{"T":Infinity}',  # OverflowError converting the timestamp
    b'{"T":1e300}',  # a timestamp produce() cannot take
    b'{"T":-1e300,"k":1e999}',
    b'{"T":NaN,"seq":NaN}',
    DEEP,  # RecursionError in the JSON parser
    b'{"k":"\\ud800","p":"\\udfff","id":"\\ud800"}',  # lone surrogates: strict UTF-8 fails
    b'{"seq":"' + b"9" * 5000 + b'"}',  # a string longer than int() converts
    b'{"seq":' + b"9" * 5000 + b"}",  # an integer longer than json converts
    b'{"k":{"a":[1,{"b":null}]},"T":"soon","seq":true,"id":[]}',
    b"\xff\xfe not even UTF-8",
    b"",
]


def spec(**extra: Any) -> WebSocketSourceSpec:
    fields = {**ALL_FEATURES, **extra}
    return bridge_spec("127.0.0.1:1", "ws://127.0.0.1:1/x", "t", drainTimeoutSeconds=5, **fields)


async def stream(frames: list[bytes], **extra: Any) -> tuple[Bridge, Summary, RecordingSink]:
    connection = ScriptedConnection([*frames, b'{"seq":1,"k":"last"}'])
    sink = RecordingSink()
    bridge = Bridge(
        spec(**extra), name="hostile", opener=connection.opener(), sink_factory=sink.attach
    )
    total = len(frames) + 1

    def all_settled() -> bool:
        stats = bridge.stats
        return stats.received == total and stats.held == 0

    summary = await run_until(bridge, all_settled, f"{total} frames settled", timeout=20)
    return bridge, summary, sink


@pytest.mark.parametrize("frame", HOSTILE, ids=lambda frame: repr(frame[:24]))
async def test_a_hostile_frame_is_delivered_or_rejected_and_the_bridge_reads_on(
    frame: bytes,
) -> None:
    bridge, summary, sink = await stream([frame, frame])
    assert summary.exit_code == ExitCode.OK
    assert summary.balanced, summary
    # the frame after the hostile ones still arrives: the read loop went on
    assert sink.batches[-1][-1].key == b"last"
    for batch in sink.batches:
        for record in batch:
            assert 0 < record.timestamp_ms < 2**63
    if summary.rejected:
        assert sum(bridge.stats.rejections.values()) == summary.rejected


async def test_an_unexpected_error_is_a_rejection_counted_by_reason(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Whatever a future bug raises on one frame, that frame is counted and the next read."""

    def broken(self: RecordBuilder, payload: bytes, *args: Any) -> Any:
        if payload.startswith(b"boom"):
            raise LookupError("a bug")
        return original(self, payload, *args)

    original = RecordBuilder.decode
    monkeypatch.setattr(RecordBuilder, "decode", broken)
    bridge, summary, _ = await stream([b"boom", b"boom"])
    assert (summary.rejected, bridge.stats.rejections) == (2, {"LookupError": 2})
    assert summary.balanced, summary


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()  # NaN and infinities included: json.dumps writes them as JSON extensions
    | st.text(st.characters(codec="utf-8") | st.sampled_from("\ud800\udfff²٣")),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(["k", "T", "seq", "p", "id", "x"]), children, max_size=5)
    ),
    max_leaves=12,
)


def encoded(value: Any) -> bytes:
    return json.dumps(value).encode("utf-8", "surrogatepass")


frames = st.lists(
    json_values.map(encoded) | st.binary(max_size=64) | st.sampled_from(HOSTILE[:5]),
    max_size=12,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames)
def test_building_and_checking_any_frame_raises_nothing_but_a_rejection(
    batch: list[bytes],
) -> None:
    """The per-frame work alone, fast enough for many examples: only FrameRejected (counted
    by the read loop) may leave it."""
    config = spec(connection={"inflate": "none"})
    builder = RecordBuilder(
        config.kafka, source="s", connection_id="c", inflate=config.connection.inflate
    )
    stats = BridgeStats()
    checks = FrameChecks(config.sequence, config.rotation.dedupe, stats, lambda gap: None)
    checks.new_connection("c")
    assert config.kafka.routing is not None
    intake = Intake(
        config,
        builder,
        stats,
        rules=MessageRules(config.messages.rules),
        router=TopicRouter(config.kafka.routing, stats),
        checks=checks,
        watch=None,
    )
    for number, frame in enumerate(batch, 1):
        for record in intake.take(frame, False, 1_700_000_000_000_000, number).records:
            assert 0 < record.timestamp_ms < 2**63
            assert record.topic is None or record.topic in stats.routed_topics
    assert len(stats.routed_topics) <= 3


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames)
async def test_any_stream_of_frames_adds_up_in_the_summary(batch: list[bytes]) -> None:
    _, summary, _ = await stream(batch)
    assert summary.exit_code == ExitCode.OK
    assert summary.balanced, summary

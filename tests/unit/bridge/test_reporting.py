"""What a status report says about the topics a bridge writes (``status.topics``)."""

from __future__ import annotations

from ws2kafka.bridge.reporting import MAX_TOPICS_LISTED, topics_written
from ws2kafka.bridge.service import Bridge
from ws2kafka.devstack.harness import (
    RecordingReporter,
    RecordingSink,
    ScriptedConnection,
    bridge_spec,
    run_until,
)


def test_the_data_topic_comes_first_then_gap_control_and_routed_topics_in_order() -> None:
    routed = {"trades.ETH", "trades.BTC", "data"}
    assert topics_written("data", "gaps", "control", routed) == (
        "data",
        "gaps",
        "control",
        "trades.BTC",
        "trades.ETH",
    )
    assert topics_written("data", None, None, set()) == ("data",)
    assert topics_written("data", "data", None, set()) == ("data",)  # no repeats


def test_the_list_is_bounded_whatever_routing_named() -> None:
    routed = {f"trades.{n:05d}" for n in range(10_000)}
    listed = topics_written("data", "gaps", None, routed)
    assert len(listed) == MAX_TOPICS_LISTED
    assert listed[:3] == ("data", "gaps", "trades.00000")
    assert listed[-1] == f"trades.{MAX_TOPICS_LISTED - 3:05d}"


async def test_a_bridge_reports_the_topics_it_writes_and_counts_the_routed_ones() -> None:
    frames: list[str | bytes] = ['{"s":"BTC"}', '{"s":"ETH"}', '{"s":"BTC"}', '{"x":1}']
    connection = ScriptedConnection(frames)
    spec = bridge_spec(
        "127.0.0.1:1",
        "ws://127.0.0.1:1/x",
        "trades",
        kafka={"routing": {"template": "trades.{/s}"}},
        gaps={"record": True, "topic": "trades-gaps"},
    )
    reports = RecordingReporter()
    bridge = Bridge(
        spec,
        name="routed",
        opener=connection.opener(),
        sink_factory=RecordingSink().attach,
        reporter=reports,
    )
    await run_until(bridge, lambda: bridge.stats.received == 4, "four frames")
    last = reports.snapshots[-1]
    assert last.topics == ("trades", "trades-gaps", "trades.BTC", "trades.ETH")
    assert last.to_status()["routedTopics"] == 2

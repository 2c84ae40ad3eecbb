"""A gap and what is made of it: its control record, ``status.lastGap`` and its log line,
for a source of one connection and for one connection of many (``streams``)."""

from __future__ import annotations

import json
from dataclasses import replace

from ws2kafka.bridge.gaps import MAX_GAP_STREAMS_SHOWN, Gap

SINGLE = Gap("src", "old", "new", 1.0, 2.5, 1011, "closed with 1011 x", "E", 7, 2)
MANY = [f"s{index:04d}" for index in range(200)]


def test_a_gap_without_streams_reads_as_a_single_connection_s_always_did() -> None:
    record = json.loads(SINGLE.to_json())
    assert record == {
        "type": "gap",
        "source": "src",
        "oldConnectionId": "old",
        "newConnectionId": "new",
        "disconnectedAt": "1970-01-01T00:00:01.000Z",
        "reconnectedAt": "1970-01-01T00:00:02.500Z",
        "durationSeconds": 1.5,
        "closeCode": 1011,
        "closeReason": "closed with 1011 x",
        "error": "E",
        "framesOnOldConnection": 7,
        "failedAttempts": 2,
    }
    assert SINGLE.to_status() == {k: v for k, v in record.items() if k != "type"}
    assert SINGLE.describe() == (
        "gap of 1.500 s between connection old (E: closed with 1011 x, 7 frames) "
        "and connection new after 2 failed attempts"
    )


def test_the_record_names_every_stream_of_the_connection() -> None:
    gap = replace(SINGLE, connection=3, streams=tuple(MANY))
    record = json.loads(gap.to_json())
    assert (record["connectionIndex"], record["streams"], record["streamCount"]) == (3, MANY, 200)
    assert {k: v for k, v in record.items() if k != "type"}.items() >= SINGLE.to_status().items()


def test_status_and_log_name_the_first_streams_and_count_the_rest() -> None:
    gap = replace(SINGLE, connection=3, streams=tuple(MANY))
    status = gap.to_status()
    shown = MANY[:MAX_GAP_STREAMS_SHOWN]
    assert (status["connectionIndex"], status["streams"], status["streamCount"]) == (3, shown, 200)
    line = gap.describe()
    assert line.startswith(
        f"gap of 1.500 s on connection 3 (streams {', '.join(shown)} and 190 more) between "
    )
    assert "s0010" not in line


def test_a_connection_within_the_bound_is_named_whole() -> None:
    gap = replace(SINGLE, connection=0, streams=("a", "b"))
    assert gap.to_status()["streams"] == ["a", "b"]
    assert " on connection 0 (streams a, b) between connection old " in gap.describe()

"""The run-state file: a killed run is known to the next one; nothing else is reported."""

from pathlib import Path

import pytest

from ws2kafka.bridge.runstate import RunState
from ws2kafka.bridge.service import Bridge, ExitCode
from ws2kafka.devstack.harness import RecordingSink, ScriptedConnection, bridge_spec, run_until


def test_an_unclean_trace_is_reported_once_written_clean_it_is_not(tmp_path: Path) -> None:
    state = RunState(tmp_path / "state.json")
    assert state.previous_unclean_exit() is None  # first run ever
    state.write(connection_id="c1", received=42, clean=False)
    crash = state.previous_unclean_exit()
    assert crash is not None
    assert (crash.connection_id, crash.received) == ("c1", 42)
    assert crash.last_alive > 0
    state.write(connection_id="c1", received=50, clean=True)
    assert state.previous_unclean_exit() is None


def test_a_corrupt_file_is_a_clean_start(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text("{not json")
    assert RunState(path).previous_unclean_exit() is None
    path.write_text("[1, 2]")
    assert RunState(path).previous_unclean_exit() is None


async def test_a_state_file_that_cannot_be_written_is_logged_never_fatal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The trace is written in a thread every second; an OSError there used to end its task
    silently (and, on the loop, a slow disk stalled the reads)."""
    frames: list[str | bytes] = ['{"seq":1}', '{"seq":2}']
    spec = bridge_spec("127.0.0.1:1", "ws://127.0.0.1:1/x", "t", drainTimeoutSeconds=5)
    sink = RecordingSink()
    bridge = Bridge(
        spec,
        name="nodisk",
        opener=ScriptedConnection(frames).opener(),
        sink_factory=sink.attach,
        state_file=tmp_path / "no-such-folder" / "state.json",
    )
    summary = await run_until(bridge, lambda: bridge.stats.delivered == 2, "2 delivered")
    assert (summary.delivered, summary.exit_code) == (2, ExitCode.OK)
    assert "state-file writes failed" in caplog.text
    assert "no-such-folder" in caplog.text

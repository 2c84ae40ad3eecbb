"""The run-state file: a killed run is known to the next one; nothing else is reported."""

from pathlib import Path

from ws2kafka.bridge.runstate import RunState


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

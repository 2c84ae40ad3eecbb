"""The ws2kafka-bridge command line: user errors are one line per problem, exit code 2."""

import json
import logging
from pathlib import Path

import kopf
import pytest

from ws2kafka.bridge.__main__ import JsonFormatter, main
from ws2kafka.bridge.service import ExitCode


def test_invalid_config_names_each_field_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "source.yaml"
    config.write_text(
        "url: http://x\nkafka: {bootstrapServers: k, topic: t}\nbuffer: {maxMessages: 0}\n"
    )
    assert main(["--config", str(config)]) == ExitCode.CONFIG
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "ws2kafka-bridge: spec.url: must start with ws:// or wss://",
        "ws2kafka-bridge: spec.buffer.maxMessages: Input should be greater than or equal to 1",
    ]
    assert "Traceback" not in err


def test_unreadable_and_non_mapping_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--config", str(tmp_path / "missing.yaml")]) == ExitCode.CONFIG
    (tmp_path / "list.yaml").write_text("- 1\n")
    assert main(["--config", str(tmp_path / "list.yaml")]) == ExitCode.CONFIG
    err = capsys.readouterr().err
    assert "cannot read" in err
    assert "must be a mapping" in err


def test_a_whole_resource_is_accepted_and_check_validates_only(tmp_path: Path) -> None:
    config = tmp_path / "resource.yaml"
    config.write_text(
        "apiVersion: ws2kafka.dev/v1alpha1\nkind: WebSocketSource\nmetadata: {name: demo}\n"
        "spec:\n  url: wss://x\n  kafka: {bootstrapServers: k, topic: t}\n"
    )
    assert main(["--config", str(config), "--check"]) == ExitCode.OK


def test_help_explains_options_and_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    for text in ("--config", "--metrics-port", "exit codes:", "SIGTERM", "drainTimeoutSeconds"):
        assert text in out


def test_json_logs_are_one_object_per_line() -> None:
    record = logging.LogRecord("ws2kafka.bridge", logging.WARNING, "f", 1, "%d dropped", (3,), None)
    entry = json.loads(JsonFormatter().format(record))
    assert entry["level"] == "WARNING"
    assert entry["logger"] == "ws2kafka.bridge"
    assert entry["message"] == "3 dropped"
    assert entry["time"].endswith("Z")


def test_json_logs_of_kopf_records_leave_out_kopfs_own_extras() -> None:
    """kopf adds its whole configuration to each record of a resource's logger; serialising
    it (a deep copy per line) failed, with a traceback for every timer line of the operator."""
    record = logging.LogRecord("kopf.objects", logging.INFO, "f", 1, "Timer succeeded.", (), None)
    record.settings = kopf.OperatorSettings()
    record.k8s_skip = False
    record.k8s_ref = {"kind": "WebSocketSource", "namespace": "ns", "name": "s"}
    entry = json.loads(JsonFormatter().format(record))
    assert entry["message"] == "Timer succeeded."
    assert entry["k8s_ref"]["name"] == "s"
    assert "settings" not in entry
    assert "k8s_skip" not in entry

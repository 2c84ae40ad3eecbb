"""Which secrets a bridge watches, and when it says they changed (files only)."""

from pathlib import Path
from typing import Any

from ws2kafka.bridge.config import WebSocketSourceSpec
from ws2kafka.bridge.secret_watch import SecretWatch, file_secrets
from ws2kafka.devstack.harness import bridge_spec


def spec_with_files(tmp_path: Path, **fields: Any) -> tuple[WebSocketSourceSpec, Path, Path]:
    """A spec whose bearer token and SASL password come from files (and the files)."""
    token, password = tmp_path / "token", tmp_path / "password"
    token.write_text("first\n")
    password.write_text("kafka-1\n")
    spec = bridge_spec(
        "127.0.0.1:9",
        "ws://feed/ws",
        "t",
        auth={"bearerToken": {"file": str(token)}},
        kafka={"secretProperties": {"sasl.password": {"file": str(password)}}},
        **fields,
    )
    return spec, token, password


def test_only_file_secrets_are_watched_and_the_producer_s_apart(tmp_path: Path) -> None:
    headers = [{"name": "X-Key", "valueFrom": {"env": "NOT_WATCHED"}}]
    spec, token, password = spec_with_files(tmp_path, headers=headers)
    assert [s.file for s in file_secrets(spec)] == [token, password]
    assert SecretWatch.of_connection(spec).watching
    assert SecretWatch.of_producer(spec).watching
    plain = bridge_spec("127.0.0.1:9", "ws://feed/ws", "t")
    assert not SecretWatch.of_connection(plain).watching


def test_a_changed_file_is_reported_once(tmp_path: Path) -> None:
    spec, token, _ = spec_with_files(tmp_path)
    connection, producer = SecretWatch.of_connection(spec), SecretWatch.of_producer(spec)
    assert not connection.changed()
    token.write_text("second\n")
    assert connection.changed()
    assert not connection.changed(), "reported once"
    assert not producer.changed(), "the producer's secrets are apart"
    token.write_text("second")  # the trailing newline is not part of the secret
    assert not connection.changed()


def test_a_file_being_swapped_counts_as_unchanged(tmp_path: Path) -> None:
    spec, token, _ = spec_with_files(tmp_path)
    watch = SecretWatch.of_connection(spec)
    token.unlink()
    assert not watch.changed()
    token.write_text("first\n")
    assert not watch.changed()
    token.write_text("new\n")
    assert watch.changed()

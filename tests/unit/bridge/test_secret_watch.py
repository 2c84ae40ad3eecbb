"""Which secrets a bridge watches, and when it says they changed (files only)."""

from pathlib import Path

from ws2kafka.bridge.secret_watch import SecretWatch, file_secrets
from ws2kafka.devstack.harness import bridge_spec


def spec_with_files(tmp_path: Path) -> tuple[Path, Path]:
    token, password = tmp_path / "token", tmp_path / "password"
    token.write_text("first\n")
    password.write_text("kafka-1\n")
    return token, password


def test_only_file_secrets_are_watched_and_the_producer_s_apart(tmp_path: Path) -> None:
    token, password = spec_with_files(tmp_path)
    spec = bridge_spec(
        "127.0.0.1:9",
        "ws://feed/ws",
        "t",
        auth={"bearerToken": {"file": str(token)}},
        headers=[{"name": "X-Key", "valueFrom": {"env": "NOT_WATCHED"}}],
        kafka={"secretProperties": {"sasl.password": {"file": str(password)}}},
    )
    assert [s.file for s in file_secrets(spec)] == [token, password]
    assert SecretWatch.of_connection(spec).watching
    assert SecretWatch.of_producer(spec).watching
    plain = bridge_spec("127.0.0.1:9", "ws://feed/ws", "t")
    assert not SecretWatch.of_connection(plain).watching


def test_a_changed_file_is_reported_once(tmp_path: Path) -> None:
    token, password = spec_with_files(tmp_path)
    spec = bridge_spec(
        "127.0.0.1:9",
        "ws://feed/ws",
        "t",
        auth={"bearerToken": {"file": str(token)}},
        kafka={"secretProperties": {"sasl.password": {"file": str(password)}}},
    )
    connection, producer = SecretWatch.of_connection(spec), SecretWatch.of_producer(spec)
    assert not connection.changed()
    token.write_text("second\n")
    assert connection.changed()
    assert not connection.changed(), "reported once"
    assert not producer.changed(), "the producer's secrets are apart"
    token.write_text("second")  # the trailing newline is not part of the secret
    assert not connection.changed()


def test_a_file_being_swapped_counts_as_unchanged(tmp_path: Path) -> None:
    token, _ = spec_with_files(tmp_path)
    spec = bridge_spec("127.0.0.1:9", "ws://f/ws", "t", auth={"bearerToken": {"file": str(token)}})
    watch = SecretWatch.of_connection(spec)
    token.unlink()
    assert not watch.changed()
    token.write_text("first\n")
    assert not watch.changed()
    token.write_text("new\n")
    assert watch.changed()

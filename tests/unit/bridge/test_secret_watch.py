"""Which secrets a bridge watches, and when it says they changed (files only); and how a
running bridge takes new secret values (inline mode's re-read Secrets, a pod's files)."""

import asyncio
from pathlib import Path
from typing import Any

import pytest

from ws2kafka.bridge.config import WebSocketSourceSpec
from ws2kafka.bridge.secret_watch import (
    Rekeyed,
    SecretWatch,
    file_secrets,
    rekeyed,
    sasl_credentials,
)
from ws2kafka.bridge.service import Bridge
from ws2kafka.devstack.harness import RecordingSink, ScriptedConnection, bridge_spec
from ws2kafka.devstack.waiting import until


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


def test_a_file_rewritten_in_place_is_one_change_not_two(tmp_path: Path) -> None:
    """Truncated, then written: the empty file in between is no change of its own (it would
    rotate to an empty token, then again to the new one)."""
    spec, token, _ = spec_with_files(tmp_path)
    watch = SecretWatch.of_connection(spec)
    token.write_text("")
    assert not watch.changed()
    token.write_text("second\n")
    assert watch.changed()
    assert not watch.changed()


def test_the_producer_s_watch_names_the_properties_that_changed(tmp_path: Path) -> None:
    spec, _, password = spec_with_files(tmp_path)
    producer = SecretWatch.of_producer(spec)
    password.write_text("kafka-2\n")
    assert producer.changed() == ["sasl.password"]
    assert producer.changed() == []


def test_sasl_credentials_come_from_properties_and_secrets_as_they_are_now(
    tmp_path: Path,
) -> None:
    password = tmp_path / "password"
    password.write_text("kafka-1\n")
    secrets = {"sasl.password": {"file": str(password)}}
    without_user = bridge_spec("127.0.0.1:9", "ws://f/ws", "t", kafka={"secretProperties": secrets})
    assert sasl_credentials(without_user.kafka) is None  # nothing to hand over
    kafka = {"properties": {"sasl.username": "bridge"}, "secretProperties": secrets}
    spec = bridge_spec("127.0.0.1:9", "ws://f/ws", "t", kafka=kafka)
    password.write_text("kafka-2\n")
    assert sasl_credentials(spec.kafka) == ("bridge", "kafka-2")


async def test_a_rotated_sasl_password_reaches_the_running_producer_and_others_wait(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """sasl.password is handed to the producer (its next authentication uses it); a changed
    ssl.key.password cannot be, and says so."""
    password, key_password = tmp_path / "password", tmp_path / "key-password"
    password.write_text("kafka-1\n")
    key_password.write_text("key-1\n")
    kafka = {
        "properties": {"sasl.username": "bridge"},
        "secretProperties": {
            "sasl.password": {"file": str(password)},
            "ssl.key.password": {"file": str(key_password)},
        },
    }
    spec = bridge_spec("127.0.0.1:9", "ws://feed/ws", "t", kafka=kafka)
    sink = RecordingSink()

    async def scripted(*_: object) -> ScriptedConnection:
        return ScriptedConnection(["a"])

    bridge = Bridge(
        spec,
        name="rotated",
        opener=scripted,
        sink_factory=sink.attach,
        secret_check_interval=0.02,
    )
    task = asyncio.create_task(bridge.run())
    try:
        await until(lambda: bridge.stats.delivered == 1, 10, "the frame")
        password.write_text("kafka-2\n")
        await until(lambda: sink.sasl_credentials == [("bridge", "kafka-2")], 10, "handed over")
        key_password.write_text("key-2\n")
        await until(lambda: "until the bridge restarts" in caplog.text, 10, "the warning")
    finally:
        bridge.stop()
        await task
    assert sink.sasl_credentials == [("bridge", "kafka-2")]
    assert "kafka.secretProperties ssl.key.password changed" in caplog.text
    assert "kafka-2" not in caplog.text


def inline_spec(token: str, password: str, **fields: Any) -> WebSocketSourceSpec:
    """A spec as inline mode builds it: the Secrets' values in it."""
    kafka = {
        "properties": {"sasl.username": "bridge"},
        "secretProperties": {"sasl.password": {"value": password}},
    }
    auth = {"bearerToken": {"value": token}}
    return bridge_spec("127.0.0.1:9", "ws://feed/ws", "t", kafka=kafka, auth=auth, **fields)


def test_rekeyed_tells_a_change_of_secret_values_only() -> None:
    spec = inline_spec("first", "kafka-1")
    assert rekeyed(spec, inline_spec("first", "kafka-1")) is None  # nothing changed
    assert rekeyed(spec, inline_spec("second", "kafka-1")) == Rekeyed(True, [])
    assert rekeyed(spec, inline_spec("first", "kafka-2")) == Rekeyed(False, ["sasl.password"])
    assert rekeyed(spec, inline_spec("second", "kafka-1", subscribe=["s"])) is None  # more


async def test_a_running_bridge_takes_new_secret_values_make_before_break() -> None:
    """Inline mode's rotation: the connection is replaced by one opened with the new token,
    and the producer gets the new SASL password; the bridge goes on."""
    opened: list[str | None] = []

    async def scripted(spec: WebSocketSourceSpec, *_: object) -> ScriptedConnection:
        token = spec.auth.bearer_token
        opened.append(token.resolve() if token is not None else None)
        return ScriptedConnection(["a"])

    sink = RecordingSink()
    bridge = Bridge(inline_spec("first", "kafka-1"), name="inline", opener=scripted,
                    sink_factory=sink.attach)  # fmt: skip
    task = asyncio.create_task(bridge.run())
    try:
        await until(lambda: bridge.stats.delivered == 1, 10, "the first frame")
        assert not await bridge.rekey(inline_spec("first", "kafka-1"))
        assert await bridge.rekey(inline_spec("second", "kafka-2"))
        await until(lambda: bridge.stats.rotations == 1, 10, "the rotation")
    finally:
        bridge.stop()
        summary = await task
    assert opened == ["first", "second"]
    assert sink.sasl_credentials == [("bridge", "kafka-2")]
    assert (summary.delivered, summary.reconnects, bridge.stats.gaps) == (2, 0, 0)

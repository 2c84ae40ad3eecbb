"""The bridge against a secured broker: SASL_SSL with SCRAM-SHA-512, mutual TLS, and ACLs under
which the bridge's principal may write only its own topics (``devstack.kafka_secured``).

Credentials reach the bridge as ``secretProperties`` (an environment variable or a file here;
``secretKeyRef`` in a cluster, which the operator mounts as a file). A rotated password is used
by the running producer from its next re-authentication. A refused credential or certificate
must not flood the log with an ERROR per retry, and a record the broker refused is never counted
as produced. The last tests pin down what librdkafka reports in each case, which
``bridge.kafka_errors.classify`` turns into a status reason.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError, Message, Producer

from ws2kafka.bridge.kafka_errors import (
    BROKERS_UNREACHABLE,
    KAFKA_AUTHENTICATION_FAILED,
    TOPIC_AUTHORIZATION_FAILED,
    classify,
)
from ws2kafka.bridge.kafka_health import KafkaReason
from ws2kafka.bridge.service import Bridge, ExitCode
from ws2kafka.bridge.stats import ConnectionState
from ws2kafka.devstack.feeds import SequenceFeed
from ws2kafka.devstack.harness import bridge_spec, record_count, run_until, seqs
from ws2kafka.devstack.kafka_secured import REAUTHENTICATION_MS, ScramUser, SecuredKafka
from ws2kafka.devstack.pki import Pki
from ws2kafka.devstack.processes import free_port
from ws2kafka.devstack.waiting import until

pytestmark = pytest.mark.kafka

#: The prefix of the topics the bridge's principals may write.
OWN = "ws2kafka-own-"
PASSWORD_ENV = "WS2KAFKA_TEST_SASL_PASSWORD"
#: librdkafka retries a refused connection with backoff up to 10 s by default; tests wait less.
FAST_RECONNECT = {"reconnect.backoff.ms": "100", "reconnect.backoff.max.ms": "500"}


@pytest.fixture(scope="module")
def secured(kafka_secured: SecuredKafka) -> SecuredKafka:
    """The secured broker, with its two principals (SCRAM user, client certificate) allowed
    to write the topics named ``ws2kafka-own-*`` and nothing else."""
    kafka_secured.allow_writes(kafka_secured.user.principal, OWN)
    kafka_secured.allow_writes(kafka_secured.client_principal, OWN)
    return kafka_secured


@pytest.fixture(scope="module")
def stranger(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A CA the broker does not trust, and that did not sign the broker's certificate."""
    return Pki.create(tmp_path_factory.mktemp("stranger-pki"), "unrelated test CA")


def topic_of(secured: SecuredKafka, prefix: str) -> str:
    topic = f"{prefix}{uuid.uuid4().hex[:10]}"
    secured.broker.create_topic(topic)
    return topic


def sasl(secured: SecuredKafka, *, ca: Path | None = None) -> dict[str, Any]:
    """Kafka fields for SASL_SSL as the bridge's SCRAM user, as in examples/kafka-sasl-ssl.yaml:
    the password from the environment, the CA as PEM text from a file."""
    return {
        "properties": {
            "security.protocol": "SASL_SSL",
            "sasl.mechanism": "SCRAM-SHA-512",
            "sasl.username": secured.user.name,
            **FAST_RECONNECT,
        },
        "secretProperties": {
            "sasl.password": {"env": PASSWORD_ENV},
            "ssl.ca.pem": {"file": str(ca or secured.pki.ca)},
        },
    }


def mtls(secured: SecuredKafka, cert: Path, key: Path) -> dict[str, Any]:
    """Kafka fields for mutual TLS as in examples/kafka-mtls.yaml: certificate, key and CA as
    PEM text from Secrets (files here)."""
    return {
        "properties": {"security.protocol": "SSL", **FAST_RECONNECT},
        "secretProperties": {
            "ssl.certificate.pem": {"file": str(cert)},
            "ssl.key.pem": {"file": str(key)},
            "ssl.ca.pem": {"file": str(secured.pki.ca)},
        },
    }


async def test_data_flows_over_sasl_ssl_with_the_password_from_a_secret(
    secured: SecuredKafka, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, secured.user.password)
    topic = topic_of(secured, OWN)
    async with SequenceFeed(count=500) as feed:
        spec = bridge_spec(secured.sasl_ssl_servers, feed.url, topic, kafka=sasl(secured))
        bridge = Bridge(spec, name="sasl")
        summary = await run_until(bridge, lambda: bridge.stats.delivered == 500, "500 records")
    assert (summary.exit_code, summary.received, summary.delivered) == (ExitCode.OK, 500, 500)
    assert seqs(secured.broker, topic, 500) == list(range(1, 501))
    assert record_count(secured.broker, topic) == 500


async def test_a_rotated_sasl_password_is_used_at_the_next_authentication_without_a_restart(
    secured: SecuredKafka, tmp_path: Path
) -> None:
    """The broker gets a new password for the bridge's user and the Secret's file the same;
    the broker makes every connection re-authenticate within seconds: the running producer
    does so with the new password, and every record arrives."""
    user = ScramUser(f"rotating-{uuid.uuid4().hex[:8]}", "first-password-4b1d")
    secured.set_password(user)
    secured.allow_writes(user.principal, OWN)
    password = tmp_path / "sasl-password"
    password.write_text(f"{user.password}\n")
    topic = topic_of(secured, OWN)
    kafka = sasl(secured)
    kafka["properties"]["sasl.username"] = user.name
    kafka["secretProperties"]["sasl.password"] = {"file": str(password)}
    total = 2000
    # 10 s of data: the rotation after 1 s, then more than two re-authentications
    async with SequenceFeed(count=total, rate=200) as feed:
        spec = bridge_spec(secured.sasl_ssl_servers, feed.url, topic, kafka=kafka)
        bridge = Bridge(spec, name="sasl-rotated", secret_check_interval=0.1)
        task = asyncio.create_task(bridge.run())
        try:
            await until(lambda: bridge.stats.delivered >= 200, 30, "200 records")
            rotated = ScramUser(user.name, "second-password-93ac")
            secured.set_password(rotated)
            password.write_text(f"{rotated.password}\n")
            rotated_at = time.monotonic()
            await until(lambda: bridge.stats.delivered == total, 60, f"{total} records")
            assert time.monotonic() - rotated_at > 2 * REAUTHENTICATION_MS / 1000
        finally:
            bridge.stop()
            summary = await task
    assert (summary.exit_code, summary.delivered, summary.undelivered) == (ExitCode.OK, total, 0)
    assert seqs(secured.broker, topic, total) == list(range(1, total + 1))
    assert record_count(secured.broker, topic) == total


async def test_data_flows_over_mutual_tls_as_the_certificate_s_principal(
    secured: SecuredKafka,
) -> None:
    """The ACL names the certificate's CN: records arrive only if the broker verified the
    client certificate and mapped it to that principal."""
    topic = topic_of(secured, OWN)
    fields = mtls(secured, secured.client.cert, secured.client.key)
    async with SequenceFeed(count=500) as feed:
        bridge = Bridge(
            bridge_spec(secured.ssl_servers, feed.url, topic, kafka=fields), name="mtls"
        )
        summary = await run_until(bridge, lambda: bridge.stats.delivered == 500, "500 records")
    assert (summary.exit_code, summary.received, summary.delivered) == (ExitCode.OK, 500, 500)
    assert seqs(secured.broker, topic, 500) == list(range(1, 501))


def refused_setups(
    secured: SecuredKafka, stranger: Pki, monkeypatch: pytest.MonkeyPatch
) -> dict[str, tuple[str, dict[str, Any]]]:
    """(bootstrap, Kafka fields) of each way to be refused by the broker."""
    monkeypatch.setenv(PASSWORD_ENV, "not-the-password")
    untrusted = stranger.issue_client("ws2kafka-bridge-tls")
    return {
        "wrong password": (secured.sasl_ssl_servers, sasl(secured)),
        "untrusted broker certificate": (secured.sasl_ssl_servers, sasl(secured, ca=stranger.ca)),
        "untrusted client certificate": (
            secured.ssl_servers,
            mtls(secured, untrusted.cert, untrusted.key),
        ),
    }


@pytest.mark.parametrize(
    "case", ["wrong password", "untrusted broker certificate", "untrusted client certificate"]
)
async def test_a_refused_credential_is_one_log_line_and_nothing_produced(
    secured: SecuredKafka,
    stranger: Pki,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    case: str,
) -> None:
    """librdkafka retries the connection every half second here; the log says so once (a
    rate line at the end of the interval or at the stop), not at ERROR per attempt."""
    caplog.set_level(logging.DEBUG, logger="ws2kafka")
    bootstrap, fields = refused_setups(secured, stranger, monkeypatch)[case]
    topic = topic_of(secured, OWN)
    async with SequenceFeed(count=50) as feed:
        bridge = Bridge(
            bridge_spec(bootstrap, feed.url, topic, kafka=fields, drainTimeoutSeconds=1),
            name="refused",
        )
        stats = bridge.stats
        started = time.monotonic()
        summary = await run_until(
            bridge,
            lambda: stats.received == 50 and time.monotonic() - started > 4,
            "4 s of refused connections",
        )
    assert stats.state is not ConnectionState.AUTH_FAILED  # that one is the WebSocket's
    verdict = bridge.kafka_verdict()
    assert verdict.reason is KafkaReason.AUTHENTICATION_FAILED, verdict
    assert (summary.exit_code, summary.received) == (ExitCode.UNDELIVERED, 50)
    assert (summary.delivered, summary.undelivered) == (0, 50)
    assert record_count(secured.broker, topic) == 0
    kafka_lines = [
        r for r in caplog.records if r.name.startswith("ws2kafka") and r.levelno >= logging.INFO
    ]
    assert not [r.getMessage() for r in kafka_lines if r.levelno >= logging.ERROR]
    failures = [
        r.getMessage() for r in kafka_lines if "broker connection failures" in r.getMessage()
    ]
    assert len(failures) == 1, [r.getMessage() for r in kafka_lines]


async def test_a_topic_the_acls_deny_is_never_counted_as_produced(
    secured: SecuredKafka, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, secured.user.password)
    denied = topic_of(secured, "ws2kafka-other-")
    async with SequenceFeed(count=100) as feed:
        spec = bridge_spec(
            secured.sasl_ssl_servers, feed.url, denied, kafka=sasl(secured), drainTimeoutSeconds=1
        )
        bridge = Bridge(spec, name="denied")
        stats = bridge.stats
        summary = await run_until(
            bridge, lambda: stats.received == 100 and stats.settled == 100, "100 refusals"
        )
    assert (summary.received, summary.delivered, summary.failed) == (100, 0, 100)
    assert stats.delivery_errors.get("DeliveryTOPIC_AUTHORIZATION_FAILED") == 100
    assert bridge.kafka_verdict().reason is KafkaReason.TOPIC_AUTHORIZATION_FAILED
    assert record_count(secured.broker, denied) == 0


# -- what librdkafka reports, and how classify() names it ----------------------------------------


def reported_reasons(
    config: dict[str, Any], topic: str, *, wait: Callable[[set[str]], bool], timeout: float = 20
) -> set[str]:
    """The reasons classify() gives the errors a producer with ``config`` reports (error_cb
    and delivery reports) while it tries to deliver one record to ``topic``."""
    reasons: set[str] = set()
    lock = threading.Lock()

    def record(error: KafkaError) -> None:
        reason = classify(error)
        if reason is not None:
            with lock:
                reasons.add(reason)

    def on_delivery(error: KafkaError | None, _message: Message) -> None:
        if error is not None:
            record(error)

    producer = Producer(
        {
            **config,
            "error_cb": record,
            "message.timeout.ms": 0,
            "log_level": 0,
            **FAST_RECONNECT,
        }
    )
    producer.produce(topic, b"probe", on_delivery=on_delivery)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not wait(reasons):
        producer.poll(0.2)
    producer.purge()
    producer.flush(5)
    return reasons


def sasl_config(secured: SecuredKafka, password: str, ca: Path) -> dict[str, Any]:
    return {
        "bootstrap.servers": secured.sasl_ssl_servers,
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": secured.user.name,
        "sasl.password": password,
        "ssl.ca.location": str(ca),
    }


def test_librdkafka_reports_refused_credentials_as_authentication_failures(
    secured: SecuredKafka, stranger: Pki
) -> None:
    topic = topic_of(secured, OWN)
    untrusted = stranger.issue_client("ws2kafka-bridge-tls")
    configs = {
        "wrong password": sasl_config(secured, "not-the-password", secured.pki.ca),
        "untrusted broker certificate": sasl_config(secured, secured.user.password, stranger.ca),
        "untrusted client certificate": {
            "bootstrap.servers": secured.ssl_servers,
            "security.protocol": "SSL",
            "ssl.ca.location": str(secured.pki.ca),
            "ssl.certificate.location": str(untrusted.cert),
            "ssl.key.location": str(untrusted.key),
        },
    }
    for case, config in configs.items():
        reasons = reported_reasons(config, topic, wait=lambda r: KAFKA_AUTHENTICATION_FAILED in r)
        assert KAFKA_AUTHENTICATION_FAILED in reasons, case


def test_librdkafka_reports_a_denied_topic_as_topic_authorization_failed(
    secured: SecuredKafka,
) -> None:
    denied = topic_of(secured, "ws2kafka-other-")
    config = sasl_config(secured, secured.user.password, secured.pki.ca)
    reasons = reported_reasons(config, denied, wait=lambda r: TOPIC_AUTHORIZATION_FAILED in r)
    assert reasons == {TOPIC_AUTHORIZATION_FAILED}


def test_librdkafka_reports_no_broker_as_brokers_unreachable() -> None:
    config = {"bootstrap.servers": f"127.0.0.1:{free_port()}"}
    reasons = reported_reasons(config, "absent", wait=lambda r: BROKERS_UNREACHABLE in r)
    assert reasons == {BROKERS_UNREACHABLE}

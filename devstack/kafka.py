"""A real single-node Apache Kafka broker (KRaft) on loopback, without Docker.

The bridge's guarantees are about what a real broker acknowledges, so tests, the demo and the
benchmarks run against the genuine broker rather than a fake: its jars come from Maven Central
(see ``kafka/pom.xml``), are assembled once per machine, and run on the local JVM.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import os
import shutil
import tempfile
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

# NewTopic's documented home; mypy sees it as a private import of confluent_kafka.cimpl.
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from . import paths
from .processes import ManagedProcess, StackError, free_port, run_logged

log = logging.getLogger("ws2kafka.devstack")

_POM: Final = paths.ASSETS / "kafka" / "pom.xml"
_POM_NAMESPACE: Final = "http://maven.apache.org/POM/4.0.0"
_LOG_CONFIG: Final = paths.ASSETS / "kafka" / "log4j2.properties"
_MAVEN_TIMEOUT: Final = 900.0
_READY_TIMEOUT: Final = 90.0
_ADMIN_TIMEOUT: Final = 30.0
_PROBE_TOPIC: Final = "ws2kafka-probe"


def _pom_kafka_version() -> str:
    pom = ET.parse(_POM).getroot()
    version = pom.findtext("m:properties/m:kafka.version", namespaces={"m": _POM_NAMESPACE})
    if not version:
        raise StackError(f"no <kafka.version> property in {_POM}")
    return version


#: The Kafka release the broker runs; the pom is the single place to bump it.
KAFKA_VERSION: Final = _pom_kafka_version()


def assemble_kafka() -> Path:
    """The folder of jars that is the broker's classpath, fetched on the first call on a
    machine and reused afterwards.

    The cache key hashes the pom and the logging config, so editing either yields a fresh
    assembly instead of a stale one; the folder appears by an atomic rename, so an interrupted
    or concurrent assembly never leaves a half-filled classpath behind.
    """
    root = paths.cache_dir() / "kafka"
    home = root / f"{KAFKA_VERSION}-{_assets_digest()}"
    if (home / "libs").is_dir():
        return home / "libs"
    root.mkdir(parents=True, exist_ok=True)
    build_log = paths.cache_dir() / "logs" / f"kafka-assemble-{home.name}.log"
    build_log.unlink(missing_ok=True)
    log.info("assembling Kafka %s from Maven Central, log: %s", KAFKA_VERSION, build_log)
    started = time.monotonic()
    staging = Path(tempfile.mkdtemp(prefix=".assembling-", dir=root))
    try:
        _copy_dependencies(staging / "libs", build_log)
        shutil.copy2(_LOG_CONFIG, staging / _LOG_CONFIG.name)
        _publish(staging, home)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("assembled Kafka %s in %.1f s: %s", KAFKA_VERSION, time.monotonic() - started, home)
    return home / "libs"


def _assets_digest() -> str:
    digest = hashlib.sha256()
    for asset in (_POM, _LOG_CONFIG):
        digest.update(asset.read_bytes())
    return digest.hexdigest()[:16]


def _copy_dependencies(libs: Path, build_log: Path) -> None:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise StackError("Maven (mvn) is not on PATH; it is needed once to fetch the Kafka jars")
    run_logged(
        [
            mvn,
            "-q",
            "-B",
            "-Dstyle.color=never",
            "-f",
            str(_POM),
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={libs}",
        ],
        build_log,
        what=f"assembling Kafka {KAFKA_VERSION} with Maven",
        timeout=_MAVEN_TIMEOUT,
    )


def _publish(staging: Path, home: Path) -> None:
    """Move a finished assembly into place; losing the race to a concurrent one is fine."""
    try:
        staging.rename(home)
    except OSError:
        if not (home / "libs").is_dir():
            raise


def _java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    java = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
    if java is None or not Path(java).is_file():
        raise StackError("no Java runtime: set JAVA_HOME or put java (17 or newer) on PATH")
    return java


def new_cluster_id() -> str:
    """A cluster id in Kafka's own format: a random UUID, URL-safe base64 without padding.

    Like Kafka's ``Uuid.randomUuid()``, never one that starts with ``-``: the storage tool
    would read it as an option (one session start in 64 failed that way).
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


class KafkaBroker:
    """One KRaft node that is both controller and broker, on loopback ports of its own.

    It keeps its ports and data across :meth:`kill` and :meth:`restart`, so fault tests can
    crash it mid-stream and check what survived. Alone (:meth:`start`) it is the suite's
    default broker; ``devstack.kafka_cluster`` and ``devstack.kafka_secured`` build other
    shapes from the same node by overriding its settings.
    """

    def __init__(
        self,
        workdir: Path,
        libs: Path,
        port: int,
        *,
        advertised_port: int | None = None,
        node_id: int = 1,
        controller_port: int | None = None,
        overrides: dict[str, str] | None = None,
        jvm_options: tuple[str, ...] = ("-Xms256m", "-Xmx512m"),
        name: str = "kafka broker",
    ) -> None:
        self.workdir = workdir
        self.node_id = node_id
        self.name = name
        self.bootstrap_servers = f"127.0.0.1:{port}"
        self.log_path = workdir / "kafka.log"
        self._libs = libs
        self._port = port
        self._advertised_port = advertised_port or port
        self.controller_port = controller_port or free_port()
        self._overrides = overrides or {}
        self._jvm_options = list(jvm_options)
        self._config_path = workdir / "server.properties"
        self._data_dir = workdir / "data"
        self._process: ManagedProcess | None = None

    @classmethod
    @contextlib.contextmanager
    def start(
        cls, workdir: Path, *, port: int | None = None, advertised_port: int | None = None
    ) -> Iterator[KafkaBroker]:
        """Start a broker with empty storage, ready for produce requests; on exit, stop it
        and delete its data, whatever the body raised.

        ``advertised_port``: the loopback port the broker tells clients to use after
        bootstrap (default: the one it listens on). Network-fault tests point it at a proxy in
        front of ``port``, which must be listening before the broker starts: readiness is
        checked through it.
        """
        broker = cls(
            workdir, assemble_kafka(), port or free_port(), advertised_port=advertised_port
        )
        try:
            broker.format(new_cluster_id())
            broker.launch()
            yield broker
        finally:
            broker.stop()
            broker.remove_data()

    @property
    def pid(self) -> int | None:
        """The JVM's process id while it runs (None once stopped or killed)."""
        if self._process is None or not self._process.running():
            return None
        return self._process.pid

    def stop(self) -> None:
        """Shut down gracefully (SIGTERM: Kafka flushes and closes its logs), keeping the data.

        In a cluster this is a controlled shutdown: the node hands its partition leaderships
        to other replicas before it exits."""
        if self._process is not None:
            self._process.stop(timeout=30.0)

    def kill(self) -> None:
        """SIGKILL the JVM, as a crash would: no controlled shutdown, and the data stays for the
        log recovery that :meth:`restart` then goes through."""
        if self._process is not None:
            self._process.kill()

    def restart(self) -> None:
        """Start again on the same ports and data, and wait until produce requests succeed.

        Clients keep their bootstrap address, so a restart looks like a broker outage to them.
        """
        self.stop()
        self.launch()

    def remove_data(self) -> None:
        """Delete the node's storage (after :meth:`stop`)."""
        shutil.rmtree(self._data_dir, ignore_errors=True)

    def create_topic(
        self, name: str, *, partitions: int = 1, config: dict[str, str] | None = None
    ) -> None:
        """Create a topic and wait until every partition has a leader, so the next produce or
        consume does not race the broker's metadata."""
        admin = AdminClient({"bootstrap.servers": self.bootstrap_servers})
        topic = NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})
        futures = admin.create_topics(
            [topic], operation_timeout=_ADMIN_TIMEOUT, request_timeout=_ADMIN_TIMEOUT
        )
        futures[name].result(timeout=_ADMIN_TIMEOUT)
        _wait_for_leaders(admin, name, partitions)

    def consume_all(self, topic: str, *, expected: int, timeout: float = 30.0) -> list[Message]:
        """Read ``expected`` records of a topic from its start, every partition assigned.

        No consumer group: a group's join and rebalance can stall a fresh consumer for longer
        than the wait (seen once: 0 of 90 records read in 30 s from a topic that held them),
        and the witness of what the broker holds must depend on nothing but the broker.
        Raises AssertionError, with the count read so far, if fewer than ``expected`` arrive
        within ``timeout`` seconds (a topic the code under test creates is waited for too).
        """
        deadline = time.monotonic() + timeout
        consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap_servers,
                "group.id": f"ws2kafka-check-{uuid.uuid4().hex}",
                "enable.auto.commit": False,
            }
        )
        try:
            partitions = _partitions(consumer, topic, deadline)
            consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
            return _read(consumer, topic, expected, timeout, deadline)
        finally:
            consumer.close()

    def format(self, cluster_id: str, *options: str) -> None:
        """Write the config and format fresh storage: a broker that starts never inherits
        records from an earlier session that used the same folder.

        Every node of one cluster is formatted with the same ``cluster_id``; ``options`` go to
        the storage tool (``--add-scram`` creates SCRAM users before the first start).
        """
        self.remove_data()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._config_path.write_text(self._server_properties())
        run_logged(
            self._jvm(
                "kafka.tools.StorageTool",
                "format",
                "--cluster-id",
                cluster_id,
                "--config",
                str(self._config_path),
                *options,
            ),
            self.log_path,
            what=f"formatting Kafka storage in {self._data_dir}",
            timeout=_READY_TIMEOUT,
        )

    def launch(self) -> None:
        """Start the JVM and wait until it acknowledges a produce request."""
        started = time.monotonic()
        self.spawn()
        self.wait_ready()
        log.info(
            "%s (Kafka %s) accepts produce requests on %s after %.1f s, log: %s",
            self.name,
            KAFKA_VERSION,
            self.bootstrap_servers,
            time.monotonic() - started,
            self.log_path,
        )

    def spawn(self) -> None:
        """Start the JVM without waiting: the nodes of a cluster must all be up before any of
        them can elect a controller and accept a record."""
        self._process = ManagedProcess(
            self.name,
            self._jvm("kafka.Kafka", str(self._config_path), jvm_options=self._jvm_options),
            self.log_path,
            cwd=self.workdir,
        )

    def wait_ready(self) -> None:
        """Wait until a produce request through this node is acknowledged."""
        assert self._process is not None, "spawn() first"
        self._process.wait_until(
            self._accepts_produce, timeout=_READY_TIMEOUT, what="accepting produce requests"
        )

    def _jvm(self, main_class: str, *args: str, jvm_options: list[str] | None = None) -> list[str]:
        return [
            _java(),
            *(jvm_options or []),
            f"-Dlog4j2.configurationFile={self._libs.parent / _LOG_CONFIG.name}",
            "-cp",
            str(self._libs / "*"),
            main_class,
            *args,
        ]

    def _accepts_produce(self) -> bool:
        """Readiness as the bridge sees it: an open port or a metadata answer comes before the
        broker can append, so only an acknowledged record proves it is ready."""
        # Booleans, not the KafkaError objects: comparing a KafkaError with None leaves a stray
        # TypeError set inside confluent-kafka, which surfaces later as a SystemError.
        acked: list[bool] = []
        producer = Producer(
            {
                "bootstrap.servers": self.bootstrap_servers,
                "acks": "all",
                "message.timeout.ms": 5000,
                "reconnect.backoff.max.ms": 500,
                # Refused connections are expected while the JVM boots; the broker log tells
                # the story if it never gets ready.
                "log_level": 0,
            }
        )
        producer.produce(
            _PROBE_TOPIC, b"ready?", on_delivery=lambda err, _msg: acked.append(err is None)
        )
        producer.flush(10.0)
        return acked == [True]

    def _server_properties(self) -> str:
        settings = {
            "process.roles": "broker,controller",
            "node.id": str(self.node_id),
            "controller.quorum.voters": f"{self.node_id}@127.0.0.1:{self.controller_port}",
            "controller.listener.names": "CONTROLLER",
            "listeners": (
                f"PLAINTEXT://127.0.0.1:{self._port},CONTROLLER://127.0.0.1:{self.controller_port}"
            ),
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self._advertised_port}",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(self._data_dir),
            "num.partitions": "1",
            "auto.create.topics.enable": "true",
            "group.initial.rebalance.delay.ms": "0",
            # Records keep the feeds' own event times (the imitated exchanges stamp theirs
            # from a fixed epoch): no time-based retention, or the broker's check, every five
            # minutes, deletes whatever is stamped more than a week ago before a test reads it.
            "log.retention.ms": "-1",
            "offsets.topic.replication.factor": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            # After kill() the controller refuses the restarted broker until the dead
            # incarnation's session expires (9 s by default), so restart() would wait that long.
            "broker.heartbeat.interval.ms": "1000",
            "broker.session.timeout.ms": "4000",
            # Recovery after kill() reopens every partition, so the internal topics stay small.
            "offsets.topic.num.partitions": "5",
            "transaction.state.log.num.partitions": "5",
            "share.coordinator.state.topic.num.partitions": "5",
            **self._overrides,
        }
        return "".join(f"{key}={value}\n" for key, value in settings.items())


def _wait_for_leaders(admin: AdminClient, topic: str, partitions: int) -> None:
    deadline = time.monotonic() + _ADMIN_TIMEOUT
    while time.monotonic() < deadline:
        metadata = admin.list_topics(topic, timeout=_ADMIN_TIMEOUT).topics.get(topic)
        if metadata is not None and metadata.error is None:
            leaders = [p.leader for p in metadata.partitions.values() if p.error is None]
            if len(leaders) == partitions and min(leaders) >= 0:
                return
        time.sleep(0.1)
    raise StackError(f"topic {topic!r} has no leader for all {partitions} partitions")


def _partitions(consumer: Consumer, topic: str, deadline: float) -> list[int]:
    """The partitions of ``topic``, once it exists (the code under test may create it)."""
    while True:
        left = deadline - time.monotonic()
        metadata = consumer.list_topics(topic, timeout=max(0.1, min(left, 5.0)))
        found = metadata.topics.get(topic)
        if found is not None and found.error is None and found.partitions:
            return sorted(found.partitions)
        if left <= 0:
            raise AssertionError(f"read 0 records: topic {topic!r} does not exist")
        time.sleep(0.2)


def _read(
    consumer: Consumer, topic: str, expected: int, timeout: float, deadline: float
) -> list[Message]:
    messages: list[Message] = []
    while len(messages) < expected:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(
                f"read {len(messages)} of the {expected} expected records from topic "
                f"{topic!r} within {timeout:g} s"
            )
        batch = consumer.consume(expected - len(messages), timeout=min(left, 1.0))
        messages.extend(message for message in batch if _is_record(message))
    return messages


def _is_record(message: Message) -> bool:
    """Tell records from consumer events; a topic that does not exist yet is only a wait."""
    error = message.error()
    if error is None:
        return True
    if error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
        return False
    raise KafkaException(error)

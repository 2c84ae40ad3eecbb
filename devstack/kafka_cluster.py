"""A three-node Apache Kafka cluster (KRaft) on loopback, every connection through Toxiproxy.

The producer's guarantees (``acks=all`` with idempotence: nothing lost, nothing duplicated,
order kept per partition) only show when a partition leader moves, which takes replicas on
other brokers. Each node is broker and controller at once (a controller quorum of 3), with
small heaps and few threads: the three JVMs share two cores with the bridge under test.

Every connection between clients and brokers, and between the nodes themselves, crosses a
Toxiproxy proxy, so a test can cut one node off the network completely (:meth:`isolate`):

- each node advertises its broker listener through a proxy of its own; clients and the
  other nodes' replica fetchers reach it only there;
- each node reaches each other node's controller through a proxy for that one direction, at
  a controller listener of its own on that node (``_listener_settings``: the quorum's leader
  is reached where it advertises itself, not at ``controller.quorum.voters``), so an
  isolated node can neither vote, nor lead the quorum, nor send the heartbeats that keep
  it unfenced.

Topics default to replication factor 3 and ``min.insync.replicas=2``.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Final

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

# NewTopic's documented home; mypy sees it as a private import of confluent_kafka.cimpl.
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from .kafka import KafkaBroker, assemble_kafka, new_cluster_id
from .processes import StackError, free_port
from .toxiproxy import Proxy, Toxiproxy

log = logging.getLogger("ws2kafka.devstack")

NODES: Final = (1, 2, 3)
REPLICATION_FACTOR: Final = 3
MIN_INSYNC_REPLICAS: Final = 2
_ADMIN_TIMEOUT: Final = 30.0
_SYNC_TIMEOUT: Final = 120.0

#: Small JVMs: serial GC (no GC threads to compete for the two cores), a modest heap, and the
#: quick JIT only (C2 would spend more CPU compiling than the tests' few thousand records a
#: second need; a restarted node is ready sooner).
_JVM_OPTIONS: Final = ("-Xms128m", "-Xmx384m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1")
#: The helpers' own clients retry through node outages on purpose; their assertions and the
#: nodes' logs tell what happened, so librdkafka's line per refused connection is not printed.
_QUIET: Final = {"log_level": 0}

#: What every node sets over the single broker's settings (devstack.kafka).
_CLUSTER_SETTINGS: Final = {
    "default.replication.factor": str(REPLICATION_FACTOR),
    "min.insync.replicas": str(MIN_INSYNC_REPLICAS),
    "offsets.topic.replication.factor": str(REPLICATION_FACTOR),
    "transaction.state.log.replication.factor": str(REPLICATION_FACTOR),
    "transaction.state.log.min.isr": str(MIN_INSYNC_REPLICAS),
    "share.coordinator.state.topic.replication.factor": str(REPLICATION_FACTOR),
    "share.coordinator.state.topic.min.isr": str(MIN_INSYNC_REPLICAS),
    # Few threads per JVM: three of them share two cores.
    "num.network.threads": "2",
    "num.io.threads": "2",
    "num.replica.fetchers": "1",
    "background.threads": "2",
    "log.cleaner.threads": "1",
    "num.recovery.threads.per.data.dir": "1",
    # A killed or isolated node is fenced, and its partitions get new leaders, after 6 s
    # without a heartbeat (long enough not to fence a node that a loaded machine starves).
    "broker.heartbeat.interval.ms": "1000",
    "broker.session.timeout.ms": "6000",
    # A follower that stops fetching leaves the ISR after 10 s (default 30 s).
    "replica.lag.time.max.ms": "10000",
}


class KafkaCluster:
    """Three nodes, their proxies, and the fault and inspection helpers the tests use.

    Node ids are 1, 2 and 3. :attr:`bootstrap_servers` lists the nodes' proxies, so a client
    never holds a connection that :meth:`isolate` cannot cut.
    """

    def __init__(
        self,
        nodes: dict[int, KafkaBroker],
        broker_proxies: dict[int, Proxy],
        controller_proxies: dict[tuple[int, int], Proxy],
    ) -> None:
        self.nodes = nodes
        self._broker_proxies = broker_proxies
        self._controller_proxies = controller_proxies
        self.bootstrap_servers = ",".join(proxy.listen for proxy in broker_proxies.values())
        self._admin: AdminClient | None = None

    @classmethod
    @contextlib.contextmanager
    def start(cls, workdir: Path, toxiproxy: Toxiproxy) -> Iterator[KafkaCluster]:
        """Start three nodes with empty storage, ready for produce requests; on exit, kill
        them (their data is deleted, so a controlled shutdown would only cost time), delete
        their data and remove the proxies, whatever the body raised."""
        libs = assemble_kafka()
        ports = {node: free_port() for node in NODES}
        #: node's controller listener for peer: where peer's connections to node arrive
        controller_ports = {(node, peer): free_port() for node in NODES for peer in NODES}
        tag = uuid.uuid4().hex[:6]
        broker_proxies: dict[int, Proxy] = {}
        controller_proxies: dict[tuple[int, int], Proxy] = {}
        nodes: dict[int, KafkaBroker] = {}
        try:
            for node in NODES:
                broker_proxies[node] = toxiproxy.create_proxy(
                    f"kafka{node}-{tag}", f"127.0.0.1:{ports[node]}"
                )
                for peer in NODES:
                    if peer != node:
                        controller_proxies[node, peer] = toxiproxy.create_proxy(
                            f"controller{node}to{peer}-{tag}",
                            f"127.0.0.1:{controller_ports[peer, node]}",
                        )
            for node in NODES:
                nodes[node] = KafkaBroker(
                    workdir / f"node{node}",
                    libs,
                    ports[node],
                    advertised_port=broker_proxies[node].port,
                    node_id=node,
                    controller_port=controller_ports[node, node],
                    overrides={
                        **_CLUSTER_SETTINGS,
                        **_listener_settings(
                            node,
                            (ports[node], broker_proxies[node].port),
                            controller_ports,
                            controller_proxies,
                        ),
                    },
                    jvm_options=_JVM_OPTIONS,
                    name=f"kafka node {node}",
                )
            cluster = cls(nodes, broker_proxies, controller_proxies)
            cluster_id = new_cluster_id()
            started = time.monotonic()
            with ThreadPoolExecutor(len(nodes)) as pool:  # three JVMs of the storage tool
                list(pool.map(lambda broker: broker.format(cluster_id), nodes.values()))
            for broker in nodes.values():
                broker.spawn()
            for broker in nodes.values():
                broker.wait_ready()
            log.info(
                "Kafka cluster of %d nodes ready after %.1f s: %s",
                len(nodes),
                time.monotonic() - started,
                cluster.bootstrap_servers,
            )
            yield cluster
        finally:
            for broker in nodes.values():
                broker.kill()
                broker.remove_data()
            for proxy in (*broker_proxies.values(), *controller_proxies.values()):
                with contextlib.suppress(StackError):
                    proxy.delete()

    @property
    def log_paths(self) -> dict[str, Path]:
        return {broker.name: broker.log_path for broker in self.nodes.values()}

    def admin(self) -> AdminClient:
        """One admin client for the cluster's lifetime (it follows the nodes as they come and
        go, like any client)."""
        if self._admin is None:
            self._admin = AdminClient({"bootstrap.servers": self.bootstrap_servers, **_QUIET})
        return self._admin

    def create_topic(
        self, name: str, *, partitions: int = 3, config: dict[str, str] | None = None
    ) -> None:
        """Create a topic replicated to all three nodes and wait until it is fully in sync."""
        topic = NewTopic(
            name,
            num_partitions=partitions,
            replication_factor=REPLICATION_FACTOR,
            config=config or {},
        )
        futures = self.admin().create_topics(
            [topic], operation_timeout=_ADMIN_TIMEOUT, request_timeout=_ADMIN_TIMEOUT
        )
        futures[name].result(timeout=_ADMIN_TIMEOUT)
        self.wait_in_sync()

    def leader(self, topic: str, partition: int = 0) -> int:
        """The node that leads ``partition`` of ``topic`` now (waits while it has none)."""
        deadline = time.monotonic() + _ADMIN_TIMEOUT
        while True:
            metadata = self.admin().list_topics(topic, timeout=_ADMIN_TIMEOUT).topics[topic]
            if metadata.error is None and partition in metadata.partitions:
                leader: int = metadata.partitions[partition].leader
                if leader in self.nodes:
                    return leader
            if time.monotonic() > deadline:
                raise StackError(f"{topic}[{partition}] has no leader")
            time.sleep(0.2)

    def isr(self, topic: str, partition: int = 0) -> list[int]:
        """The in-sync replicas of ``partition``, as the cluster's metadata says now."""
        metadata = self.admin().list_topics(topic, timeout=_ADMIN_TIMEOUT).topics[topic]
        isrs: list[int] = metadata.partitions[partition].isrs
        return sorted(isrs)

    def kill(self, node: int) -> None:
        """SIGKILL a node: a crash, no controlled shutdown."""
        self.nodes[node].kill()

    def stop(self, node: int) -> None:
        """Controlled shutdown of a node (SIGTERM): it hands its leaderships over first."""
        self.nodes[node].stop()

    def restart(self, node: int) -> None:
        """Start a stopped or killed node again on its ports and data, and wait until every
        partition is in sync again (the condition a rolling restart waits for before it
        moves on to the next node)."""
        self.nodes[node].restart()
        self.wait_in_sync()

    def isolate(self, node: int) -> None:
        """Cut a node off from clients and from the other nodes: its open connections close
        and new ones are refused, until :meth:`heal`."""
        for proxy in self._proxies_of(node):
            proxy.disable()

    def heal(self, node: int) -> None:
        for proxy in self._proxies_of(node):
            proxy.enable()

    def restore(self) -> None:
        """Bring the cluster back to three healthy nodes after a test, whatever it did."""
        for node, broker in self.nodes.items():
            self.heal(node)
            if broker.pid is None:
                broker.restart()
        self.wait_in_sync()

    def wait_in_sync(self, timeout: float = _SYNC_TIMEOUT) -> None:
        """Wait until every partition of every topic has all its replicas in sync."""
        deadline = time.monotonic() + timeout
        lagging: list[str] = ["(no metadata yet)"]
        while time.monotonic() < deadline:
            with contextlib.suppress(KafkaException):
                metadata = self.admin().list_topics(timeout=_ADMIN_TIMEOUT)
                lagging = [
                    f"{name}[{partition.id}]"
                    for name, topic in metadata.topics.items()
                    for partition in topic.partitions.values()
                    if sorted(partition.isrs) != sorted(partition.replicas)
                    or partition.leader not in self.nodes
                ]
                if not lagging and len(metadata.brokers) == len(self.nodes):
                    return
            time.sleep(0.5)
        raise StackError(f"partitions not in sync after {timeout:.0f} s: {lagging[:10]}")

    def records(self, topic: str, timeout: float = 60.0) -> dict[int, list[bytes]]:
        """Every record value of ``topic``, partition by partition in offset order.

        Reads each partition from its start to the high watermark measured first, with an
        assigned consumer (no group, so no coordinator to wait for): an exact witness of what
        the cluster acknowledged.
        """
        consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap_servers,
                "group.id": f"ws2kafka-check-{uuid.uuid4().hex}",
                "enable.auto.commit": False,
                **_QUIET,
            }
        )
        try:
            partitions = consumer.list_topics(topic, timeout=_ADMIN_TIMEOUT).topics[topic]
            ends = {
                p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)[1]
                for p in partitions.partitions
            }
            consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
            values: dict[int, list[bytes]] = {p: [] for p in ends}
            deadline = time.monotonic() + timeout
            while any(len(values[p]) < end for p, end in ends.items()):
                if time.monotonic() > deadline:
                    counts = {p: len(v) for p, v in values.items()}
                    raise AssertionError(f"read {counts} of {ends} records of {topic!r}")
                for message in consumer.consume(10_000, timeout=1.0):
                    error = message.error()
                    if error is not None and error.code() != KafkaError._PARTITION_EOF:
                        raise KafkaException(error)
                    value = message.value()
                    if error is None and isinstance(value, bytes):
                        values[message.partition() or 0].append(value)
            return values
        finally:
            consumer.close()

    def _proxies_of(self, node: int) -> list[Proxy]:
        return [
            self._broker_proxies[node],
            *(proxy for pair, proxy in self._controller_proxies.items() if node in pair),
        ]


def _listener_settings(
    node: int,
    broker_ports: tuple[int, int],
    controller_ports: dict[tuple[int, int], int],
    controller_proxies: dict[tuple[int, int], Proxy],
) -> dict[str, str]:
    """The listeners and quorum of one node, with a controller listener per peer.
    ``broker_ports``: where its broker listens, and its proxy.

    A follower fetches from the controller quorum's leader at the address the leader
    advertises for the follower's first controller listener name, not at the one in its
    ``controller.quorum.voters``. With a single controller listener, every node would learn
    the leader's direct port and bypass the proxies, and an isolated active controller would
    go on leading (and fence the others). So node N has a listener ``CONTROLLER_M`` for each
    node M, advertised as the proxy from M to N (its own directly), and connects to the
    others by the name ``CONTROLLER_N``: every connection between two controllers, and from
    a broker to its controller, crosses the proxy of that one direction.
    """

    def address(source: int, target: int) -> str:
        """Where ``source`` reaches the controller of ``target``: its own directly, another's
        through the proxy of that direction."""
        if source == target:
            return f"127.0.0.1:{controller_ports[target, target]}"
        return f"127.0.0.1:{controller_proxies[source, target].port}"

    port, advertised_port = broker_ports
    names = [f"CONTROLLER_{peer}" for peer in (node, *(p for p in NODES if p != node))]
    listeners = [f"CONTROLLER_{peer}://127.0.0.1:{controller_ports[node, peer]}" for peer in NODES]
    advertised = [f"CONTROLLER_{peer}://{address(peer, node)}" for peer in NODES]
    return {
        "controller.quorum.voters": ",".join(f"{peer}@{address(node, peer)}" for peer in NODES),
        "controller.listener.names": ",".join(names),
        "listeners": ",".join([f"PLAINTEXT://127.0.0.1:{port}", *listeners]),
        "advertised.listeners": ",".join([f"PLAINTEXT://127.0.0.1:{advertised_port}", *advertised]),
        "listener.security.protocol.map": ",".join(
            ["PLAINTEXT:PLAINTEXT", *(f"{name}:PLAINTEXT" for name in names)]
        ),
    }

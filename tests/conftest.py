"""Session fixtures: the real Kafka broker, the real Kubernetes API server, Toxiproxy, and a
real node (kubelet + containerd) running the image built from this tree.

Both start lazily, the first time a test asks for them, and stop at the end of the session.
If one cannot start, every test that needs it fails with the reason and the log path: the
suite never skips a test because a component is missing.
"""

from __future__ import annotations

import secrets
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from ws2kafka.devstack import image
from ws2kafka.devstack.feeds import FeedThread
from ws2kafka.devstack.kafka import KafkaBroker
from ws2kafka.devstack.kafka_cluster import KafkaCluster
from ws2kafka.devstack.kafka_secured import ScramUser, SecuredKafka
from ws2kafka.devstack.kube import ControlPlane
from ws2kafka.devstack.node import Node
from ws2kafka.devstack.toxiproxy import Toxiproxy

REPO = Path(__file__).resolve().parents[1]

_LOG_PATHS_KEY = pytest.StashKey[dict[str, Path]]()


@pytest.fixture(scope="session")
def stack_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder for this session's broker and control-plane data and logs."""
    return tmp_path_factory.mktemp("stack")


@pytest.fixture(scope="session")
def kafka(stack_dir: Path, request: pytest.FixtureRequest) -> Iterator[KafkaBroker]:
    """A single-node KRaft broker on a free loopback port."""
    with KafkaBroker.start(stack_dir / "kafka") as broker:
        request.config.stash.setdefault(_LOG_PATHS_KEY, {})["kafka broker"] = broker.log_path
        yield broker


@pytest.fixture(scope="session")
def kafka_cluster(
    stack_dir: Path, toxiproxy: Toxiproxy, request: pytest.FixtureRequest
) -> Iterator[KafkaCluster]:
    """Three KRaft nodes behind Toxiproxy, started only if a test asks for them (failover
    tests); each test that uses it restores three healthy nodes before it ends."""
    with KafkaCluster.start(stack_dir / "kafka-cluster", toxiproxy) as cluster:
        logs = request.config.stash.setdefault(_LOG_PATHS_KEY, {})
        logs.update({f"kafka_cluster: {name}": path for name, path in cluster.log_paths.items()})
        yield cluster


@pytest.fixture(scope="session")
def kafka_secured(stack_dir: Path, request: pytest.FixtureRequest) -> Iterator[SecuredKafka]:
    """A broker with SASL_SSL (SCRAM-SHA-512), mutual TLS and ACLs, for the security tests;
    its SCRAM user's password is new every session."""
    user = ScramUser("ws2kafka-bridge", secrets.token_urlsafe(16))
    with SecuredKafka.start(stack_dir / "kafka-secured", user) as secured:
        request.config.stash.setdefault(_LOG_PATHS_KEY, {})["kafka_secured: broker"] = (
            secured.log_path
        )
        yield secured


@pytest.fixture(scope="session")
def kube(stack_dir: Path, request: pytest.FixtureRequest) -> Iterator[ControlPlane]:
    """etcd + kube-apiserver + kube-controller-manager on free loopback ports."""
    with ControlPlane.start(stack_dir / "kube") as control_plane:
        request.config.stash.setdefault(_LOG_PATHS_KEY, {}).update(control_plane.log_paths)
        yield control_plane


@pytest.fixture(scope="session")
def toxiproxy(stack_dir: Path, request: pytest.FixtureRequest) -> Iterator[Toxiproxy]:
    """One Toxiproxy server (network faults on loopback), built from the Go module proxy."""
    with Toxiproxy.start(stack_dir / "toxiproxy") as server:
        if server.log_path is not None:
            request.config.stash.setdefault(_LOG_PATHS_KEY, {})["toxiproxy"] = server.log_path
        yield server


@pytest.fixture(scope="session")
def node(stack_dir: Path, kube: ControlPlane, request: pytest.FixtureRequest) -> Iterator[Node]:
    """containerd + kubelet as node ``localhost`` of ``kube``, with the project's image built
    from this tree (podman) and imported. At the end its containers are killed, containerd
    and the kubelet stopped, and their mounts and cgroups removed, also after a failure."""
    name = image.build(REPO)
    with Node.start(stack_dir / "node", kube, name) as started:
        request.config.stash.setdefault(_LOG_PATHS_KEY, {}).update(started.log_paths)
        yield started


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the tests that use the node last: once it runs, kube-scheduler and the node
    lifecycle controller act on every Pod of the shared control plane, while the tests that
    play the kubelet (marking Pod objects Ready or CrashLoopBackOff) need their Pods left alone.
    """
    items.sort(key=lambda item: "node" in getattr(item, "fixturenames", ()))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Point a failing test that used a stack component at that component's log."""
    report = yield
    if report.failed:
        _add_log_paths(item, report)
    return report


def _add_log_paths(item: pytest.Item, report: pytest.TestReport) -> None:
    used = set(getattr(item, "fixturenames", ()))
    logs = item.config.stash.get(_LOG_PATHS_KEY, {})
    lines = [f"{name}: {path}" for name, path in logs.items() if _fixture_for(name) in used]
    if lines:
        report.sections.append(("stack logs", "\n".join(lines)))


def _fixture_for(log_name: str) -> str:
    for fixture in ("kafka_cluster", "kafka_secured", "kafka", "toxiproxy", "node"):
        if log_name.startswith(fixture):
            return fixture
    return "kube"


@pytest.fixture(params=["picows", "websockets"])
def client(request: pytest.FixtureRequest) -> str:
    """The WebSocket client (``connection.client``) a bridge test runs with: a test that takes
    this fixture runs once with picows, the default, and once with websockets, the reference
    implementation users can select."""
    name: str = request.param
    return name


@pytest.fixture
def feed() -> Iterator[FeedThread]:
    """A :class:`SequenceFeed` of 50 frames a second in a thread of its own, for tests that
    poll synchronously (kubectl) while it streams: the node's and the upgrade's."""
    served = FeedThread(rate=50)
    try:
        yield served
    finally:
        served.close()

"""``make demo``: the whole product on one machine, with data visibly flowing.

Starts Kafka and the Kubernetes API server from the local stack, the operator in inline mode,
and the demo trade feed; applies the CRD and ``examples/demo.yaml``; then, every few seconds,
shows ``kubectl get wssources`` and the newest records in Kafka. Ctrl-C stops everything.

``make demo-node`` runs the same demo the way a cluster does: the image built from this tree,
the chart installed with ``helm``, the operator and the bridge as pods of a real kubelet.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from confluent_kafka import Consumer

from ws2kafka.operator.crdgen import render_crd

from . import image, release
from .kafka import KafkaBroker
from .kube import ControlPlane
from .node import Node
from .processes import ManagedProcess, StackError
from .tradefeed import TradeFeed

#: The demo resource, from the repository's examples.
DEMO_MANIFEST = Path(__file__).resolve().parent.parent / "examples" / "demo.yaml"
REFRESH_SECONDS = 3.0


def demo_resource(bootstrap_servers: str, feed_url: str) -> dict[str, Any]:
    """examples/demo.yaml, pointed at this run's broker and feed."""
    if not DEMO_MANIFEST.exists():
        raise StackError(f"{DEMO_MANIFEST} not found: run the demo from a checkout")
    resource: dict[str, Any] = yaml.safe_load(DEMO_MANIFEST.read_text())
    resource["spec"]["kafka"]["bootstrapServers"] = bootstrap_servers
    resource["spec"]["url"] = feed_url
    return resource


def operator_process(kube: ControlPlane, workdir: Path) -> ManagedProcess:
    binary = Path(sys.executable).parent / "ws2kafka-operator"
    command = str(binary) if binary.exists() else shutil.which("ws2kafka-operator") or "false"
    process = ManagedProcess(
        "operator",
        [command, "run", "--mode", "inline", "--namespace", "default", "--metrics-port", "9401"],
        workdir / "operator.log",
        env={**kube.env(), "WS2KAFKA_OPERATOR_REPORT_INTERVAL_SECONDS": "2"},
    )
    process.wait_until(
        lambda: "operator starting" in process.log_path.read_text(), timeout=60, what="startup"
    )
    return process


@contextlib.contextmanager
def kafka_tail(bootstrap_servers: str, topic: str) -> Iterator[Consumer]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap_servers,
            "group.id": f"demo-{uuid.uuid4().hex[:6]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    try:
        yield consumer
    finally:
        consumer.close()


def drain(consumer: Consumer) -> list[Any]:
    """Every record available now (called in a worker thread)."""
    records: list[Any] = []
    while True:
        batch = consumer.consume(1000, 0.5)
        records += [m for m in batch if m.error() is None]
        if len(batch) < 1000:
            return records


async def show(kube: ControlPlane, consumer: Consumer, topic: str, until: float) -> int:
    """Print the resource table and the newest records until ``until``; returns the count."""
    total = 0
    while time.monotonic() < until:
        await asyncio.sleep(REFRESH_SECONDS)
        records = await asyncio.to_thread(drain, consumer)
        total += len(records)
        table = await asyncio.to_thread(kube.kubectl, "get", "wssources", "-o", "wide")
        print(f"\n$ kubectl get wssources -o wide\n{table.stdout.rstrip()}")
        print(f"records in Kafka topic {topic}: {total} (+{len(records)})")
        for record in records[-3:]:
            key = (record.key() or b"").decode()
            print(f"  key={key:<8} {(record.value() or b'').decode()}")
    return total


async def run_demo(workdir: Path, kafka_port: int | None, feed_port: int, duration: float) -> int:
    # the feed's port is bound first: a port that is taken fails at once, and the stack's
    # own free ports cannot take it meanwhile
    feed = await TradeFeed(port=feed_port).start()
    try:
        with (
            KafkaBroker.start(workdir / "kafka", port=kafka_port) as broker,
            ControlPlane.start(workdir / "kube") as kube,
        ):
            kube.kubectl("apply", "-f", "-", input=render_crd())
            kube.wait_established("crd/websocketsources.ws2kafka.dev")
            with operator_process(kube, workdir):
                resource = demo_resource(broker.bootstrap_servers, feed.url)
                topic = resource["spec"]["kafka"]["topic"]
                kube.kubectl("apply", "-f", "-", input=yaml.safe_dump(resource))
                print(f"\nws2kafka demo: Kafka {broker.bootstrap_servers}, feed {feed.url}")
                print(f"  export KUBECONFIG={kube.kubeconfig}   # to use kubectl yourself")
                print(f"  logs: {workdir}   (Ctrl-C stops everything)")
                with kafka_tail(broker.bootstrap_servers, topic) as consumer:
                    total = await show(kube, consumer, topic, time.monotonic() + duration)
    finally:
        await feed.stop()
    return total


async def run_node_demo(
    workdir: Path, kafka_port: int | None, feed_port: int, duration: float
) -> int:
    """The demo with the operator and its bridge as pods on the devstack's node."""
    feed = await TradeFeed(port=feed_port).start()  # first, as in :func:`run_demo`
    try:
        name = await asyncio.to_thread(image.build, DEMO_MANIFEST.parent.parent)
        with (
            KafkaBroker.start(workdir / "kafka", port=kafka_port) as broker,
            ControlPlane.start(workdir / "kube") as kube,
            Node.start(workdir / "node", kube, name) as node,
        ):
            await asyncio.to_thread(release.install, kube, node, "ws2kafka", "default")
            resource = demo_resource(broker.bootstrap_servers, feed.url)
            topic = resource["spec"]["kafka"]["topic"]
            kube.kubectl("apply", "-f", "-", input=yaml.safe_dump(resource))
            print(f"\nws2kafka demo on a node: image {name}, Kafka {broker.bootstrap_servers}")
            print(f"  export KUBECONFIG={kube.kubeconfig}   # kubectl get pods; kubectl logs ...")
            print(f"  logs: {workdir}   (Ctrl-C stops everything)")
            with kafka_tail(broker.bootstrap_servers, topic) as consumer:
                total = await show(kube, consumer, topic, time.monotonic() + duration)
    finally:
        await feed.stop()
    return total


def main(
    workdir: Path, kafka_port: int | None, feed_port: int, duration: float, *, on_node: bool
) -> int:
    """Run the demo; with a finite ``duration``, exit 1 if no record reached Kafka."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    demo = run_node_demo if on_node else run_demo
    try:
        total = asyncio.run(demo(workdir, kafka_port, feed_port, duration))
    except KeyboardInterrupt:
        print("\nstopped: the operator drained its bridges; the stack is shut down")
        return 0
    if total == 0:
        print("no record reached Kafka: see the logs above", file=sys.stderr)
        return 1
    return 0

"""ws2kafka operator scale: many WebSocketSources against a real API server, in both modes.

Run from the repository root:
``.venv/bin/python bench/operator_scale.py [--quick] [--pod-sources 200,1000,5000]
[--inline-sources 50,100,200] [--output FILE]``.

Everything is real: etcd, kube-apiserver (with an audit log, from which the operator's own
API requests are counted) and kube-controller-manager (devstack ControlPlane), the CRD from
``crds/``, the operator as its own process (``ws2kafka-operator run``, default settings), and
for inline mode a Kafka broker (devstack KafkaBroker).

Pod mode, for each count N: N sources (pointing at a closed port: no kubelet runs, so no
bridge does) are created from 8 threads, as a GitOps sync does. Measured from the first: every
Deployment existing and every source having a status written by the operator (its conditions
timer sets ``status.observedGeneration``); the operator's CPU while it only keeps the
conditions fresh; a restart of the operator with every source and Deployment in place (until
it resumed each: its peak RSS against the steady RSS before, and its API requests); then
``kubectl delete --all``; then the N sources created while no operator runs, and its catch-up
when it starts (the Deployments, the statuses, its API requests by verb and resource).

Inline mode: every bridge runs inside the operator process. A load server (its own process)
accepts one connection per source, waits until all are connected, then sends each connection
the same number of pre-encoded, sequence-numbered 200 B text frames flat out (as fast as that
bridge reads them: TCP pushes back), so the aggregate rate is the operator's capacity with N
bridges, not an offered load. Throughput is the sum of the topics' end offsets over the steady
window (10 % to 90 % of all records); afterwards every topic must hold each sequence number
exactly once and every source's status must show all its records produced.

The operator's CPU seconds, RSS and peak RSS (VmHWM) come from /proc/<pid>. Prints JSON on
stdout, progress on stderr; timings are reported, never asserted.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import multiprocessing
import os
import random
import selectors
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import yaml
from confluent_kafka import Consumer, TopicPartition
from kubernetes import client

from ws2kafka.bridge.config import Client, ConnectionSpec
from ws2kafka.devstack.harness import value_of
from ws2kafka.devstack.kafka import KAFKA_VERSION, KafkaBroker
from ws2kafka.devstack.kube import K8S_VERSION, ControlPlane
from ws2kafka.devstack.loadfeed import (
    accept_handshake,
    frame_batch,
    frames_per_batch,
    number_batch,
    sequence_of,
)
from ws2kafka.devstack.machine import cpu_seconds, describe, emit
from ws2kafka.devstack.processes import ManagedProcess
from ws2kafka.devstack.waiting import wait_until
from ws2kafka.operator.constants import GROUP, HANDLER_RECONCILE, PLURAL, VERSION

REPO = Path(__file__).resolve().parents[1]
CRD = REPO / "crds" / "websocketsource.yaml"
#: Threads creating sources at once.
CREATE_THREADS = 8
RECONCILE_RESUME = f"{HANDLER_RECONCILE}-resume"

#: (quick, full) sizes.
POD_SOURCES = (20, 200)
INLINE_SOURCES = (5, 50)
#: Per inline source; quick sends more to each of its few sources, for a steady window of seconds.
FRAMES_PER_SOURCE = (50_000, 30_000)
IDLE_SECONDS = (5.0, 20.0)
#: The longest any phase may take before the run is declared failed.
PHASE_TIMEOUT = 600.0
POLL_SECONDS = 0.5
#: A flat-out inline run that makes no progress for this long has stalled.
STALL_SECONDS = 60.0

FRAME_SIZE = 200


def say(line: str) -> None:
    print(f"operator_scale: {line}", file=sys.stderr, flush=True)


# -- the operator process, seen from /proc -------------------------------------------------------


@dataclass(frozen=True)
class Usage:
    """One look at a process: its CPU seconds so far, RSS, peak RSS and thread count."""

    at: float
    cpu_seconds: float
    rss_mb: float
    peak_rss_mb: float
    threads: int

    @classmethod
    def of(cls, pid: int) -> Usage:
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat.rsplit(")", 1)[1].split()
        ticks = int(fields[11]) + int(fields[12])  # utime, stime
        status = {
            line.split(":", 1)[0]: line.split(":", 1)[1].split()
            for line in Path(f"/proc/{pid}/status").read_text().splitlines()
            if ":" in line
        }
        return cls(
            at=time.monotonic(),
            cpu_seconds=ticks / os.sysconf("SC_CLK_TCK"),
            rss_mb=int(status["VmRSS"][0]) / 1024,
            peak_rss_mb=int(status["VmHWM"][0]) / 1024,
            threads=int(status["Threads"][0]),
        )

    def cores_since(self, earlier: Usage) -> float:
        """CPU used between two looks, in cores (1.0 = one core busy)."""
        return (self.cpu_seconds - earlier.cpu_seconds) / max(self.at - earlier.at, 1e-9)

    def brief(self) -> dict[str, Any]:
        return {
            "cpu_seconds": round(self.cpu_seconds, 2),
            "rss_mb": round(self.rss_mb, 1),
            "peak_rss_mb": round(self.peak_rss_mb, 1),
            "threads": self.threads,
        }


def operator_command() -> str:
    """The console script of this project, next to the running interpreter."""
    return str(Path(sys.executable).parent / "ws2kafka-operator")


@contextmanager
def running_operator(
    plane: ControlPlane, log_path: Path, mode: str, namespaces: list[str]
) -> Iterator[ManagedProcess]:
    """``ws2kafka-operator run`` with default settings, as a deployment would start it."""
    argv = [operator_command(), "run", "--mode", mode, "--metrics-port", "-1"]
    for namespace in namespaces:
        argv += ["--namespace", namespace]
    with ManagedProcess(f"operator-{mode}", argv, log_path, env=plane.env()) as process:
        process.wait_until(
            lambda: "operator starting" in process.log_path.read_text(),
            timeout=60,
            what="startup",
        )
        yield process


def log_levels(log_path: Path) -> dict[str, int]:
    """How many WARNING and ERROR lines the operator logged: retries and conflicts show here."""
    text = log_path.read_text(errors="replace")
    return {level: text.count(f" {level} ") for level in ("WARNING", "ERROR")}


def source_manifests(
    names: list[str], url: Callable[[str], str], bootstrap: str, **spec: Any
) -> str:
    """One multi-document YAML file of WebSocketSources, one per name (topic = name)."""
    return yaml.safe_dump_all(
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "WebSocketSource",
            "metadata": {"name": name},
            "spec": {
                "url": url(name),
                "kafka": {"bootstrapServers": bootstrap, "topic": name},
                **spec,
            },
        }
        for name in names
    )


class Cluster:
    """The reads the benchmark polls, through the Python client (a kubectl per poll would
    cost more CPU than the operator under test on a small machine)."""

    def __init__(self, plane: ControlPlane) -> None:
        api = plane.api_client()
        api.user_agent = BENCH_AGENT  # not counted as the operator's requests
        self._apps = client.AppsV1Api(api)
        self._core = client.CoreV1Api(api)
        self._custom = client.CustomObjectsApi(api)

    def deployments(self, namespace: str) -> int:
        # the raw response: turning 200 Deployments into client models costs a lot of CPU
        response: Any = self._apps.list_namespaced_deployment(namespace, _preload_content=False)
        return len(json.loads(response.data)["items"])

    def events(self, namespace: str) -> dict[str, int]:
        """Events in the namespace by reporting component (kopf: the operator's own)."""
        response: Any = self._core.list_namespaced_event(namespace, _preload_content=False)
        components = [
            event.get("reportingComponent") or event["source"].get("component", "?")
            for event in json.loads(response.data)["items"]
        ]
        return {name: components.count(name) for name in sorted(set(components))}

    def create_sources(self, namespace: str, names: list[str]) -> None:
        """Create one source per name (topic = name; a feed nothing listens on, so no bridge
        runs), from a few threads, as a GitOps tool syncing many at once does."""
        dead = "ws://127.0.0.1:9/feed"  # the discard port

        def create(name: str) -> None:
            body = {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "WebSocketSource",
                "metadata": {"name": name},
                "spec": {"url": dead, "kafka": {"bootstrapServers": "kafka:9092", "topic": name}},
            }
            self._custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)

        with ThreadPoolExecutor(CREATE_THREADS) as pool:
            list(pool.map(create, names))

    def sources(self, namespace: str) -> list[dict[str, Any]]:
        listed: Any = self._custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
        items: list[dict[str, Any]] = listed["items"]
        return items


# -- pod mode ----------------------------------------------------------------------------------


#: The operator's user agents: kopf's own client, and the kubernetes client's (its applies).
OPERATOR_AGENTS = ("kopf/", "OpenAPI-Generator/")
BENCH_AGENT = "ws2kafka-operator-scale"


def pod_mode(plane: ControlPlane, workdir: Path, count: int, idle_seconds: float) -> dict[str, Any]:
    """``count`` sources created at once for a running operator, its idle cost, a restart of
    the operator with every source and Deployment in place, their deletion; then the same
    sources created while no operator runs, and its catch-up when it starts."""
    cluster = Cluster(plane)
    namespace, warmup_namespace = f"scale-pod-{count}", f"scale-warmup-{count}"
    for created in (warmup_namespace, namespace):
        plane.kubectl("create", "namespace", created)
    names = [f"src-{index:04d}" for index in range(count)]
    watched = [warmup_namespace, namespace]
    log_path = workdir / f"operator-pod-{count}.log"
    with running_operator(plane, log_path, "pod", watched) as operator:
        # one source first, so the timed burst finds the operator watching, past its startup
        cluster.create_sources(warmup_namespace, ["warmup"])
        wait_until(lambda: cluster.deployments(warmup_namespace) == 1, 60, "the warm-up Deployment")
        before = Usage.of(operator.pid)
        say(f"pod mode: creating {count} sources")
        burst, created_seconds = _timed_creation(cluster, namespace, names)
        rolled_out = Usage.of(operator.pid)
        events = cluster.events(namespace)
        say(f"pod mode: {json.dumps(burst)}; idle for {idle_seconds:g} s")
        time.sleep(idle_seconds)
        idle = Usage.of(operator.pid)
        first_log = log_levels(operator.log_path)
    restart = _restart(plane, cluster, workdir, count, watched, idle)
    say(f"pod mode: restarted {json.dumps(restart)}")
    deletion = _delete_all(plane, cluster, namespace)
    say("pod mode: creating the sources with no operator running, then starting it")
    started = time.monotonic()
    cluster.create_sources(namespace, names)
    created_alone = time.monotonic() - started
    mark = plane.audit.mark() if plane.audit else 0
    started = time.monotonic()
    catch_up_log = workdir / f"operator-pod-{count}-catch-up.log"
    with running_operator(plane, catch_up_log, "pod", watched) as operator:
        catch_up = _await_rollout(cluster, namespace, count, started)
        caught_up = Usage.of(operator.pid)
        say(f"pod mode: caught up {json.dumps(catch_up)}")
        requests = plane.audit.requests(mark, OPERATOR_AGENTS) if plane.audit else {}
    # waited for, so no collection overlaps the next run
    deleted_again = _delete_all(plane, cluster, namespace)
    return {
        "sources": count,
        "burst": {
            "create_seconds": round(created_seconds, 2),
            **burst,
            "operator_cpu_seconds": round(rolled_out.cpu_seconds - before.cpu_seconds, 2),
            "events": events,
        },
        "idle": {
            "seconds": idle_seconds,
            "operator_cpu_cores": round(idle.cores_since(rolled_out), 3),
            "operator": idle.brief(),
        },
        "operator_after_warmup": before.brief(),
        "operator_after_burst": rolled_out.brief(),
        "operator_log": first_log,
        "restart": restart,
        "delete": deletion,
        "catch_up_from_nothing": {
            "create_seconds_without_operator": round(created_alone, 2),
            **{
                key.replace("to_", "operator_start_to_", 1): value
                for key, value in catch_up.items()
            },
            "operator": caught_up.brief(),
            "operator_api_requests": sum(requests.values()),
            "operator_api_requests_by_kind": requests,
            "delete": deleted_again,
        },
    }


def _timed_creation(
    cluster: Cluster, namespace: str, names: list[str]
) -> tuple[dict[str, float], float]:
    """Create the sources (in the background) and time the operator's rollout from the first."""
    created: list[float] = []
    with ThreadPoolExecutor(1) as pool:
        started = time.monotonic()
        creating = pool.submit(cluster.create_sources, namespace, names)
        creating.add_done_callback(lambda _: created.append(time.monotonic() - started))
        burst = _await_rollout(cluster, namespace, len(names), started)
        creating.result()
    burst["last_deployment_after_creation_returned_seconds"] = round(
        burst["to_all_deployments_seconds"] - created[0], 2
    )
    return burst, created[0]


def _restart(
    plane: ControlPlane,
    cluster: Cluster,
    workdir: Path,
    count: int,
    watched: list[str],
    steady: Usage,
) -> dict[str, Any]:
    """The operator started again with every source and Deployment in place (an upgrade, a
    crash): until it resumed each source, its peak memory against the steady state before
    the restart, and the API requests it made meanwhile."""
    mark = plane.audit.mark() if plane.audit else 0
    started = time.monotonic()
    with running_operator(
        plane, workdir / f"operator-pod-{count}-restart.log", "pod", watched
    ) as operator:
        resumed = f"Handler '{RECONCILE_RESUME}' succeeded."

        def all_resumed() -> bool:
            return operator.log_path.read_text(errors="replace").count(resumed) >= count + 1

        wait_until(all_resumed, PHASE_TIMEOUT, "every source resumed", interval=POLL_SECONDS)
        resumed_seconds = time.monotonic() - started
        usage = Usage.of(operator.pid)
        requests = plane.audit.requests(mark, OPERATOR_AGENTS) if plane.audit else {}
    return {
        "to_all_resumed_seconds": round(resumed_seconds, 2),
        "operator": usage.brief(),
        "peak_rss_over_steady_rss": round(usage.peak_rss_mb / steady.rss_mb, 2),
        "operator_api_requests": sum(requests.values()),
        "operator_api_requests_by_kind": requests,
    }


def _delete_all(plane: ControlPlane, cluster: Cluster, namespace: str) -> dict[str, float]:
    """``kubectl delete --all``: seconds until every source is gone and until the garbage
    collector removed every Deployment."""
    started = time.monotonic()
    plane.kubectl("-n", namespace, "delete", "websocketsources", "--all", "--wait=false")
    released = _seconds_until(lambda: not cluster.sources(namespace), started)
    collected = _seconds_until(lambda: cluster.deployments(namespace) == 0, started)
    say(f"pod mode: sources released in {released:.1f} s, Deployments gone {collected:.1f} s")
    return {
        "to_sources_released_seconds": round(released, 2),
        "to_deployments_gone_seconds": round(collected, 2),
    }


def _await_rollout(
    cluster: Cluster, namespace: str, count: int, started: float
) -> dict[str, float]:
    """Seconds from the apply to the first, half and all Deployments, and to all statuses."""
    milestones: dict[str, float] = {}
    deadline = started + PHASE_TIMEOUT
    while "to_all_statuses_seconds" not in milestones or "to_all_deployments_seconds" not in (
        milestones
    ):
        if time.monotonic() > deadline:
            raise AssertionError(f"pod mode did not finish within {PHASE_TIMEOUT} s: {milestones}")
        deployments = cluster.deployments(namespace)
        statuses = sum(
            "observedGeneration" in source.get("status", {})
            for source in cluster.sources(namespace)
        )
        elapsed = round(time.monotonic() - started, 2)
        for key, reached in (
            ("to_first_deployment_seconds", deployments >= 1),
            ("to_half_deployments_seconds", deployments >= count / 2),
            ("to_all_deployments_seconds", deployments >= count),
            ("to_all_statuses_seconds", statuses >= count),
        ):
            if reached:
                milestones.setdefault(key, elapsed)
        time.sleep(POLL_SECONDS)
    return milestones


def _seconds_until(done: Callable[[], bool], started: float) -> float:
    wait_until(done, PHASE_TIMEOUT, "the deletion", interval=POLL_SECONDS)
    return time.monotonic() - started


# -- the inline load server (a process of its own) -----------------------------------------------


class Feed:
    """One connection's sending state: the next batch is numbered in its own template copy,
    so a partly sent batch is never overwritten."""

    def __init__(self, sock: socket.socket, template: bytearray, total: int) -> None:
        self.sock = sock
        self.template = bytearray(template)
        self.total = total
        self.numbered = 0
        self.pending = memoryview(b"")

    def next_batch(self, slot: int, per_batch: int) -> None:
        batch = min(per_batch, self.total - self.numbered)
        number_batch(self.template, slot, FRAME_SIZE, self.numbered + 1, batch, time.time_ns())
        self.numbered += batch
        self.pending = memoryview(self.template)[: batch * slot]


def serve_feeds(pipe: Connection, connections: int, frames: int) -> None:
    """Accept ``connections`` clients; on "go", send each ``frames`` frames flat out.

    Sends the port, then "connected", then its own accounting (send window, CPU seconds);
    keeps the connections open until told to stop, so no bridge sees its feed end early.
    """
    listener = socket.create_server(("127.0.0.1", 0))
    pipe.send(listener.getsockname()[1])
    socks = []
    for _ in range(connections):
        sock, _ = listener.accept()
        accept_handshake(sock)
        socks.append(sock)
    listener.close()
    pipe.send("connected")
    pipe.recv()
    per_batch = frames_per_batch(FRAME_SIZE)
    template, slot = frame_batch(FRAME_SIZE, per_batch, random.Random(FRAME_SIZE))
    selector = selectors.DefaultSelector()
    for sock in socks:
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_WRITE, Feed(sock, template, frames))
    cpu = cpu_seconds()
    first = time.time()
    while selector.get_map():
        for key, _ in selector.select():
            feed: Feed = key.data
            if not feed.pending:
                if feed.numbered == feed.total:
                    selector.unregister(feed.sock)
                    continue
                feed.next_batch(slot, per_batch)
            try:
                feed.pending = feed.pending[feed.sock.send(feed.pending) :]
            except BlockingIOError:
                continue
    pipe.send({"first_send": first, "last_send": time.time(), "cpu_seconds": cpu_seconds() - cpu})
    pipe.recv()
    for sock in socks:
        sock.close()


# -- inline mode --------------------------------------------------------------------------------


def inline_mode(
    plane: ControlPlane, broker: KafkaBroker, workdir: Path, count: int, frames: int, client: str
) -> dict[str, Any]:
    """``count`` bridges in the operator, each fed ``frames`` frames flat out."""
    cluster = Cluster(plane)
    namespace = f"scale-inline-{count}"
    plane.kubectl("create", "namespace", namespace)
    names = [f"feed-{count}-{index:04d}" for index in range(count)]
    for name in names:
        broker.create_topic(name)
    spawn = multiprocessing.get_context("spawn")
    pipe, theirs = spawn.Pipe()
    server = spawn.Process(target=serve_feeds, args=(theirs, count, frames), daemon=True)
    server.start()
    theirs.close()
    try:
        port = pipe.recv()
        # pings off: the load server reads nothing, so it would never answer them
        manifests = source_manifests(
            names,
            lambda name: f"ws://127.0.0.1:{port}/{name}",
            broker.bootstrap_servers,
            connection={"pingIntervalSeconds": 0, "client": client},
        )
        log_path = workdir / f"operator-inline-{count}.log"
        with running_operator(plane, log_path, "inline", [namespace]) as operator:
            say(f"inline mode: applying {count} sources")
            started = time.monotonic()
            plane.kubectl("-n", namespace, "apply", "-f", "-", input=manifests)
            if not pipe.poll(PHASE_TIMEOUT):
                raise AssertionError(f"not all {count} bridges connected; see {operator.log_path}")
            pipe.recv()
            connected = time.monotonic() - started
            idle = Usage.of(operator.pid)
            say(f"inline mode: {count} bridges connected after {connected:.1f} s; sending")
            pipe.send("go")
            samples = _watch_offsets(broker, names, count * frames, operator)
            end = Usage.of(operator.pid)
            served: dict[str, Any] = pipe.recv()
            statuses = _await_statuses(cluster, namespace, frames)
            exact = all(_exactly_once(broker, name, frames) for name in names)
            logged = log_levels(operator.log_path)  # before the feeds close on purpose
            pipe.send("stop")
            server.join(30)
            result = {
                "sources": count,
                "frame_bytes": FRAME_SIZE,
                "frames_per_source": frames,
                "client": client,
                "apply_to_all_connected_seconds": round(connected, 2),
                **_throughput(samples, count * frames),
                "server_cpu_share": round(
                    served["cpu_seconds"] / max(served["last_send"] - served["first_send"], 1e-9),
                    3,
                ),
                "exact_once": exact,
                "statuses_show_all_produced": statuses,
                "operator_connected_idle": idle.brief(),
                "operator_end": end.brief(),
                "operator_log": logged,
            }
    finally:
        if server.is_alive():
            server.kill()
    say(f"inline mode: {json.dumps(_brief(result))}")
    return result


@dataclass(frozen=True)
class Sample:
    records: int
    usage: Usage


def _watch_offsets(
    broker: KafkaBroker, topics: list[str], expected: int, operator: ManagedProcess
) -> list[Sample]:
    """The sum of the topics' end offsets and the operator's usage, twice a second, until all
    ``expected`` records are in Kafka."""
    consumer = Consumer({"bootstrap.servers": broker.bootstrap_servers, "group.id": "scale"})
    samples = [Sample(0, Usage.of(operator.pid))]
    progressed = time.monotonic()
    try:
        while samples[-1].records < expected:
            time.sleep(POLL_SECONDS)
            records = sum(
                consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)[1]
                for topic in topics
            )
            if records > samples[-1].records:
                progressed = time.monotonic()
            elif time.monotonic() - progressed > STALL_SECONDS:
                raise AssertionError(f"no progress for {STALL_SECONDS} s at {records} records")
            samples.append(Sample(records, Usage.of(operator.pid)))
    finally:
        consumer.close()
    return samples


def _throughput(samples: list[Sample], expected: int) -> dict[str, Any]:
    """Rate and operator usage over the steady window: 10 % to 90 % of the records."""
    begin = next(s for s in samples if s.records >= 0.1 * expected)
    end = next(s for s in samples if s.records >= 0.9 * expected)
    window = end.usage.at - begin.usage.at
    first = next(s for s in samples if s.records > 0)
    return {
        "records": samples[-1].records,
        "msgs_per_s": round((end.records - begin.records) / window),
        "steady_window_seconds": round(window, 1),
        "first_to_last_record_seconds": round(samples[-1].usage.at - first.usage.at, 1),
        "operator_cpu_cores": round(end.usage.cores_since(begin.usage), 3),
        "operator_cpu_s_per_million": round(
            (end.usage.cpu_seconds - begin.usage.cpu_seconds) / (end.records - begin.records) * 1e6,
            2,
        ),
        "operator_peak_rss_mb": round(samples[-1].usage.peak_rss_mb, 1),
    }


def _await_statuses(cluster: Cluster, namespace: str, frames: int) -> bool:
    """Whether every source's status reports all its frames produced within a minute."""

    def all_reported() -> bool:
        return all(
            source.get("status", {}).get("connection", {}).get("messagesProduced") == frames
            for source in cluster.sources(namespace)
        )

    try:
        wait_until(all_reported, 60, "every status at its frame count", interval=1.0)
    except AssertionError:
        return False
    return True


def _exactly_once(broker: KafkaBroker, topic: str, frames: int) -> bool:
    """The topic holds 1..frames, each once, and nothing else."""
    messages = broker.consume_all(topic, expected=frames, timeout=120)
    seen = [sequence_of(value_of(message)) for message in messages]
    consumer = Consumer({"bootstrap.servers": broker.bootstrap_servers, "group.id": "scale"})
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    finally:
        consumer.close()
    return high - low == frames and sorted(seen) == list(range(1, frames + 1))


def _brief(result: dict[str, Any]) -> dict[str, Any]:
    keys = ("sources", "msgs_per_s", "operator_cpu_cores", "operator_peak_rss_mb", "exact_once")
    return {key: result[key] for key in keys}


# -- the run ------------------------------------------------------------------------------------


def versions() -> dict[str, str]:
    import confluent_kafka

    return {
        "ws2kafka": importlib.metadata.version("ws2kafka"),
        "kopf": importlib.metadata.version("kopf"),
        "kubernetes": K8S_VERSION,
        "kafka": KAFKA_VERSION,
        "confluent_kafka": importlib.metadata.version("confluent-kafka"),
        "librdkafka": confluent_kafka.libversion()[0],
    }


def counts(text: str) -> list[int]:
    """``200,1000,5000`` -> ``[200, 1000, 5000]``."""
    try:
        found = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of counts: {text!r}") from None
    if any(count < 0 for count in found):
        raise argparse.ArgumentTypeError("counts are 0 or more")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Writes nothing but --output; the control plane and broker live in a temporary "
        "folder and are stopped at the end.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"{POD_SOURCES[0]} pod-mode and {INLINE_SOURCES[0]} inline sources, "
        f"{FRAMES_PER_SOURCE[0]} frames each (about a minute); "
        f"default {POD_SOURCES[1]} and {INLINE_SOURCES[1]}, {FRAMES_PER_SOURCE[1]} frames each",
    )
    parser.add_argument(
        "--pod-sources",
        type=counts,
        help="pod-mode source counts, comma-separated, each a run of its own "
        "(e.g. 200,1000,5000; 0: no pod-mode run)",
    )
    parser.add_argument(
        "--inline-sources",
        type=counts,
        help="inline source counts, comma-separated (e.g. 50,100,200; 0: no inline run)",
    )
    parser.add_argument(
        "--client",
        choices=[client.value for client in Client],
        default=ConnectionSpec.model_fields["client"].default.value,
        help="the inline bridges' connection.client (default: the bridge's default, %(default)s)",
    )
    parser.add_argument("--output", type=Path, help="write the JSON here too")
    args = parser.parse_args()
    size = 0 if args.quick else 1
    pod_counts = args.pod_sources if args.pod_sources is not None else [POD_SOURCES[size]]
    inline_counts = (
        args.inline_sources if args.inline_sources is not None else [INLINE_SOURCES[size]]
    )
    report: dict[str, Any] = {
        "machine": describe(),
        "versions": versions(),
        "command": " ".join(sys.argv),
    }
    with tempfile.TemporaryDirectory(prefix="ws2kafka-scale-") as folder:
        workdir = Path(folder)
        say("starting the control plane (with an audit log: the operator's requests counted)")
        with ControlPlane.start(workdir / "kube", audit=True) as plane:
            plane.kubectl("apply", "-f", str(CRD))
            plane.kubectl("wait", "--for=condition=Established", f"crd/{PLURAL}.{GROUP}")
            report["pod_mode"] = [
                pod_mode(plane, workdir, count, IDLE_SECONDS[size]) for count in pod_counts if count
            ]
            if any(inline_counts):
                say("starting the Kafka broker")
                with KafkaBroker.start(workdir / "kafka") as broker:
                    report["inline_mode"] = [
                        inline_mode(
                            plane, broker, workdir, count, FRAMES_PER_SOURCE[size], args.client
                        )
                        for count in inline_counts
                        if count
                    ]
    emit(report, args.output)


if __name__ == "__main__":
    main()

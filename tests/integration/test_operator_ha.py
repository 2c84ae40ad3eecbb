"""Several operator replicas against the real API server: one leads on a Lease, another
takes over when it is killed, and one cut off from the API server stops acting.

The operators run as processes in pod mode with the default election timings (lease 10 s,
renew deadline 7 s, retry 2 s). Each test has its own namespace for its sources and its own
Lease. The takeover times are printed (``-s``) for ``docs/performance.md``.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from ws2kafka.devstack.feeds import SequenceFeed
from ws2kafka.devstack.kafka import KafkaBroker
from ws2kafka.devstack.kube import ControlPlane
from ws2kafka.devstack.processes import ManagedProcess
from ws2kafka.devstack.toxiproxy import Proxy, Toxiproxy
from ws2kafka.devstack.waiting import until, wait_until
from ws2kafka.operator import constants as c
from ws2kafka.operator.__main__ import LOST_LEADERSHIP

pytestmark = pytest.mark.k8s

CRD = Path(__file__).resolve().parents[2] / "crds" / "websocketsource.yaml"

SOURCES = 30
LEASE = "ws2kafka-operator"
LEASE_DURATION, RENEW_DEADLINE, RETRY_PERIOD = 10.0, 7.0, 2.0


@pytest.fixture(scope="module")
def crd(kube: ControlPlane) -> None:
    kube.kubectl("apply", "-f", str(CRD))
    kube.wait_established("crd/websocketsources.ws2kafka.dev")


def command(name: str) -> str:
    """A console script of this project, next to the running interpreter."""
    path = Path(sys.executable).parent / name
    return str(path) if path.exists() else shutil.which(name) or name


def condition(source: dict[str, Any], kind: str) -> dict[str, Any]:
    for cond in source.get("status", {}).get("conditions", []):
        if cond["type"] == kind:
            return dict(cond)
    return {}


def start_replica(
    kube: ControlPlane, workdir: Path, identity: str, watched: str, lease_ns: str,
    kubeconfig: Path | None = None, mode: str = "pod",
) -> ManagedProcess:  # fmt: skip
    """An operator replica with leader election, watching one namespace."""
    return ManagedProcess(
        identity,
        [command("ws2kafka-operator"), "run", "--mode", mode, "--namespace", watched,
         "--leader-election", "--metrics-port", "-1"],
        workdir / f"{identity}.log",
        env={
            "KUBECONFIG": str(kubeconfig or kube.kubeconfig),
            "WS2KAFKA_OPERATOR_CONDITION_INTERVAL_SECONDS": "1",
            "WS2KAFKA_OPERATOR_HEARTBEAT_TIMEOUT_SECONDS": "4",
            "WS2KAFKA_OPERATOR_LEASE_NAMESPACE": lease_ns,
            "WS2KAFKA_OPERATOR_LEASE_IDENTITY": identity,
        },
    )  # fmt: skip


def new_namespace(kube: ControlPlane, prefix: str) -> str:
    namespace = f"{prefix}-{uuid.uuid4().hex[:8]}"
    kube.kubectl("create", "namespace", namespace)
    return namespace


def holder(kube: ControlPlane, namespace: str) -> str:
    """The Lease's holder ("" when there is no Lease or nobody holds it)."""
    query = "jsonpath={.spec.holderIdentity}"
    found = kube.kubectl("-n", namespace, "get", "lease", LEASE, "-o", query, check=False)
    return found.stdout.strip()


def sources_manifest(count: int) -> str:
    return yaml.safe_dump_all(
        {
            "apiVersion": "ws2kafka.dev/v1alpha1",
            "kind": "WebSocketSource",
            "metadata": {"name": f"s{i:03d}"},
            "spec": {
                "url": f"ws://feed:1/{i}",
                "kafka": {"bootstrapServers": "kafka:9092", "topic": f"t{i}"},
            },
        }
        for i in range(count)
    )


def deployments(kube: ControlPlane, namespace: str) -> dict[str, str]:
    """Every Deployment in the namespace, by name, with its spec hash."""
    found = kube.get_json(namespace, "deployments")["items"]
    names = [d["metadata"]["name"] for d in found]
    assert len(names) == len(set(names))
    return {
        d["metadata"]["name"]: d["spec"]["template"]["metadata"]["annotations"].get(
            c.ANNOTATION_SPEC_HASH, ""
        )
        for d in found
    }


def sources(kube: ControlPlane, namespace: str) -> dict[str, dict[str, Any]]:
    return {item["metadata"]["name"]: item for item in kube.get_json(namespace, "wss")["items"]}


def conditions_of(source: dict[str, Any]) -> dict[str, tuple[str, str, str]]:
    """Each condition's status, reason and last transition: what a flap would change."""
    return {
        cond["type"]: (cond["status"], cond["reason"], cond["lastTransitionTime"])
        for cond in source.get("status", {}).get("conditions", [])
    }


def settled_conditions(kube: ControlPlane, namespace: str) -> dict[str, Any]:
    """Every source's conditions, once they stayed the same for a few seconds."""
    last: dict[str, Any] = {}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        now = {name: conditions_of(found) for name, found in sources(kube, namespace).items()}
        if now == last:
            return now
        last = now
        time.sleep(3)
    raise AssertionError(f"the conditions in {namespace} did not settle: {last}")


def change_topic(kube: ControlPlane, namespace: str, name: str) -> None:
    patch = json.dumps({"spec": {"kafka": {"topic": f"{name}-moved"}}})
    kube.kubectl("-n", namespace, "patch", "wss", name, "--type=merge", "-p", patch)


def all_reconciled(kube: ControlPlane, namespace: str, count: int) -> bool:
    found = sources(kube, namespace)
    return len(deployments(kube, namespace)) == count and all(
        condition(source, "Ready").get("reason") for source in found.values()
    )


def log_of(process: ManagedProcess) -> str:
    return process.log_path.read_text()


def test_a_standby_takes_over_from_a_killed_leader(
    kube: ControlPlane, crd: None, tmp_path: Path
) -> None:
    lease_ns, ns = new_namespace(kube, "ha-ops"), new_namespace(kube, "ha-src")
    with (
        start_replica(kube, tmp_path, "op-a", ns, lease_ns) as first,
        start_replica(kube, tmp_path, "op-b", ns, lease_ns) as second,
    ):
        wait_until(lambda: holder(kube, lease_ns) in ("op-a", "op-b"), 30, "a leader")
        leader, standby = (first, second) if holder(kube, lease_ns) == "op-a" else (second, first)
        kube.kubectl("-n", ns, "apply", "-f", "-", input=sources_manifest(SOURCES))
        wait_until(lambda: all_reconciled(kube, ns, SOURCES), 90, "every source reconciled")
        assert "stands by" in log_of(standby)
        assert "acquired Lease" not in log_of(standby)
        before = settled_conditions(kube, ns)
        hashes = deployments(kube, ns)

        leader.kill()  # a crash: the Lease is not released
        killed = time.monotonic()
        for i in range(5):  # spec changes while nobody leads
            change_topic(kube, ns, f"s{i:03d}")
        wait_until(lambda: holder(kube, lease_ns) == standby.name, 40, "a takeover")
        took_lease = time.monotonic() - killed

        def changed(names: list[str]) -> bool:
            now = deployments(kube, ns)
            return all(now[f"{n}-bridge"] != hashes[f"{n}-bridge"] for n in names)

        waiting = [f"s{i:03d}" for i in range(5)]
        wait_until(lambda: changed(waiting), 40, "the waiting spec changes applied")
        took_acting = time.monotonic() - killed
        change_topic(kube, ns, "s005")  # a change after the takeover
        wait_until(lambda: changed(["s005"]), 20, "a spec change applied by the new leader")
        print(
            f"\ntakeover after SIGKILL with {SOURCES} sources: Lease {took_lease:.1f} s, "
            f"spec changes applied {took_acting:.1f} s"
        )
        assert took_acting < 15 + RETRY_PERIOD

        time.sleep(3)
        after = sources(kube, ns)
        untouched = [f"s{i:03d}" for i in range(6, SOURCES)]
        assert {n: conditions_of(after[n]) for n in untouched} == {
            n: before[n] for n in untouched
        }, "conditions do not flap through a takeover"
        assert set(deployments(kube, ns)) == {f"s{i:03d}-bridge" for i in range(SOURCES)}
        assert holder(kube, lease_ns) == standby.name
        events = kube.get_json(lease_ns, "events")["items"]
        assert {e["message"] for e in events if e["reason"] == "LeaderElection"} == {
            f"{first.name} became leader",
            f"{second.name} became leader",
        }


def test_a_leader_cut_off_from_the_api_server_stops_and_the_standby_takes_over(
    kube: ControlPlane, crd: None, toxiproxy: Toxiproxy, tmp_path: Path
) -> None:
    lease_ns, ns = new_namespace(kube, "ha-ops"), new_namespace(kube, "ha-src")
    proxied = tmp_path / "through-proxy.kubeconfig"
    proxy = proxied_kubeconfig(kube, toxiproxy, proxied)
    try:
        with start_replica(kube, tmp_path, "op-cut", ns, lease_ns, proxied) as cut:
            wait_until(lambda: holder(kube, lease_ns) == "op-cut", 30, "op-cut leads")
            kube.kubectl("-n", ns, "apply", "-f", "-", input=sources_manifest(3))
            wait_until(lambda: all_reconciled(kube, ns, 3), 60, "the sources reconciled")
            with start_replica(kube, tmp_path, "op-other", ns, lease_ns) as other:
                wait_until(lambda: "stands by" in log_of(other), 30, "op-other stands by")
                partition(proxy)
                partitioned = time.monotonic()
                wait_until(lambda: "lost Lease" in log_of(cut), 30, "op-cut gives up")
                stopped = time.monotonic() - partitioned
                wait_until(lambda: holder(kube, lease_ns) == "op-other", 30, "op-other leads")
                took = time.monotonic() - partitioned
                print(
                    f"\npartitioned leader stopped after {stopped:.1f} s, taken over {took:.1f} s"
                )
                # the renew deadline counts from its last renewal, before the partition
                assert stopped <= RENEW_DEADLINE + 1.0
                assert took >= stopped
                wait_until(lambda: not cut.running(), 60, "op-cut exits")
                assert cut.exit_code == LOST_LEADERSHIP
                hashes = deployments(kube, ns)
                change_topic(kube, ns, "s000")
                wait_until(
                    lambda: deployments(kube, ns)["s000-bridge"] != hashes["s000-bridge"],
                    30,
                    "op-other applies a spec change",
                )
                assert "acquired Lease" in log_of(other)
    finally:
        proxy.delete()


def proxied_kubeconfig(kube: ControlPlane, toxiproxy: Toxiproxy, path: Path) -> Proxy:
    """A proxy to the API server, and a kubeconfig at ``path`` that goes through it."""
    upstream = kube.server.removeprefix("https://")
    proxy = toxiproxy.create_proxy(f"apiserver-{uuid.uuid4().hex[:6]}", upstream)
    config = yaml.safe_load(kube.kubeconfig.read_text())
    config["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{proxy.port}"
    path.write_text(yaml.safe_dump(config))
    return proxy


def partition(proxy: Proxy) -> None:
    """Nothing gets through any more, and nothing is closed: calls hang until their timeout."""
    for stream in ("upstream", "downstream"):
        proxy.add_toxic("timeout", stream=stream, timeout=0)


async def test_an_inline_leader_cut_off_stops_streaming_before_the_standby_starts(
    kube: ControlPlane, crd: None, kafka: KafkaBroker, toxiproxy: Toxiproxy, tmp_path: Path
) -> None:
    lease_ns, ns = new_namespace(kube, "ha-ops"), new_namespace(kube, "ha-inline")
    topic = f"ha-{uuid.uuid4().hex[:8]}"
    kafka.create_topic(topic)
    proxy = proxied_kubeconfig(kube, toxiproxy, tmp_path / "through-proxy.kubeconfig")
    source: dict[str, Any] = {
        "apiVersion": "ws2kafka.dev/v1alpha1",
        "kind": "WebSocketSource",
        "metadata": {"name": "feed"},
        "spec": {
            "kafka": {"bootstrapServers": kafka.bootstrap_servers, "topic": topic},
            "reconnect": {"initialDelaySeconds": 0.2, "maxDelaySeconds": 1},
        },
    }
    try:
        async with SequenceFeed(rate=200) as feed:
            source["spec"]["url"] = feed.url
            with start_replica(
                kube, tmp_path, "in-cut", ns, lease_ns, tmp_path / "through-proxy.kubeconfig",
                mode="inline",
            ) as cut:  # fmt: skip
                await until(lambda: holder(kube, lease_ns) == "in-cut", 30, "in-cut leads")
                kube.kubectl("-n", ns, "apply", "-f", "-", input=yaml.safe_dump(source))
                await until(lambda: feed.sent >= 200, 60, "in-cut's bridge streams")
                with start_replica(
                    kube, tmp_path, "in-other", ns, lease_ns, mode="inline"
                ) as other:
                    await until(lambda: "stands by" in log_of(other), 30, "in-other stands by")
                    partition(proxy)
                    partitioned = time.monotonic()

                    def both_open() -> bool:
                        open_now = [conn for conn in feed.connections if conn.close_code is None]
                        assert len(open_now) <= 1, "two replicas stream the same source"
                        return len(feed.connections) >= 2 and bool(open_now)

                    # nothing blocking here: the feed runs on this loop and is watched closely
                    await until(both_open, 40, "the standby's bridge connects", interval=0.02)
                    took = time.monotonic() - partitioned
                    assert feed.connections[0].close_code == 1001  # the cut-off bridge's goodbye
                    assert holder(kube, lease_ns) == "in-other"
                    print(f"\ninline: partitioned leader's bridge replaced after {took:.1f} s")
                    assert "lost Lease" in log_of(cut)
                    before = feed.connections[1].sent
                    await until(lambda: feed.connections[1].sent > before + 100, 30, "streaming")
    finally:
        proxy.delete()

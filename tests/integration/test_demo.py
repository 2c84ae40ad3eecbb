"""README command 1: the demo brings up the whole stack and data visibly arrives in Kafka."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from ws2kafka.devstack.processes import free_port

pytestmark = [pytest.mark.k8s, pytest.mark.kafka]


def run_demo(workdir: Path, *options: str, timeout: float) -> str:
    devstack = Path(sys.executable).parent / "ws2kafka-devstack"
    result = subprocess.run(
        [
            str(devstack),
            "demo",
            "--workdir",
            str(workdir),
            "--kafka-port",
            "0",
            "--feed-port",
            str(free_port()),
            *options,
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    return result.stdout


def test_demo_shows_a_ready_source_and_records_arriving(tmp_path: Path) -> None:
    out = run_demo(tmp_path, "--duration", "20", timeout=240)
    assert_data_flows(out)


@pytest.mark.timeout(900)
def test_demo_node_runs_the_operator_and_the_bridge_as_pods(tmp_path: Path) -> None:
    """``make demo-node``: the same demo, from the built image, on the devstack's kubelet."""
    out = run_demo(tmp_path, "--node", "--duration", "30", timeout=840)
    assert "ws2kafka demo on a node: image localhost/ws2kafka:dev-" in out
    assert_data_flows(out)


def assert_data_flows(out: str) -> None:
    assert "$ kubectl get wssources -o wide" in out
    row = r"demo-trades\s+ws://\S+\s+demo-trades\s+Connected\s+True\s+1/1\s+Producing\s+\d+"
    assert re.search(row, out), out
    counts = [int(n) for n in re.findall(r"records in Kafka topic demo-trades: (\d+)", out)]
    assert len(counts) >= 3, out
    assert counts[-1] > counts[0], out  # growing while we watch
    assert re.search(r'key=(BTC|ETH|SOL)-USD\s+\{"type":"trade"', out), out

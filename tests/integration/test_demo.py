"""README command 1: the demo brings up the whole stack and data visibly arrives in Kafka."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from ws2kafka.devstack.processes import free_port

pytestmark = [pytest.mark.k8s, pytest.mark.kafka]


def test_demo_shows_a_ready_source_and_records_arriving(tmp_path: Path) -> None:
    devstack = Path(sys.executable).parent / "ws2kafka-devstack"
    result = subprocess.run(
        [
            str(devstack),
            "demo",
            "--workdir",
            str(tmp_path),
            "--kafka-port",
            "0",
            "--feed-port",
            str(free_port()),
            "--duration",
            "20",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    out = result.stdout
    assert "$ kubectl get wssources -o wide" in out
    assert re.search(
        r"demo-trades\s+ws://\S+\s+demo-trades\s+Connected\s+True\s+Producing\s+\d+", out
    ), out
    counts = [int(n) for n in re.findall(r"records in Kafka topic demo-trades: (\d+)", out)]
    assert len(counts) >= 3, out
    assert counts[-1] > counts[0], out  # growing while we watch
    assert re.search(r'key=(BTC|ETH|SOL)-USD\s+\{"type":"trade"', out), out

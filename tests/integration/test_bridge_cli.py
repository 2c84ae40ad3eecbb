"""The ``ws2kafka-bridge`` process itself: signals, exit codes, the final summary, and its
``/metrics``, ``/healthz`` and ``/readyz`` endpoint, against feeds served by the test."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request

from ws2kafka.bridge.service import ExitCode
from ws2kafka.bridge.stats import LATENCY_BUCKETS
from ws2kafka.devstack.feeds import SequenceFeed
from ws2kafka.devstack.harness import new_topic, record_count, seqs
from ws2kafka.devstack.kafka import KafkaBroker
from ws2kafka.devstack.processes import free_port
from ws2kafka.devstack.waiting import until

BRIDGE = Path(sys.executable).with_name("ws2kafka-bridge")
SUMMARY = re.compile(
    r"final summary: received=(\d+) produced=(\d+) failed=(\d+) dropped=(\d+) rejected=(\d+) "
    r"undelivered=(\d+) reconnects=(\d+)"
)
SERVING = re.compile(r"serving /metrics, /healthz and /readyz on 127\.0\.0\.1:(\d+)")


@dataclass
class BridgeProcess:
    """A running ``ws2kafka-bridge`` and the file its stderr goes to."""

    process: asyncio.subprocess.Process
    stderr: Path

    def log(self) -> str:
        return self.stderr.read_text()

    def metrics_port(self) -> int | None:
        match = SERVING.search(self.log())
        return int(match.group(1)) if match else None

    def summary(self) -> tuple[int, ...]:
        match = SUMMARY.search(self.log())
        assert match is not None, f"no final summary in:\n{self.log()}"
        return tuple(int(group) for group in match.groups())

    async def exit_code(self, timeout: float = 30) -> int:
        return await asyncio.wait_for(self.process.wait(), timeout)


@asynccontextmanager
async def bridge_process(
    tmp_path: Path, name: str, config: dict[str, Any], *extra_args: str
) -> AsyncIterator[BridgeProcess]:
    """Start the CLI on a config file (JSON is YAML); on exit, kill it if it still runs."""
    config_file = tmp_path / f"{name}.yaml"
    config_file.write_text(json.dumps(config))
    stderr = tmp_path / f"{name}.stderr"
    with stderr.open("ab") as sink:
        process = await asyncio.create_subprocess_exec(
            str(BRIDGE),
            "--config", str(config_file),
            "--name", name,
            "--metrics-port", "0",
            "--metrics-host", "127.0.0.1",
            *extra_args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=sink,
            cwd=tmp_path,
        )  # fmt: skip
    try:
        yield BridgeProcess(process, stderr)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def cli_config(bootstrap: str, url: str, topic: str, **fields: Any) -> dict[str, Any]:
    return {
        "url": url,
        "kafka": {"bootstrapServers": bootstrap, "topic": topic},
        "reconnect": {"initialDelaySeconds": 0.05, "maxDelaySeconds": 0.2},
        "drainTimeoutSeconds": 20,
        **fields,
    }


@pytest.mark.kafka
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_a_signal_under_load_drains_everything_and_exits_0(
    kafka: KafkaBroker, tmp_path: Path, signum: signal.Signals
) -> None:
    topic = new_topic(kafka)
    async with (
        SequenceFeed(pad=200) as feed,
        bridge_process(
            tmp_path, "loaded", cli_config(kafka.bootstrap_servers, feed.url, topic)
        ) as bridge,
    ):
        await until(lambda: feed.sent >= 20_000, 30, "20,000 frames sent")
        bridge.process.send_signal(signum)
        assert await bridge.exit_code() == ExitCode.OK
    received, produced, failed, dropped, rejected, undelivered, _ = bridge.summary()
    assert received >= 20_000  # what was sent before the signal was read, then delivered
    assert (produced, failed, dropped, rejected, undelivered) == (received, 0, 0, 0, 0)
    assert seqs(kafka, topic, received) == list(range(1, received + 1))
    assert record_count(kafka, topic) == received


@pytest.mark.kafka
async def test_sigkill_loses_at_most_the_unacknowledged_and_the_next_run_reports_the_gap(
    kafka: KafkaBroker, tmp_path: Path
) -> None:
    topic = new_topic(kafka)
    state = tmp_path / "run-state.json"
    async with SequenceFeed(rate=2000) as feed:
        config = cli_config(
            kafka.bootstrap_servers, feed.url, topic, buffer={"maxMessages": 500},
            gaps={"record": True},
        )  # fmt: skip
        async with bridge_process(tmp_path, "killed", config, "--state-file", str(state)) as run:
            await until(lambda: feed.sent >= 3000 and state.exists(), 30, "a loaded first run")
            run.process.kill()  # no drain, no goodbye
            await run.exit_code()
        trace = json.loads(state.read_text())
        sent_by_first_run = feed.sent
        async with bridge_process(tmp_path, "killed", config, "--state-file", str(state)) as run:
            await until(lambda: "UncleanExit" in run.log(), 30, "the crash reported as a gap")
            await until(lambda: feed.sent >= sent_by_first_run + 500, 30, "the second run")
            run.process.send_signal(signal.SIGTERM)
            assert await run.exit_code() == ExitCode.OK
    assert trace["clean"] is False
    assert json.loads(state.read_text())["clean"] is True
    messages = kafka.consume_all(topic, expected=record_count(kafka, topic))
    gaps = [m for m in messages if ("ws2kafka.control", b"gap") in (m.headers() or [])]
    assert len(gaps) == 1
    gap = json.loads(gaps[0].value() or b"{}")
    assert gap["error"] == "UncleanExit"
    assert gap["oldConnectionId"] == trace["connectionId"]
    data = [json.loads(m.value() or b"{}")["seq"] for m in messages if m not in gaps]
    assert len(data) == len(set(data))  # nothing twice
    first = [seq for seq in data if seq <= sent_by_first_run]
    assert first == list(range(1, len(first) + 1))  # the loss is at the end of the first run
    # only what Kafka had not acknowledged can be lost: at most the buffer (500 records)
    assert len(first) >= trace["received"] - 500


async def test_giving_up_exits_3_and_says_so(tmp_path: Path) -> None:
    dead = f"ws://127.0.0.1:{free_port()}/feed"
    config = cli_config(
        f"127.0.0.1:{free_port()}",
        dead,
        "t",
        reconnect={"initialDelaySeconds": 0.05, "maxDelaySeconds": 0.1, "maxAttempts": 2},
    )
    async with bridge_process(tmp_path, "hopeless", config) as bridge:
        assert await bridge.exit_code() == ExitCode.GAVE_UP
    log = bridge.log()
    assert "hopeless: gave up after 2 failed attempts; last error: ConnectionRefusedError" in log
    assert bridge.summary() == (0, 0, 0, 0, 0, 0, 0)


async def test_a_bridge_told_to_stay_after_giving_up_serves_not_ready_until_stopped(
    tmp_path: Path,
) -> None:
    """What a bridge pod with ``spec.autoRestart`` does: the operator, not the kubelet,
    decides when it starts again, so the process stays, alive and not ready."""
    dead = f"ws://127.0.0.1:{free_port()}/feed"
    reconnect = {"initialDelaySeconds": 0.05, "maxDelaySeconds": 0.1, "maxAttempts": 2}
    config = cli_config(f"127.0.0.1:{free_port()}", dead, "t", reconnect=reconnect)
    async with bridge_process(tmp_path, "staying", config, "--stay-after-giving-up") as bridge:
        await until(lambda: "staying until stopped" in bridge.log(), 30, "the give-up")
        port = bridge.metrics_port()
        assert port is not None
        assert bridge.process.returncode is None
        assert await http_get(port, "/healthz") == (200, "ok\n")
        assert await http_get(port, "/readyz") == (503, "not ready\n")
        bridge.process.send_signal(signal.SIGTERM)
        assert await bridge.exit_code() == ExitCode.GAVE_UP
    assert bridge.summary() == (0, 0, 0, 0, 0, 0, 0)


async def http_get(port: int, path: str) -> tuple[int, str]:
    """One HTTP/1.0 request on a fresh connection: the status code and the body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET {path} HTTP/1.0\r\nHost: bridge\r\n\r\n".encode())
        response = await reader.read()
    finally:
        writer.close()
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode()


async def wait_for_status(port: int, path: str, status: int, what: str) -> None:
    for _ in range(500):
        if (await http_get(port, path))[0] == status:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def samples(text: str, source: str) -> dict[str, float]:
    """Every sample of ``source``, keyed ``name{label=value,...}`` without the source label."""
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.labels.get("source") != source:
                continue
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()) if k != "source")
            found[f"{sample.name}{{{labels}}}"] = sample.value
    return found


@pytest.mark.kafka
async def test_metrics_healthz_and_readyz_follow_the_connection(
    kafka: KafkaBroker, tmp_path: Path
) -> None:
    topic = new_topic(kafka)
    handshake = asyncio.Event()

    async def hold_handshake(connection: ServerConnection, request: Request) -> None:
        await handshake.wait()

    feed = await SequenceFeed(count=100, process_request=hold_handshake).start()
    config = cli_config(kafka.bootstrap_servers, feed.url, topic)
    try:
        async with bridge_process(tmp_path, "observed", config) as bridge:
            await until(lambda: bridge.metrics_port() is not None, 30, "the metrics port")
            port = bridge.metrics_port()
            assert port is not None
            assert await http_get(port, "/readyz") == (503, "not ready\n")  # connecting
            assert await http_get(port, "/healthz") == (200, "ok\n")
            assert (await http_get(port, "/favicon.ico"))[0] == 404

            handshake.set()
            await wait_for_status(port, "/readyz", 200, "ready once connected")
            for _ in range(500):
                metrics = samples((await http_get(port, "/metrics"))[1], "observed")
                if metrics["ws2kafka_records_produced_total{}"] == 100:
                    break
                await asyncio.sleep(0.02)
            assert metrics["ws2kafka_frames_received_total{}"] == feed.sent == 100
            assert metrics["ws2kafka_records_produced_total{}"] == 100
            assert metrics["ws2kafka_connection_state{state=Connected}"] == 1
            assert metrics["ws2kafka_connection_state{state=Backoff}"] == 0
            assert metrics["ws2kafka_buffer_records{}"] == 0
            buckets = [
                v
                for k, v in metrics.items()
                if k.startswith("ws2kafka_produce_latency_seconds_bucket")
            ]
            assert len(buckets) == len(LATENCY_BUCKETS) + 1
            assert buckets == sorted(buckets)  # cumulative
            assert buckets[-1] == metrics["ws2kafka_produce_latency_seconds_count{}"] == 100
            assert metrics["ws2kafka_produce_latency_seconds_sum{}"] > 0

            await feed.stop()  # the feed dies: 1001, then every reconnect is refused
            await wait_for_status(port, "/readyz", 503, "not ready without a feed")
            metrics = samples((await http_get(port, "/metrics"))[1], "observed")
            assert metrics["ws2kafka_close_codes_total{code=1001}"] == 1
            assert metrics["ws2kafka_connection_state{state=Connected}"] == 0

            bridge.process.send_signal(signal.SIGTERM)
            assert await bridge.exit_code() == ExitCode.OK
    finally:
        await feed.stop()
    assert bridge.summary()[:2] == (100, 100)
    assert seqs(kafka, topic, 100) == list(range(1, 101))

"""ws2kafka benchmarks: the bridge against the machine's ceilings, in one run, on one feed.

Run from the repository root: ``.venv/bin/python bench/run.py [--quick] [--output FILE]``.

A load server (its own process) sends pre-encoded, sequence-numbered text frames that carry
the server's send time; each measurement runs in a fresh process, so CPU time and peak RSS are
its own. Measured per frame size: the raw WebSocket ceiling (picows core API, and websockets,
receive and discard), the raw produce ceiling (confluent-kafka producing the bridge's own
records from memory), and the bridge end to end with each client, checked afterwards with a
consumer (every sequence number exactly once). Then latency at fixed rates, server send time to
the broker's LogAppendTime, with confluent-kafka producing at the same rate as the baseline
(Kafka's own share of the latency). Prints JSON; timings are compared with the in-run
ceilings, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import random
import socket
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ws2kafka.devstack.loadfeed import (
    accept_handshake,
    answer_close,
    frame_batch,
    frame_payload,
    frames_per_batch,
    number_batch,
    random_pad,
    sent_at_ms,
    sequence_of,
)
from ws2kafka.devstack.machine import cpu_seconds, describe, emit

if TYPE_CHECKING:
    from ws2kafka.bridge.framing import Record

SIZES = (200, 1024, 16384)
#: Frames per throughput run: (quick, full), per frame size.
COUNTS = {200: (100_000, 300_000), 1024: (60_000, 200_000), 16384: (8_000, 30_000)}
RATES = (1_000, 10_000)
VARIANTS = ("picows", "websockets", "produce", "bridge-websockets", "bridge-picows")
CEILING_WS = "picows"
#: The produce ceiling's first record, sent before timing starts (not a frame).
WARM_UP = b"warm-up"
CEILING_PRODUCE = "produce"

# -- the load server (a process of its own) ----------------------------------------------------


def serve_feed(pipe: Connection, size: int, count: int, rate: int | None) -> None:
    """Accept one client, send ``count`` frames (at ``rate``/s or flat out), then answer its close.

    Sends the port first, the server's own accounting last (send window, CPU seconds).
    """
    listener = socket.create_server(("127.0.0.1", 0))
    pipe.send(listener.getsockname()[1])
    sock, _ = listener.accept()
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    accept_handshake(sock)
    per_batch = frames_per_batch(size)
    template, slot = frame_batch(size, per_batch, random.Random(size))
    view = memoryview(template)
    cpu_before = cpu_seconds()
    first = time.time()
    sent = 0
    while sent < count:
        if rate is None:
            batch = min(per_batch, count - sent)
        else:
            due = int((time.time() - first) * rate) - sent
            if due <= 0:
                time.sleep(0.0005)
                continue
            batch = min(per_batch, due, count - sent)
        number_batch(template, slot, size, sent + 1, batch, time.time_ns())
        sent += batch
        sock.sendall(view[: batch * slot])
    last = time.time()
    cpu = cpu_seconds() - cpu_before
    answer_close(sock, timeout=60)
    pipe.send({"first_send": first, "last_send": last, "cpu_seconds": cpu})


# -- measurements (each in a fresh process) ----------------------------------------------------


@dataclass(frozen=True)
class Job:
    variant: str
    size: int
    count: int
    url: str
    bootstrap: str
    topic: str
    rate: int | None = None
    """Messages/s for a latency run; None: flat out."""
    properties: tuple[tuple[str, str], ...] = ()
    """librdkafka properties over the bridge's defaults (``--property``), for every variant."""


def _rss_bytes(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise LookupError(field)


def measure(job: Job, results: Connection) -> None:
    """Child process entry: run one measurement, send its numbers back."""
    outcome = asyncio.run(_measure(job))
    outcome["peak_rss_bytes"] = _rss_bytes("VmHWM")
    results.send(outcome)


async def _measure(job: Job) -> dict[str, Any]:
    if job.variant == "picows":
        return await _receive_picows(job)
    if job.variant == "websockets":
        return await _receive_websockets(job)
    if job.variant == "produce":
        return await asyncio.to_thread(_produce, job)
    return await _bridge(job)


async def _receive_picows(job: Job) -> dict[str, Any]:
    from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

    done: asyncio.Future[float] = asyncio.get_running_loop().create_future()

    class Discard(WSListener):
        received = 0

        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            if frame.msg_type is WSMsgType.TEXT:
                self.received += 1
                if self.received == job.count:
                    done.set_result(time.time())

    cpu = cpu_seconds()
    transport, _ = await ws_connect(Discard, job.url, max_frame_size=1 << 20)
    finished = await done
    cpu = cpu_seconds() - cpu
    transport.send_close()
    await transport.wait_disconnected()
    return {"done": finished, "cpu_seconds": cpu, "received": job.count}


async def _receive_websockets(job: Job) -> dict[str, Any]:
    from websockets.asyncio.client import connect

    from ws2kafka.bridge.source import build_connect_kwargs

    kwargs = build_connect_kwargs(_spec(job))
    cpu = cpu_seconds()
    async with connect(job.url, **kwargs) as ws:
        recv = ws.recv
        for _ in range(job.count):
            await recv()
        finished = time.time()
        cpu = cpu_seconds() - cpu
    return {"done": finished, "cpu_seconds": cpu, "received": job.count}


def _produce(job: Job) -> dict[str, Any]:
    """The bridge's own records (same builder, headers, producer config), from memory."""
    from confluent_kafka import Producer

    from ws2kafka.bridge.framing import RecordBuilder
    from ws2kafka.bridge.sink import producer_config

    spec = _spec(job)
    builder = RecordBuilder(
        spec.kafka, source="bench", connection_id="c0", inflate=spec.connection.inflate
    )
    rng = random.Random(job.size)
    pads = [random_pad(job.size, rng) for _ in range(frames_per_batch(job.size))]

    def make(seq: int) -> Record:
        sent_ns = time.time_ns()
        payload = frame_payload(job.size, seq, sent_ns, pads[seq % len(pads)])
        return builder.build(payload, False, sent_ns // 1000, seq)

    # flat out: every record built before timing; at a rate: built when due, stamped then
    records: Iterable[Record] = (
        [make(seq) for seq in range(1, job.count + 1)]
        if job.rate is None
        else _paced(make, job.count, job.rate)
    )
    acked = [0]

    def on_delivery(err: Any, _msg: Any) -> None:
        if err is None:
            acked[0] += 1

    config = producer_config(
        spec.kafka,
        window=spec.buffer.max_messages,
        max_bytes=spec.buffer.max_bytes,
        client_id="bench",
    )
    config["on_delivery"] = on_delivery
    producer = Producer(config)
    producer.produce(spec.kafka.topic, WARM_UP)  # the idempotence PID, before timing
    producer.flush(30)
    acked[0] = 0
    polling = threading.Event()

    def poll_forever() -> None:  # as the bridge's sink: deliveries served on their own thread
        while not polling.is_set():
            producer.poll(0.05)

    poller = threading.Thread(target=poll_forever)
    poller.start()
    cpu = cpu_seconds()
    started = time.time()
    produce = producer.produce
    topic = spec.kafka.topic
    for record in records:
        while True:
            try:
                produce(
                    topic,
                    record.value,
                    record.key,
                    timestamp=record.timestamp_ms,
                    headers=record.headers,
                )
                break
            except BufferError:
                time.sleep(0.0005)
    polling.set()
    poller.join()
    producer.flush(120)
    finished = time.time()
    cpu = cpu_seconds() - cpu
    return {"done": finished, "started": started, "cpu_seconds": cpu, "received": acked[0]}


def _paced(record: Callable[[int], Record], count: int, rate: int) -> Iterator[Record]:
    """``count`` records at ``rate``/s, each made when it is due (sleeping between)."""
    start = time.perf_counter()
    for seq in range(1, count + 1):
        delay = start + (seq - 1) / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        yield record(seq)


async def _bridge(job: Job) -> dict[str, Any]:
    from ws2kafka.bridge.picows_client import open_picows
    from ws2kafka.bridge.service import Bridge
    from ws2kafka.bridge.source import Opener, open_connection

    opener: Opener = open_picows if job.variant == "bridge-picows" else open_connection
    bridge = Bridge(_spec(job), name="bench", opener=opener)
    cpu = cpu_seconds()
    task = asyncio.create_task(bridge.run())
    paused_samples = 0
    rss_samples: list[int] = []
    while bridge.stats.delivered < job.count and not task.done():
        await asyncio.sleep(0.005)
        paused_samples += bridge.paused()
        if len(rss_samples) < 100_000:
            rss_samples.append(_rss_bytes("VmRSS"))
    finished = time.time()
    cpu = cpu_seconds() - cpu
    bridge.stop()
    summary = await task
    half = len(rss_samples) // 2
    return {
        "done": finished,
        "cpu_seconds": cpu,
        "received": summary.received,
        "delivered": summary.delivered,
        "undelivered": summary.undelivered,
        "paused_fraction": paused_samples / max(1, len(rss_samples)),
        "rss_peak_first_half": max(rss_samples[:half], default=0),
        "rss_peak_second_half": max(rss_samples[half:], default=0),
    }


def _spec(job: Job) -> Any:
    from ws2kafka.devstack.harness import bridge_spec

    return bridge_spec(
        job.bootstrap,
        job.url or "ws://127.0.0.1:1",
        job.topic,
        kafka={"properties": dict(job.properties)},
    )


# -- orchestration ------------------------------------------------------------------------------


class Bench:
    def __init__(
        self,
        bootstrap: str,
        create_topic: Any,
        consume: Any,
        properties: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self.bootstrap = bootstrap
        self.properties = properties
        self._create_topic = create_topic
        self._consume = consume
        self._spawn = multiprocessing.get_context("spawn")

    def run(self, variant: str, size: int, count: int, rate: int | None = None) -> dict[str, Any]:
        topic = f"bench-{uuid.uuid4().hex[:10]}"
        self._create_topic(topic, {"message.timestamp.type": "LogAppendTime"})
        server = None
        server_pipe, theirs = self._spawn.Pipe()
        url = ""
        if variant != "produce":
            server = self._spawn.Process(target=serve_feed, args=(theirs, size, count, rate))
            server.start()
            theirs.close()
            url = f"ws://127.0.0.1:{server_pipe.recv()}/"
        results, child_end = self._spawn.Pipe()
        job = Job(variant, size, count, url, self.bootstrap, topic, rate, self.properties)
        client = self._spawn.Process(target=measure, args=(job, child_end))
        client.start()
        child_end.close()
        try:
            outcome: dict[str, Any] = results.recv()  # EOFError if the measurement crashed
            if server is not None:
                if not server_pipe.poll(30):
                    raise RuntimeError("the load server did not report")
                served: dict[str, Any] = server_pipe.recv()
        finally:
            client.join(60)
            if server is not None:
                server.join(1)
                if server.is_alive():
                    server.kill()
        if server is not None:
            started = served["first_send"]
            send_window = served["last_send"] - started
            outcome["server_cpu_share"] = served["cpu_seconds"] / max(send_window, 1e-9)
        else:
            started = outcome["started"]
        elapsed = outcome["done"] - started
        outcome.update(
            variant=variant,
            size=size,
            count=count,
            rate=rate,
            seconds=elapsed,
            msgs_per_s=count / elapsed,
            mb_per_s=count * size / elapsed / 1e6,
            cpu_s_per_million=outcome["cpu_seconds"] / count * 1e6,
        )
        if variant.startswith("bridge") or rate is not None:
            warm_up = 1 if variant == CEILING_PRODUCE else 0
            outcome.update(self._verify(topic, count, warm_up, rate))
        return outcome

    def _verify(self, topic: str, count: int, warm_up: int, rate: int | None) -> dict[str, Any]:
        """Every sequence number exactly once; at a ``rate``, send-to-append percentiles.

        Latency leaves out the first second of frames: it measures the steady state, not the
        producer's start (topic metadata and the idempotent producer's id, once per process).
        """
        messages = [m for m in self._consume(topic, count + warm_up) if m.value() != WARM_UP]
        seen = [sequence_of(m.value()) for m in messages]
        exact = len(seen) == count and set(seen) == set(range(1, count + 1))
        check: dict[str, Any] = {"records": len(seen), "exact_once": exact}
        if rate is not None:
            delays = sorted(
                m.timestamp()[1] - sent_at_ms(m.value())
                for m, seq in zip(messages, seen, strict=True)
                if seq > rate
            )
            check["latency_ms"] = {
                name: delays[min(len(delays) - 1, int(q * len(delays)))]
                for name, q in (("p50", 0.5), ("p99", 0.99), ("p999", 0.999))
            }
        return check


def summarize(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    table: list[dict[str, Any]] = []
    for size in SIZES:
        rows = {}
        by_variant = {
            variant: [
                r for r in runs if r["variant"] == variant and r["size"] == size and not r["rate"]
            ]
            for variant in VARIANTS
        }
        for variant, mine in by_variant.items():
            if not mine:
                continue
            rates = [r["msgs_per_s"] for r in mine]
            rows[variant] = {
                "size": size,
                "variant": variant,
                "runs": len(mine),
                "msgs_per_s": statistics.median(rates),
                "msgs_per_s_min": min(rates),
                "msgs_per_s_max": max(rates),
                "mb_per_s": statistics.median(r["mb_per_s"] for r in mine),
                "cpu_s_per_million": statistics.median(r["cpu_s_per_million"] for r in mine),
                "peak_rss_mb": max(r["peak_rss_bytes"] for r in mine) / 2**20,
                "server_cpu_share": max(r.get("server_cpu_share", 0.0) for r in mine),
                "exact_once": all(r.get("exact_once", True) for r in mine),
            }
        if CEILING_WS in rows and CEILING_PRODUCE in rows:  # both measured (see --variants)
            ceiling = min(rows[CEILING_WS]["msgs_per_s"], rows[CEILING_PRODUCE]["msgs_per_s"])
            for row in rows.values():
                row["ratio_to_min_ceiling"] = row["msgs_per_s"] / ceiling
                row["paired_ratio_median"] = paired_ratio(
                    by_variant[row["variant"]], by_variant[CEILING_WS], by_variant[CEILING_PRODUCE]
                )
        table.extend(rows.values())
    return table


def paired_ratio(
    mine: list[dict[str, Any]],
    ceiling_ws: list[dict[str, Any]],
    ceiling_produce: list[dict[str, Any]],
) -> float:
    """The median over repeats of each run's ratio to the ceilings measured in the same repeat.

    The broker's speed drifts during a run (the ceilings vary by a third between repeats);
    a run compared with its neighbours in time is steadier than medians compared with medians.
    """
    ratios: list[float] = [
        run["msgs_per_s"] / min(ws["msgs_per_s"], produce["msgs_per_s"])
        for run, ws, produce in zip(mine, ceiling_ws, ceiling_produce, strict=True)
    ]
    return statistics.median(ratios)


def summarize_latency(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per rate and variant: the median of each percentile over the repeated runs."""
    rows = []
    for rate in sorted({r["rate"] for r in runs if r["rate"]}):
        for variant in VARIANTS:
            mine = [r for r in runs if r["rate"] == rate and r["variant"] == variant]
            if not mine:
                continue
            row: dict[str, Any] = {"rate": rate, "variant": variant, "runs": len(mine)}
            for quantile in ("p50", "p99", "p999"):
                row[quantile] = statistics.median(r["latency_ms"][quantile] for r in mine)
            row["p99_min"] = min(r["latency_ms"]["p99"] for r in mine)
            row["p99_max"] = max(r["latency_ms"]["p99"] for r in mine)
            row["exact_once"] = all(r["exact_once"] for r in mine)
            rows.append(row)
    return rows


def plot(table: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5))
    for variant in VARIANTS:
        rows = [row for row in table if row["variant"] == variant]
        if not rows:
            continue
        axes.errorbar(
            [row["size"] for row in rows],
            [row["msgs_per_s"] for row in rows],
            yerr=[
                [row["msgs_per_s"] - row["msgs_per_s_min"] for row in rows],
                [row["msgs_per_s_max"] - row["msgs_per_s"] for row in rows],
            ],
            marker="o",
            capsize=3,
            label=variant,
            linestyle="--" if variant in (CEILING_WS, CEILING_PRODUCE, "websockets") else "-",
        )
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xticks(SIZES, [f"{size} B" for size in SIZES])
    axes.set_xlabel("frame size")
    axes.set_ylabel("messages/s (median, min-max)")
    axes.set_title("ws2kafka bridge vs ceilings (dashed)")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="1 run each, fewer frames, 3 s latency"
    )
    parser.add_argument("--repeats", type=int, help="runs per measurement (default 3, quick 1)")
    parser.add_argument("--output", type=Path, help="write the JSON here too")
    parser.add_argument("--plot", type=Path, help="write the throughput PNG here")
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="*",
        choices=SIZES,
        default=SIZES,
        help="frame sizes of the flat-out runs (bytes; none: no throughput runs)",
    )
    parser.add_argument(
        "--rates",
        type=int,
        nargs="*",
        default=RATES,
        help="msg/s of the latency runs (200 B frames; none: no latency runs)",
    )
    parser.add_argument(
        "--variants",
        nargs="+",
        choices=VARIANTS,
        default=VARIANTS,
        help="what to measure (default: all; latency runs: produce and the bridge variants chosen)",
    )
    parser.add_argument(
        "--property",
        action="append",
        default=[],
        type=_property,
        metavar="KEY=VALUE",
        help="a librdkafka property for the bridge and the produce ceiling alike, e.g. linger.ms=1",
    )
    args = parser.parse_args()
    repeats = args.repeats or (1 if args.quick else 3)
    latency_seconds = 3 if args.quick else 10

    from ws2kafka.devstack.kafka import KafkaBroker

    with (
        tempfile.TemporaryDirectory(prefix="ws2kafka-bench-") as workdir,
        KafkaBroker.start(Path(workdir) / "kafka") as broker,
    ):

        def create(topic: str, config: dict[str, str]) -> None:
            broker.create_topic(topic, config=config)

        def consume(topic: str, expected: int) -> list[Any]:
            return broker.consume_all(topic, expected=expected, timeout=120)

        bench = Bench(broker.bootstrap_servers, create, consume, tuple(args.property))
        # A fresh broker's JIT is cold: its first produce runs measured a third of the later
        # ones. One discarded produce run warms it before anything is measured.
        broker_warm_up = bench.run(CEILING_PRODUCE, 200, COUNTS[200][0 if args.quick else 1])
        print(json.dumps({"broker_warm_up": _brief(broker_warm_up)}), file=sys.stderr)
        runs: list[dict[str, Any]] = []
        for size in args.sizes:
            count = COUNTS[size][0 if args.quick else 1]
            for _ in range(repeats):
                for variant in args.variants:
                    run = bench.run(variant, size, count)
                    print(json.dumps(_brief(run)), file=sys.stderr)
                    runs.append(run)
        # the produce ceiling at the same rate is the latency baseline: Kafka's own share
        latency_variants = [v for v in args.variants if v.startswith("bridge-")]
        if CEILING_PRODUCE in args.variants:
            latency_variants.insert(0, CEILING_PRODUCE)
        for rate in args.rates:
            for _ in range(repeats):
                for variant in latency_variants:
                    run = bench.run(variant, 200, rate * latency_seconds, rate)
                    print(json.dumps(_brief(run)), file=sys.stderr)
                    runs.append(run)
    table = summarize(runs)
    report = {
        "machine": describe(),
        "command": " ".join(sys.argv),
        "table": table,
        "latency": summarize_latency(runs),
        "runs": runs,
        "broker_warm_up": broker_warm_up,
    }
    emit(report, args.output)
    if args.plot:
        plot(table, args.plot)


def _property(text: str) -> tuple[str, str]:
    key, equals, value = text.partition("=")
    if not key or not equals:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def _brief(run: dict[str, Any]) -> dict[str, Any]:
    keys = ("variant", "size", "rate", "msgs_per_s", "exact_once", "latency_ms", "server_cpu_share")
    return {key: run[key] for key in keys if key in run}


if __name__ == "__main__":
    main()

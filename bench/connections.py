"""Many connections in one bridge: aggregate msg/s and CPU per message, 50 against 1.

Run from the repository root: ``.venv/bin/python bench/connections.py [--connections 1 50]
[--rate 20000] [--seconds 10] [--repeats 3] [--output FILE]``.

One load server process (raw sockets, the pre-encoded 200 B frames of ``devstack.loadfeed``,
one thread per connection) serves N connections with the same total: at ``--rate`` msg/s
(each connection ``rate / N``), and flat out (each connection as fast as it can). The bridge
runs in a fresh process with ``streams`` (``urlTemplate``, ``maxPerConnection: 1``: N streams,
N connections, one link each, as a real many-stream source); its CPU seconds (every thread:
the loop, librdkafka's) and its peak RSS are its own. Each run is checked with a consumer:
every connection's sequence numbers exactly once. Prints JSON like ``bench/run.py``: the
runs, and per N the medians and the ratio to one connection.
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
from collections import Counter
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from ws2kafka.devstack.loadfeed import (
    accept_handshake,
    answer_close,
    frame_batch,
    frames_per_batch,
    number_batch,
    sequence_of,
)
from ws2kafka.devstack.machine import cpu_seconds, describe, emit

SIZE = 200

# -- the load server (a process of its own, a thread per connection) --------------------------


def serve_connections(pipe: Connection, connections: int, each: int, rate: float | None) -> None:
    """Accept ``connections`` clients; send each ``each`` frames at ``rate`` msg/s (None: flat
    out), then answer its close. Sends the port first, then its own accounting."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=connections)
    pipe.send(listener.getsockname()[1])
    starts: list[float] = []
    threads = []
    cpu_before = cpu_seconds()
    for number in range(connections):
        sock, _ = listener.accept()
        thread = threading.Thread(target=_send, args=(sock, number, each, rate, starts))
        thread.start()
        threads.append(thread)
    for thread in threads:
        thread.join()
    pipe.send({"first_send": min(starts), "cpu_seconds": cpu_seconds() - cpu_before})


def _send(
    sock: socket.socket, number: int, count: int, rate: float | None, starts: list[float]
) -> None:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    accept_handshake(sock)
    per_batch = frames_per_batch(SIZE)
    if rate is not None:  # small batches at a low rate: the frames flow, not in bursts
        per_batch = max(1, min(per_batch, int(rate / 100)))
    template, slot = frame_batch(SIZE, per_batch, random.Random(number))
    view = memoryview(template)
    first = time.time()
    starts.append(first)
    sent = 0
    while sent < count:
        batch = min(per_batch, count - sent)
        if rate is not None:
            due = int((time.time() - first) * rate) - sent
            if due <= 0:
                time.sleep(0.002)
                continue
            batch = min(batch, due)
        number_batch(template, slot, SIZE, sent + 1, batch, time.time_ns())
        sent += batch
        sock.sendall(view[: batch * slot])
    answer_close(sock, timeout=120)


# -- the bridge (a fresh process) ---------------------------------------------------------------


def measure(
    port: int, connections: int, total: int, bootstrap: str, topic: str, results: Connection
) -> None:
    results.send(asyncio.run(_bridge(port, connections, total, bootstrap, topic)))


async def _bridge(
    port: int, connections: int, total: int, bootstrap: str, topic: str
) -> dict[str, Any]:
    from ws2kafka.bridge.service import Bridge
    from ws2kafka.devstack.harness import bridge_spec
    from ws2kafka.devstack.waiting import until

    spec = bridge_spec(
        bootstrap,
        f"ws://127.0.0.1:{port}/",
        topic,
        streams={
            "names": [f"c{number:03d}" for number in range(connections)],
            "maxPerConnection": 1,
            "maxConnections": max(connections, 1),
            "urlTemplate": f"ws://127.0.0.1:{port}/{{streams}}",
        },
    )
    bridge = Bridge(spec, name="bench")
    cpu = cpu_seconds()
    task = asyncio.create_task(bridge.run())
    await until(
        lambda: bridge.stats.delivered >= total or task.done(), 600, "every frame", interval=0.005
    )
    done = time.time()
    cpu = cpu_seconds() - cpu
    bridge.stop()
    summary = await task
    return {
        "done": done,
        "cpu_seconds": cpu,
        "received": summary.received,
        "delivered": summary.delivered,
        "reconnects": summary.reconnects,
        "links": len(bridge.links),
        "peak_rss_bytes": _rss_bytes("VmHWM"),
    }


def _rss_bytes(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise LookupError(field)


# -- orchestration ------------------------------------------------------------------------------


def run_once(broker: Any, connections: int, total: int, rate: float | None) -> dict[str, Any]:
    """One measurement: the server and the bridge in processes of their own, then the check."""
    spawn = multiprocessing.get_context("spawn")
    topic = f"bench-{uuid.uuid4().hex[:10]}"
    broker.create_topic(topic)
    each = total // connections
    server_pipe, theirs = spawn.Pipe()
    per_connection = None if rate is None else rate / connections
    server = spawn.Process(
        target=serve_connections, args=(theirs, connections, each, per_connection)
    )
    server.start()
    theirs.close()
    port = server_pipe.recv()
    results, child_end = spawn.Pipe()
    args = (port, connections, each * connections, broker.bootstrap_servers, topic, child_end)
    client = spawn.Process(target=measure, args=args)
    client.start()
    child_end.close()
    try:
        outcome: dict[str, Any] = results.recv()
        if not server_pipe.poll(120):
            raise RuntimeError("the load server did not report")
        served: dict[str, Any] = server_pipe.recv()
    finally:
        client.join(60)
        server.join(5)
        if server.is_alive():
            server.kill()
    count = each * connections
    elapsed = outcome["done"] - served["first_send"]
    seqs = Counter(
        sequence_of(message.value())
        for message in broker.consume_all(topic, expected=count, timeout=180)
    )
    outcome.update(
        connections=connections,
        rate=rate,
        count=count,
        seconds=elapsed,
        msgs_per_s=count / elapsed,
        cpu_us_per_msg=outcome["cpu_seconds"] / count * 1e6,
        server_cpu_share=served["cpu_seconds"] / max(elapsed, 1e-9),
        exact_once=set(seqs) == set(range(1, each + 1)) and set(seqs.values()) == {connections},
    )
    return outcome


def summarize(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (rate, connections): medians; and the ratio to one connection at the same rate."""
    table: list[dict[str, Any]] = []
    keys = sorted({(r["rate"] or 0, r["connections"]) for r in runs})
    for rate, connections in keys:
        mine = [r for r in runs if (r["rate"] or 0) == rate and r["connections"] == connections]
        table.append(
            {
                "rate": rate or None,
                "connections": connections,
                "runs": len(mine),
                "msgs_per_s": statistics.median(r["msgs_per_s"] for r in mine),
                "msgs_per_s_min": min(r["msgs_per_s"] for r in mine),
                "msgs_per_s_max": max(r["msgs_per_s"] for r in mine),
                "cpu_us_per_msg": statistics.median(r["cpu_us_per_msg"] for r in mine),
                "server_cpu_share": max(r["server_cpu_share"] for r in mine),
                "peak_rss_mb": statistics.median(r["peak_rss_bytes"] for r in mine) / 2**20,
                "exact_once": all(r["exact_once"] for r in mine),
            }
        )
    for row in table:
        one = next((o for o in table if o["rate"] == row["rate"] and o["connections"] == 1), None)
        if one is not None:
            row["msgs_per_s_ratio_to_one"] = row["msgs_per_s"] / one["msgs_per_s"]
            row["cpu_per_msg_ratio_to_one"] = row["cpu_us_per_msg"] / one["cpu_us_per_msg"]
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 50])
    parser.add_argument("--rate", type=int, default=20_000, help="total msg/s of the paced runs")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of a paced run")
    parser.add_argument(
        "--flat-out", type=int, default=300_000, help="frames of a flat-out run (0: none)"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", type=Path, help="write the JSON here too")
    args = parser.parse_args()

    from ws2kafka.devstack.kafka import KafkaBroker

    runs: list[dict[str, Any]] = []
    plan: list[tuple[int, float | None]] = [(int(args.rate * args.seconds), args.rate)]
    if args.flat_out:
        plan.append((args.flat_out, None))
    with (
        tempfile.TemporaryDirectory(prefix="ws2kafka-bench-") as workdir,
        KafkaBroker.start(Path(workdir) / "kafka") as broker,
    ):
        warm_up = run_once(broker, 1, 100_000, None)  # a fresh broker's JIT is cold
        print(json.dumps({"broker_warm_up": _brief(warm_up)}), file=sys.stderr)
        for _ in range(args.repeats):
            for total, rate in plan:
                for connections in args.connections:
                    run = run_once(broker, connections, total, rate)
                    print(json.dumps(_brief(run)), file=sys.stderr)
                    runs.append(run)
    report = {
        "machine": describe(),
        "command": " ".join(sys.argv),
        "table": summarize(runs),
        "runs": runs,
        "broker_warm_up": warm_up,
    }
    emit(report, args.output)


def _brief(run: dict[str, Any]) -> dict[str, Any]:
    keys = ("connections", "rate", "msgs_per_s", "cpu_us_per_msg", "exact_once", "reconnects")
    return {key: run[key] for key in keys if key in run}


if __name__ == "__main__":
    main()

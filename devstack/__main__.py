"""``ws2kafka-devstack``: build, cache and run the local stack (Kafka + Kubernetes API server)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from . import image, node
from .demo import main as demo_main
from .kafka import KafkaBroker, assemble_kafka
from .kube import ControlPlane, build_control_plane
from .paths import cache_dir
from .processes import StackError
from .toxiproxy import build_toxiproxy

log = logging.getLogger("ws2kafka.devstack")


def prepare() -> None:
    """Fetch Kafka's jars, build the control-plane and node binaries, the pause image and the
    image's base, or find them cached; each step's time is logged."""
    started = time.monotonic()
    log.info("cache: %s", cache_dir())
    steps: list[tuple[str, Callable[[], object]]] = [
        ("kafka: libraries in", assemble_kafka),
        ("kubernetes: binaries in", build_control_plane),
        ("toxiproxy: server", build_toxiproxy),
    ]
    if os.geteuid() == 0:
        steps += [("node: pause image", node.prepare), ("image: base", image.choose_base)]
    else:
        log.info("node and image: need root (containerd, kubelet, apt); not prepared")
    for what, step in steps:
        step_started = time.monotonic()
        result = step()
        log.info("%s %s (%.0f s)", what, result, time.monotonic() - step_started)
    log.info("stack ready in %.0f s", time.monotonic() - started)


def up(workdir: Path, kafka_port: int) -> None:
    """Run a broker and an API server until Ctrl-C or SIGTERM, printing how to reach them."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    with (
        KafkaBroker.start(workdir / "kafka", port=kafka_port) as broker,
        ControlPlane.start(workdir / "kube") as kube,
    ):
        print(f"KAFKA_BOOTSTRAP_SERVERS={broker.bootstrap_servers}")
        print(f"KUBECONFIG={kube.kubeconfig}")
        print("logs:", broker.log_path, *kube.log_paths.values(), flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            log.info("stopping the stack")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="ws2kafka-devstack",
        description="The local stack ws2kafka's tests, demo and benchmarks run against: "
        "a Kafka broker (KRaft) from Maven Central and etcd + kube-apiserver + "
        "kube-controller-manager built from the Go module proxy, cached after the first run.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "prepare", help="fetch/build and cache every component (first run: minutes)"
    )
    build = commands.add_parser(
        "image", help="build the container image with podman or docker; prints its name"
    )
    build.add_argument(
        "--context", type=Path, default=Path(), help="the repository (default: the current folder)"
    )
    build.add_argument("--tag", help="the image's name:tag (default: localhost/ws2kafka:dev-HASH)")
    run = commands.add_parser("up", help="start Kafka and the API server until Ctrl-C")
    run.add_argument("--workdir", type=Path, help="data and logs (default: a temporary folder)")
    run.add_argument(
        "--kafka-port", type=int, default=9092, help="Kafka's port on 127.0.0.1 (default: 9092)"
    )
    demo = commands.add_parser(
        "demo", help="Kafka + API server + inline operator + a demo feed, data flowing"
    )
    demo.add_argument("--workdir", type=Path, help="data and logs (default: a temporary folder)")
    demo.add_argument(
        "--kafka-port", type=int, default=9092, help="Kafka's port; 0 picks a free one"
    )
    demo.add_argument("--feed-port", type=int, default=8765, help="the demo feed's port")
    demo.add_argument(
        "--duration", type=float, default=float("inf"), help="stop after this many seconds"
    )
    demo.add_argument(
        "--node",
        action="store_true",
        help="the operator and the bridge as pods of a real kubelet, from the built image",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    try:
        if args.command == "prepare":
            prepare()
            return 0
        if args.command == "image":
            print(image.build(args.context.resolve(), name=args.tag))
            return 0
        workdir = args.workdir or Path(tempfile.mkdtemp(prefix="ws2kafka-stack-"))
        if args.command == "demo":
            return demo_main(
                workdir, args.kafka_port or None, args.feed_port, args.duration, on_node=args.node
            )
        up(workdir, args.kafka_port)
    except StackError as exc:
        print(f"ws2kafka-devstack: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``ws2kafka-operator``: run the operator, or run one bridge as a bridge pod does."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path
from typing import Any

import kopf
from prometheus_client import CollectorRegistry

from ws2kafka.bridge.__main__ import (
    add_stay_after_giving_up,
    configure_logging,
    load_config,
    serve,
)
from ws2kafka.bridge.errors import ConfigError
from ws2kafka.bridge.health import HealthServer
from ws2kafka.bridge.metrics import BridgeCollector
from ws2kafka.bridge.service import ExitCode

from . import kube
from .inline import InlineBridges
from .leadership import Leadership
from .main import RoutineSuccesses, build_registry
from .ratelimit import RateLimitCollector
from .readiness import Readiness
from .reporter import KubeStatusReporter
from .settings import Mode, OperatorSettings

log = logging.getLogger("ws2kafka.operator")

DESCRIPTION = """\
The ws2kafka operator: turns WebSocketSource resources into running bridges.

  ws2kafka-operator run       watch resources; pod mode (a Deployment per source) or inline
                              mode (every bridge inside this process)
  ws2kafka-operator bridge    run one bridge that reports to its resource's status (what a
                              bridge pod runs)

Settings come from flags, or from WS2KAFKA_OPERATOR_<NAME> environment variables
(MODE, NAMESPACES, BRIDGE_IMAGE, HEARTBEAT_TIMEOUT_SECONDS, LEADER_ELECTION,
LEASE_NAMESPACE, LEASE_DURATION_SECONDS, ...). The Kubernetes API is
reached through $KUBECONFIG / ~/.kube/config, else the pod's service account.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ws2kafka-operator",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING"])
    parser.add_argument("--log-format", default="text", choices=["text", "json"])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the operator")
    run.add_argument("--mode", choices=[m.value for m in Mode], help="pod (default) or inline")
    run.add_argument(
        "--namespace",
        action="append",
        dest="namespaces",
        help="watch this namespace (repeatable; default: all namespaces)",
    )
    run.add_argument("--bridge-image", help="image of bridge pods")
    run.add_argument(
        "--heartbeat-timeout", type=float, help="seconds without a bridge report before not Ready"
    )
    run.add_argument(
        "--leader-election",
        action="store_true",
        help="act only while holding the operator's Lease (several replicas; see the "
        "WS2KAFKA_OPERATOR_LEASE_* settings)",
    )
    run.add_argument(
        "--metrics-port",
        type=int,
        default=9401,
        help="port of /metrics, /healthz (liveness) and /readyz (readiness); -1 disables "
        "(default: %(default)s)",
    )
    bridge = commands.add_parser("bridge", help="run one bridge that reports to a resource")
    bridge.add_argument(
        "--config", required=True, type=Path, help="the rendered bridge config file"
    )
    bridge.add_argument("--resource", required=True, help="NAMESPACE/NAME of the WebSocketSource")
    bridge.add_argument("--metrics-port", type=int, default=9400)
    bridge.add_argument("--metrics-host", default="0.0.0.0")
    bridge.add_argument("--summary-interval", type=float, default=30.0)
    bridge.add_argument("--report-interval", type=float, default=5.0)
    bridge.add_argument(
        "--state-file", type=Path, help="a trace that turns a killed run into a reported gap"
    )
    add_stay_after_giving_up(bridge)
    return parser


#: The exit status of an operator that lost the Lease: it stopped acting, and its pod's
#: restart makes it a standby again (as client-go's controllers exit).
LOST_LEADERSHIP = 4
#: How long kopf gets to stop after the Lease is lost, beyond the longest drain of its inline
#: bridges (they stop reading at once, then drain into Kafka).
STOP_AFTER_LOSS_SECONDS = 30.0


async def run_operator(settings: OperatorSettings, metrics_port: int) -> int:
    """Run until stopped (0), or until this replica loses the Lease (:data:`LOST_LEADERSHIP`)."""
    kube.limit_requests(settings.api_qps, settings.api_burst)
    bridges = InlineBridges()
    registry = build_registry(settings, bridges)
    logging.getLogger("kopf.objects").addFilter(RoutineSuccesses())
    readiness = Readiness(settings.namespaces)
    checking = asyncio.create_task(readiness.run(), name="readiness")
    health: HealthServer | None = None
    metrics = CollectorRegistry()
    if metrics_port >= 0:
        metrics.register(BridgeCollector(bridges.stats))
        metrics.register(RateLimitCollector(lambda: kube.LIMIT))
        health = HealthServer(metrics, lambda: readiness.ready, "0.0.0.0", metrics_port)
        await health.start()
    log.info(
        "operator starting: mode=%s namespaces=%s",
        settings.mode.value,
        ",".join(settings.namespaces) or "(all)",
    )
    try:
        if not settings.leader_election:
            await run_kopf(settings, registry, readiness, stop=None)
            return 0
        leadership = Leadership(settings, metrics=metrics)
        code = await run_elected(settings, registry, readiness, leadership, bridges)
    finally:
        checking.cancel()
        if health is not None:
            await health.close()
    if code == LOST_LEADERSHIP:
        # calls blocked on an unreachable API server hold threads that asyncio.run would
        # wait for without end; there is nothing left to finish: exit now
        logging.shutdown()
        os._exit(code)
    return code


async def run_elected(
    settings: OperatorSettings,
    registry: kopf.OperatorRegistry,
    readiness: Readiness,
    leadership: Leadership,
    bridges: InlineBridges,
) -> int:
    """Stand by until this replica holds the Lease, then act while it renews it. When it
    cannot, kopf is stopped: its watches and handlers end, and inline bridges drain (their
    sockets close first), before another replica can take the Lease."""
    # a standby is ready: it does its job, and a PodDisruptionBudget counts it
    await leadership.acquire(standing_by=readiness.started)
    lost = asyncio.Event()
    holding = asyncio.create_task(leadership.hold(), name="leader election")
    holding.add_done_callback(lambda _: lost.set())
    acting = asyncio.create_task(run_kopf(settings, registry, readiness, stop=lost), name="kopf")
    try:
        await asyncio.wait({holding, acting}, return_when=asyncio.FIRST_COMPLETED)
        if not holding.done():  # kopf stopped by itself (SIGTERM): hand the Lease over
            holding.cancel()
            await leadership.release()
            acting.result()
            return 0
        holding.result()  # re-raises what ended the renewals, if anything did
        drains = [bridge.spec.drain_timeout_seconds for bridge in bridges.running.values()]
        limit = max(drains, default=0.0) + STOP_AFTER_LOSS_SECONDS
        done, _ = await asyncio.wait({acting}, timeout=limit)
        if not done:  # e.g. a bridge's last status report, hung on the unreachable API server
            log.error("kopf did not stop within %g s of losing the Lease: exiting", limit)
        return LOST_LEADERSHIP
    finally:
        holding.cancel()
        acting.cancel()


async def run_kopf(
    settings: OperatorSettings,
    registry: kopf.OperatorRegistry,
    readiness: Readiness,
    stop: asyncio.Event | None,
) -> None:
    await kopf.operator(
        registry=registry,
        standalone=True,
        clusterwide=not settings.namespaces,
        namespaces=settings.namespaces,
        ready_flag=readiness.started,
        stop_flag=stop,
    )


def run_bridge(args: argparse.Namespace) -> int:
    namespace, _, name = str(args.resource).partition("/")
    if not namespace or not name:
        print("ws2kafka-operator: --resource must be NAMESPACE/NAME", file=sys.stderr)
        return ExitCode.CONFIG
    reporter = KubeStatusReporter(
        namespace, name, pod_name=os.environ.get("POD_NAME"), interval=args.report_interval
    )
    try:
        spec, _ = load_config(args.config, name)
        previous = reporter.previous_unclean_exit()
        return asyncio.run(serve(spec, name, args, reporter=reporter, unclean_exit=previous))
    except ConfigError as exc:
        # the pod's termination message (FallbackToLogsOnError) shows these lines too
        for problem in exc.problems:
            print(f"ws2kafka-operator: {problem}", file=sys.stderr)
        reporter.report_startup_failure("; ".join(exc.problems))
        return ExitCode.CONFIG


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level, args.log_format)
    if args.command == "bridge":
        return run_bridge(args)
    overrides: dict[str, Any] = {
        "mode": args.mode,
        "namespaces": args.namespaces,
        "bridge_image": args.bridge_image,
        "heartbeat_timeout_seconds": args.heartbeat_timeout,
        "leader_election": args.leader_election or None,
    }
    try:
        settings = OperatorSettings.from_env(**overrides)
    except ValueError as exc:  # pydantic's ValidationError too: it names the setting
        print(f"ws2kafka-operator: invalid settings: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(run_operator(settings, args.metrics_port))


if __name__ == "__main__":
    sys.exit(main())

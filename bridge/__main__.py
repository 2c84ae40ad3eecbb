"""``ws2kafka-bridge``: run one WebSocket source into Kafka from a config file.

This is the only module that configures logging and signal handling; everything else is the
library that the operator's inline mode, the tests and the benchmarks use directly.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import time
from pathlib import Path

import pythonjsonlogger.core
import pythonjsonlogger.json
import yaml
from prometheus_client import CollectorRegistry

from .config import WebSocketSourceSpec, parse_spec
from .config_watch import follow_config
from .errors import ConfigError
from .health import HealthServer
from .metrics import BridgeCollector
from .reporting import StateReporter
from .runstate import UncleanExit
from .service import Bridge, ExitCode

log = logging.getLogger("ws2kafka.bridge")

DESCRIPTION = """\
Stream one WebSocket feed into a Kafka topic.

The config file has the shape of the `spec` of a WebSocketSource resource (camelCase keys);
a whole resource (`kind: WebSocketSource`) is accepted too, its metadata.name being the
source name. Secrets may be given inline (`value`), from an environment variable (`env`) or
from a file (`file`); they are never logged.

Minimal config:
  url: wss://stream.binance.com:9443/ws
  subscribe: ['{"method":"SUBSCRIBE","params":["btcusdt@trade"],"id":1}']
  kafka: {bootstrapServers: 127.0.0.1:9092, topic: binance-trades}

The bridge follows its config file: a change of streams.names alone is applied while it
runs (only the connections whose share changed are replaced); any other change applies at
the next start.

On SIGTERM or SIGINT the bridge closes the socket (1001), delivers everything it received
(up to drainTimeoutSeconds), logs a final summary and exits. A second signal exits at once.
"""

EPILOG = """\
exit codes:
  0  stopped, everything received was delivered
  1  stopped, some received frames could not be delivered (see the final summary)
  2  invalid configuration (one line per problem, naming the field)
  3  gave up reconnecting after reconnect.maxAttempts failures
  4  the Kafka producer failed fatally (librdkafka); what it held is counted as undelivered,
     and a restart (a new producer) recovers
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ws2kafka-bridge",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--config", "-c", required=True, type=Path, help="YAML or JSON config file (a spec)"
    )
    parser.add_argument(
        "--name",
        help="source name, used in logs, metrics and record headers "
        "(default: metadata.name of a resource file, else the file's stem)",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=9400,
        help="port of /metrics, /healthz and /readyz; 0 picks a free one, -1 disables "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--metrics-host", default="0.0.0.0", help="address to bind (default: %(default)s)"
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="(default: %(default)s)",
    )
    parser.add_argument(
        "--log-format",
        default="text",
        choices=["text", "json"],
        help="json writes one object per line (default: %(default)s)",
    )
    parser.add_argument(
        "--summary-interval",
        type=float,
        default=30.0,
        help="seconds between summary log lines, written even when idle (default: %(default)s)",
    )
    parser.add_argument(
        "--state-file",
        type=Path,
        help="where to leave a trace every second: a run killed without draining is then "
        "reported as a gap by the next run (default: none)",
    )
    parser.add_argument(
        "--check", action="store_true", help="validate the config file, print nothing else, exit"
    )
    add_stay_after_giving_up(parser)
    return parser


def add_stay_after_giving_up(parser: argparse.ArgumentParser) -> None:
    """The option a supervisor that restarts on its own schedule needs (the operator's
    ``spec.autoRestart`` in pod mode): an exit would be restarted by the kubelet at once."""
    parser.add_argument(
        "--stay-after-giving-up",
        action="store_true",
        help="after giving up (exit code 3), keep serving /healthz and /metrics, not ready, "
        "until SIGTERM, instead of exiting",
    )


#: What kopf's loggers add to every record for kopf itself (its own JSON formatter skips them).
_KOPF_INTERNAL_EXTRAS = ("settings", "k8s_skip")


class JsonFormatter(pythonjsonlogger.json.JsonFormatter):
    """One JSON object per line for log pipelines (python-json-logger, kept by kopf's own
    dependencies): ``time`` in UTC with milliseconds, ``level``, ``logger``, ``message``, and
    ``exception`` when there is one; fields passed as ``extra`` are added as they are, but for
    the ones kopf adds for its own use (as kopf's own JSON formatter does): ``settings``, the
    operator's whole configuration, which the formatter would deep-copy for every line and
    then fail on (a traceback for each of a 50-source operator's timer lines, every second)."""

    default_time_format = "%Y-%m-%dT%H:%M:%S"
    default_msec_format = "%s.%03dZ"
    converter = staticmethod(time.gmtime)

    def __init__(self) -> None:
        super().__init__(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={
                "asctime": "time",
                "levelname": "level",
                "name": "logger",
                "exc_info": "exception",
            },
            reserved_attrs=[*pythonjsonlogger.core.RESERVED_ATTRS, *_KOPF_INTERNAL_EXTRAS],
        )


def configure_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler], force=True)


def load_config(path: Path, name: str | None) -> tuple[WebSocketSourceSpec, str]:
    """Read and validate the config file; raises ConfigError for every user mistake."""
    try:
        document = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{path}: not valid YAML: {exc}"]) from None
    if not isinstance(document, dict):
        raise ConfigError([f"{path}: must be a mapping (the spec of a WebSocketSource)"])
    default_name = path.stem
    if document.get("kind") == "WebSocketSource":
        default_name = str((document.get("metadata") or {}).get("name") or default_name)
        document = document.get("spec") or {}
    return parse_spec(document), name or default_name


async def serve(
    spec: WebSocketSourceSpec,
    name: str,
    args: argparse.Namespace,
    reporter: StateReporter | None = None,
    unclean_exit: UncleanExit | None = None,
) -> int:
    """Run the bridge with signal handling and the health endpoint until it stops.

    ``reporter`` is the state-reporting hook (the operator's bridge pods pass theirs), and
    ``unclean_exit`` how a previous bridge of the source ended, if not cleanly. Whatever keeps
    the bridge from starting raises ConfigError, before anything is received.
    """
    bridge = Bridge(
        spec,
        name=name,
        reporter=reporter,
        summary_interval=args.summary_interval,
        state_file=args.state_file,
        unclean_exit=unclean_exit,
    )
    loop = asyncio.get_running_loop()
    stops = 0
    stopped = asyncio.Event()

    def on_signal() -> None:
        nonlocal stops
        stops += 1
        if stops > 1:
            log.error("second signal: exiting without draining")
            raise SystemExit(ExitCode.UNDELIVERED)
        stopped.set()
        bridge.stop()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal)
    health: HealthServer | None = None
    if args.metrics_port >= 0:
        registry = CollectorRegistry()
        registry.register(BridgeCollector(lambda: [(bridge.name, bridge.stats)]))
        health = HealthServer(registry, lambda: bridge.ready, args.metrics_host, args.metrics_port)
        try:
            await health.start()
        except OSError as exc:  # e.g. the port is taken (two host-network bridges on a node)
            where = f"{args.metrics_host}:{args.metrics_port}"
            raise ConfigError(
                [f"--metrics-port: cannot listen on {where}: {exc.strerror}"]
            ) from None
    following = asyncio.create_task(
        follow_config(bridge, args.config, lambda: load_config(args.config, name)[0])
    )
    try:
        summary = await bridge.run()
        if summary.exit_code == ExitCode.GAVE_UP and args.stay_after_giving_up:
            log.info("gave up: staying until stopped (--stay-after-giving-up)")
            await stopped.wait()
    finally:
        following.cancel()
        await asyncio.gather(following, return_exceptions=True)
        if health is not None:
            await health.close()
    return summary.exit_code


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level, args.log_format)
    try:
        spec, name = load_config(args.config, args.name)
        if args.check:
            return ExitCode.OK
        return asyncio.run(serve(spec, name, args))
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"ws2kafka-bridge: {problem}", file=sys.stderr)
        return ExitCode.CONFIG


if __name__ == "__main__":
    sys.exit(main())

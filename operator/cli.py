"""``ws2kafka``: the tools around the operator, for people and for ``make``.

``ws2kafka crds`` keeps ``crds/websocketsource.yaml`` in step with the config model and
``ws2kafka convert`` migrates a Kafka Connect WebSocket connector. The pure work is done in
:mod:`.crdgen` and :mod:`.convert`; this module only reads, writes and reports.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from ws2kafka.bridge.errors import ConfigError

from .convert import DEFAULT_BOOTSTRAP_SERVERS, connector_to_resources, conversion_to_yaml
from .crdgen import render_crd

#: Exit codes, as in ws2kafka-bridge: 1 "not as expected" (the CRD file drifted), 2 bad input.
EXIT_OK: Final = 0
EXIT_DRIFTED: Final = 1
EXIT_INVALID: Final = 2

DEFAULT_CRD_PATH: Final = Path("crds/websocketsource.yaml")

EPILOG = """\
exit codes:
  0  done
  1  crds --check: the CRD file differs from the model (run `make crds`)
  2  invalid input (one line per problem)
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ws2kafka",
        description="Tools around the ws2kafka operator.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    crds = commands.add_parser(
        "crds",
        help="generate the WebSocketSource CRD from the config model",
        description="Render the WebSocketSource CustomResourceDefinition from bridge/config.py.",
    )
    mode = crds.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="rewrite the CRD file")
    mode.add_argument(
        "--check", action="store_true", help="exit 1 if the CRD file differs from the model"
    )
    crds.add_argument(
        "--path",
        type=Path,
        default=DEFAULT_CRD_PATH,
        help="the CRD file for --write and --check (default: %(default)s); "
        "without either option the CRD goes to stdout",
    )
    convert = commands.add_parser(
        "convert",
        help="turn a Kafka Connect WebSocket connector config into a WebSocketSource",
        description="Turn a Kafka Connect WebSocket source connector config (the JSON posted to "
        "/connectors, or its bare config object) into a WebSocketSource manifest, plus a Secret "
        "for the bearer token and secret-looking headers. Keys that have no equivalent are "
        "named on stderr.",
    )
    convert.add_argument("connector", type=Path, help="the connector JSON file ('-' for stdin)")
    convert.add_argument(
        "-o", "--output", type=Path, help="write the manifests here (default: stdout)"
    )
    convert.add_argument("--namespace", "-n", help="namespace of the manifests (default: none)")
    convert.add_argument(
        "--bootstrap-servers",
        default=DEFAULT_BOOTSTRAP_SERVERS,
        help="spec.kafka.bootstrapServers; a connector config has none (default: %(default)s)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "crds":
        return crds(args.path, write=args.write, check=args.check)
    return convert(args.connector, args.output, args.namespace, args.bootstrap_servers)


def crds(path: Path, *, write: bool, check: bool) -> int:
    """Print, write or check the generated CRD."""
    rendered = render_crd()
    if write:
        try:
            path.write_text(rendered)
        except OSError as exc:
            _say(f"error: cannot write {path}: {exc.strerror}")
            return EXIT_INVALID
        _say(f"wrote {path}")
        return EXIT_OK
    if check:
        current = path.read_text() if path.exists() else ""
        if current != rendered:
            _say(f"{path} is out of date with bridge/config.py: run `make crds`")
            return EXIT_DRIFTED
        return EXIT_OK
    sys.stdout.write(rendered)
    return EXIT_OK


def convert(source: Path, output: Path | None, namespace: str | None, bootstrap: str) -> int:
    """Convert one connector config; warnings and errors go to stderr."""
    try:
        conversion = connector_to_resources(
            _read_json(source), namespace=namespace, bootstrap_servers=bootstrap
        )
    except ConfigError as exc:
        for problem in exc.problems:
            _say(f"error: {problem}")
        return EXIT_INVALID
    for warning in conversion.warnings:
        _say(f"warning: {warning}")
    text = conversion_to_yaml(conversion)
    private = conversion.secret_name is not None
    if output is None:
        sys.stdout.write(text)
    else:
        try:
            _write(output, text, private=private)
        except OSError as exc:
            _say(f"error: cannot write {output}: {exc.strerror}")
            return EXIT_INVALID
    if private:
        where = "the output" if output is None else str(output)
        _say(
            f"warning: {where} contains the Secret {conversion.secret_name} with credentials "
            "in clear text: keep it out of version control"
        )
    return EXIT_OK


def _read_json(source: Path) -> object:
    """The connector file's JSON; unreadable or invalid input is a problem like a bad key."""
    try:
        text = sys.stdin.read() if str(source) == "-" else source.read_text()
    except OSError as exc:
        raise ConfigError([f"cannot read {source}: {exc.strerror}"]) from None
    try:
        parsed: object = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError([f"{source} is not JSON: {exc}"]) from None
    return parsed


def _write(path: Path, text: str, *, private: bool) -> None:
    """Write ``text``; a file holding a secret is readable by its owner only."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o666)
    with os.fdopen(descriptor, "w") as file:
        if private:
            os.fchmod(descriptor, 0o600)
        file.write(text)


def _say(line: str) -> None:
    sys.stderr.write(f"ws2kafka: {line}\n")


if __name__ == "__main__":
    sys.exit(main())

"""The Helm chart and the Dockerfile agree with the code, without helm or a cluster.

Rendering, installing and RBAC are tested against the real API server in
``tests/integration/test_helm.py``; these checks keep the files themselves honest: every value
is documented and described by the strict schema, the chart's CRD is the repository's, the
dashboard only queries metrics the bridge exports, and the image runs as the chart expects.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import CollectorRegistry, generate_latest

from ws2kafka.bridge.metrics import BridgeCollector
from ws2kafka.operator.resources import build_deployment, render_source
from ws2kafka.operator.settings import OperatorSettings

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "ws2kafka"
VALUES_TEXT = (CHART / "values.yaml").read_text()
VALUES: dict[str, Any] = yaml.safe_load(VALUES_TEXT)
SCHEMA: dict[str, Any] = json.loads((CHART / "values.schema.json").read_text())
KEY_LINE = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z_][A-Za-z0-9_]*):")
#: Helm passes `global` to every chart; values.yaml need not mention it.
HELM_KEYS = {"global"}


def schema_node(path: tuple[str, ...]) -> dict[str, Any] | None:
    """The schema of a values path, if the schema names it through ``properties``."""
    node: dict[str, Any] | None = SCHEMA
    for key in path:
        node = (node or {}).get("properties", {}).get(key)
    return node


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", (REPO / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1])
        for line in lines
        if line and not line.startswith("#")
    ]


def final_stage() -> list[tuple[str, str]]:
    instructions = dockerfile_instructions()
    last_from = max(i for i, (op, _) in enumerate(instructions) if op == "FROM")
    return instructions[last_from:]


def test_every_value_has_a_comment() -> None:
    lines = VALUES_TEXT.splitlines()
    path: list[str] = []
    undocumented = []
    for number, line in enumerate(lines):
        match = KEY_LINE.match(line)
        if match is None:
            continue
        depth = len(match["indent"]) // 2
        path = [*path[:depth], match["key"]]
        if schema_node(tuple(path)) is None:
            continue  # inside a Kubernetes object (e.g. a security context): documented above
        if number == 0 or not lines[number - 1].lstrip().startswith("#"):
            undocumented.append(".".join(path))
    assert undocumented == []


def test_schema_describes_exactly_the_values_and_rejects_unknown_keys() -> None:
    def walk(values: dict[str, Any], node: dict[str, Any], path: str) -> None:
        properties = node["properties"]
        assert node.get("additionalProperties") is False, f"{path or 'the root'} is not strict"
        assert set(values) == set(properties) - HELM_KEYS, path
        for key, child in properties.items():
            assert "description" in child, f"{path}{key} has no description"
            # an empty structure (bridge.template) is optional: its schema still checks it
            if "properties" in child and values[key] != {}:
                walk(values[key], child, f"{path}{key}.")

    walk(VALUES, SCHEMA, "")
    enums = {
        "operator.mode": ["pod", "inline"],
        "rbac.scope": ["cluster", "namespaced"],
    }
    for dotted, allowed in enums.items():
        node = schema_node(tuple(dotted.split(".")))
        assert node is not None
        assert node["enum"] == allowed, dotted


def test_chart_crds_are_the_repository_crds() -> None:
    """The chart has no copy that could drift: its crds/ holds the repository's files."""
    chart_crds = {path.name: path.read_bytes() for path in sorted((CHART / "crds").iterdir())}
    repo_crds = {path.name: path.read_bytes() for path in sorted((REPO / "crds").iterdir())}
    assert chart_crds == repo_crds
    assert "websocketsource.yaml" in chart_crds


def test_chart_and_app_versions_follow_the_project() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert chart["apiVersion"] == "v2"
    assert chart["name"] == "ws2kafka"
    assert chart["appVersion"] == project["version"]
    assert "kubeVersion" not in chart, "helm template would check it against helm's default"
    default_image = OperatorSettings().bridge_image
    assert default_image == f"{VALUES['image']['repository']}:{chart['appVersion']}"


def test_dashboard_queries_only_metrics_the_bridge_exports() -> None:
    dashboard = json.loads((CHART / "dashboards" / "ws2kafka.json").read_text())
    queries = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    used = {name for query in queries for name in re.findall(r"\bws2kafka_[a-z_]+", query)}
    assert used == {
        "ws2kafka_records_produced_total",
        "ws2kafka_frames_dropped_total",
        "ws2kafka_reconnects_total",
        "ws2kafka_seconds_since_last_frame",
    }
    registry = CollectorRegistry()
    registry.register(BridgeCollector(list))
    exported = set(re.findall(r"^# TYPE (\S+)", generate_latest(registry).decode(), re.M))
    assert used <= exported
    assert all('source=~"$source"' in query for query in queries)


def test_image_runs_as_the_user_the_chart_and_the_bridge_pods_expect() -> None:
    stage = final_stage()
    users = [args for op, args in stage if op == "USER"]
    assert users == ["10001:10001"]
    bridge_pod = build_deployment("s", "ns", render_source({}), OperatorSettings(), suspended=False)
    bridge_context = bridge_pod["spec"]["template"]["spec"]["securityContext"]
    chart_context = VALUES["operator"]["podSecurityContext"]
    for context in (bridge_context, chart_context):
        assert (context["runAsUser"], context["runAsGroup"]) == (10001, 10001)
        assert context["runAsNonRoot"] is True


def test_image_command_is_a_console_script_and_there_is_no_entrypoint() -> None:
    """Pods set `args` only: with no ENTRYPOINT the args are the whole command line."""
    stage = final_stage()
    assert [op for op, _ in stage if op == "ENTRYPOINT"] == []
    [command] = [json.loads(args) for op, args in stage if op == "CMD"]
    assert command == ["ws2kafka-operator", "run"]
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert command[0] in scripts


def test_build_context_holds_what_the_project_build_needs() -> None:
    """The builder stage copies the project metadata and every package folder but the test
    stack's, of which only the empty package goes in (it is not in the image), and
    .dockerignore (an allowlist) lets each of them into the build context."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    folders = set(project["tool"]["setuptools"]["package-dir"].values())
    needed = {
        "pyproject.toml",
        project["project"]["readme"],
        *(folders - {"devstack"}),
        "devstack/__init__.py",
    }
    copied = {
        source
        for op, args in dockerfile_instructions()
        if op == "COPY" and not args.startswith("--from")
        for source in args.split()[:-1]
    }
    assert copied == needed
    allowed = {line.strip("!/") for line in (REPO / ".dockerignore").read_text().splitlines()}
    assert needed <= allowed

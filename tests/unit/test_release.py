"""One version everywhere a release states it, and a changelog entry for it (`CHANGELOG.md`)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

from ws2kafka.devstack import previous
from ws2kafka.operator.settings import OperatorSettings

REPO = Path(__file__).resolve().parents[2]


def version() -> str:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    found: str = project["version"]
    return found


def test_the_chart_and_the_default_image_carry_the_package_version() -> None:
    chart = yaml.safe_load((REPO / "helm" / "ws2kafka" / "Chart.yaml").read_text())
    assert chart["version"] == chart["appVersion"] == version()
    assert OperatorSettings().bridge_image.endswith(f":{version()}")


def test_the_changelog_starts_with_this_version_and_names_the_previous_release() -> None:
    changelog = (REPO / "CHANGELOG.md").read_text()
    headings = re.findall(r"^## (.+)$", changelog, flags=re.MULTILINE)
    newest = headings[0]
    assert newest == f"Unreleased ({version()})" or newest.startswith(f"{version()} (")
    old = previous.PREVIOUS
    assert f"## {old.version} (" in changelog
    assert f"commit {old.commit[:7]})" in changelog, "the previous release's commit is named"

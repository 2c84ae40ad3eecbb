"""The CRD only grows: what the previous release stored stays valid (`docs/crd.md`, "Versions")."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import yaml

from ws2kafka.devstack import previous
from ws2kafka.operator.crdcompat import incompatibilities

CRD_PATH = previous.REPO / "crds" / "websocketsource.yaml"


def current() -> dict[str, Any]:
    crd: dict[str, Any] = yaml.safe_load(CRD_PATH.read_text())
    return crd


def spec_of(crd: dict[str, Any]) -> dict[str, Any]:
    """The spec's schema in ``crd``, to change in place."""
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    spec: dict[str, Any] = schema["properties"]["spec"]
    return spec


def test_this_crd_accepts_everything_the_previous_release_accepted() -> None:
    old = yaml.safe_load(previous.file_at(previous.PREVIOUS, "crds/websocketsource.yaml"))
    assert incompatibilities(old, current()) == []


def test_an_unchanged_crd_is_compatible() -> None:
    assert incompatibilities(current(), current()) == []


def test_a_new_optional_field_is_compatible() -> None:
    new = current()
    spec_of(new)["properties"]["fresh"] = {"type": "string"}
    assert incompatibilities(current(), new) == []


def _break_removed(spec: dict[str, Any]) -> None:
    del spec["properties"]["url"]


def _break_type(spec: dict[str, Any]) -> None:
    spec["properties"]["url"]["type"] = "integer"


def _break_enum(spec: dict[str, Any]) -> None:
    overflow = spec["properties"]["buffer"]["properties"]["overflow"]
    overflow["enum"] = overflow["enum"][:1]


def _break_bound(spec: dict[str, Any]) -> None:
    spec["properties"]["buffer"]["properties"]["maxMessages"]["minimum"] = 10


def _break_required(spec: dict[str, Any]) -> None:
    spec["properties"]["fresh"] = {"type": "string"}
    spec.setdefault("required", []).append("fresh")


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (_break_removed, "spec.url: removed"),
        (_break_type, "spec.url: type"),
        (_break_enum, "spec.buffer.overflow: values no longer allowed"),
        (_break_bound, "spec.buffer.maxMessages: minimum narrowed"),
        (_break_required, "spec.fresh: newly required"),
    ],
)
def test_a_change_that_refuses_stored_resources_is_named(
    change: Callable[[dict[str, Any]], None], named: str
) -> None:
    new = current()
    change(spec_of(new))
    [problem] = incompatibilities(current(), new)
    assert problem.startswith(f"v1alpha1.{named}")


def test_a_version_no_longer_served_is_named() -> None:
    new = current()
    new["spec"]["versions"][0]["name"] = "v1"
    assert "version v1alpha1 is no longer served" in incompatibilities(current(), new)

"""Whether a new CRD still accepts what users stored under an older one, in place.

v1alpha1 is the storage version and the only one (`docs/crd.md`, "Versions"): until a v1
with a conversion webhook exists, a release may only add to the schema. A field, type or
enum value taken away, a new required field without a default, or a tighter bound would make
resources already stored in etcd invalid at their next update, and old manifests refused.
The release checklist (`CHANGELOG.md`) and a unit test run this against the previous release.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Final

#: Bounds a new schema may widen, never narrow: (keyword, whether larger is wider).
_BOUNDS: Final = (
    ("minimum", False),
    ("maximum", True),
    ("minLength", False),
    ("maxLength", True),
    ("minItems", False),
    ("maxItems", True),
    ("minProperties", False),
    ("maxProperties", True),
)


def incompatibilities(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What in CRD ``new`` refuses or drops what CRD ``old`` accepted, one line each."""
    problems = list(_versions(old, new))
    old_versions = {v["name"]: v for v in old["spec"]["versions"]}
    for version in new["spec"]["versions"]:
        before = old_versions.get(version["name"])
        if before is not None:
            old_schema = before["schema"]["openAPIV3Schema"]
            new_schema = version["schema"]["openAPIV3Schema"]
            problems.extend(_schema(old_schema, new_schema, version["name"]))
    return problems


def _versions(old: dict[str, Any], new: dict[str, Any]) -> Iterator[str]:
    for key in ("group", "scope"):
        if old["spec"][key] != new["spec"][key]:
            yield f"spec.{key} changed from {old['spec'][key]!r} to {new['spec'][key]!r}"
    if old["spec"]["names"]["plural"] != new["spec"]["names"]["plural"]:
        yield "spec.names.plural changed"
    served = {v["name"] for v in new["spec"]["versions"] if v.get("served")}
    for version in old["spec"]["versions"]:
        if version.get("served") and version["name"] not in served:
            yield f"version {version['name']} is no longer served"
    storage = [v["name"] for v in new["spec"]["versions"] if v.get("storage")]
    if len(storage) != 1:
        yield f"exactly one storage version expected, found {storage}"


def _schema(old: dict[str, Any], new: dict[str, Any], path: str) -> Iterator[str]:
    if old.get("type") != new.get("type"):
        yield f"{path}: type {old.get('type')!r} became {new.get('type')!r}"
        return
    if "enum" in old or "enum" in new:
        lost = [value for value in old.get("enum", []) if value not in new.get("enum", [])]
        if lost or ("enum" in new and "enum" not in old):
            yield f"{path}: values no longer allowed: {lost or 'all but the enum'}"
    if "pattern" in new and new.get("pattern") != old.get("pattern"):
        yield f"{path}: pattern changed to {new['pattern']!r}"
    yield from _bounds(old, new, path)
    yield from _properties(old, new, path)
    if "items" in old and "items" in new:
        yield from _schema(old["items"], new["items"], f"{path}[]")


def _bounds(old: dict[str, Any], new: dict[str, Any], path: str) -> Iterator[str]:
    for keyword, larger_is_wider in _BOUNDS:
        if keyword not in new:
            continue
        if keyword not in old:
            yield f"{path}: new bound {keyword}={new[keyword]}"
        elif (new[keyword] < old[keyword]) == larger_is_wider and new[keyword] != old[keyword]:
            yield f"{path}: {keyword} narrowed from {old[keyword]} to {new[keyword]}"


def _properties(old: dict[str, Any], new: dict[str, Any], path: str) -> Iterator[str]:
    old_properties: dict[str, Any] = old.get("properties", {})
    new_properties: dict[str, Any] = new.get("properties", {})
    keeps_unknown = new.get("x-kubernetes-preserve-unknown-fields", False)
    for name, schema in old_properties.items():
        if name in new_properties:
            yield from _schema(schema, new_properties[name], f"{path}.{name}")
        elif not keeps_unknown:
            yield f"{path}.{name}: removed (stored values would be pruned)"
    for name in set(new.get("required", [])) - set(old.get("required", [])):
        if "default" not in new_properties.get(name, {}):
            yield f"{path}.{name}: newly required, without a default"

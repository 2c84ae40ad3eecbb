"""The rule of thumb that says when a source is larger than its bridge pod is sized for, and
the reconcile that says so (a Warning Event, the spec applied anyway)."""

from __future__ import annotations

from typing import Any

import kopf
import pytest

from ws2kafka.bridge.config import parse_spec
from ws2kafka.bridge.podtemplate import BridgeTemplate
from ws2kafka.operator import kube, reconcile
from ws2kafka.operator.events import EventLimiter
from ws2kafka.operator.settings import OperatorSettings
from ws2kafka.operator.sizing import (
    MSGS_PER_CORE,
    PLANNING_MSGS_PER_STREAM,
    bridge_cpu,
    cpu_cores,
    oversized,
)

#: Streams one default bridge pod (1 core) is sized for.
FITS = MSGS_PER_CORE // PLANNING_MSGS_PER_STREAM


def source(streams: int, **fields: Any) -> dict[str, Any]:
    return {
        "url": "wss://feed.example/ws",
        "kafka": {"bootstrapServers": "k:9092", "topic": "t"},
        "streams": {
            "names": [f"s{n}" for n in range(streams)],
            "maxPerConnection": 1000,
            "maxConnections": 200,
            "subscribeTemplate": '{"params":{streams}}',
        },
        **fields,
    }


@pytest.mark.parametrize(
    ("quantity", "cores"), [("1", 1.0), ("500m", 0.5), ("2.5", 2.5), ("lots", None)]
)
def test_cpu_quantities_in_cores(quantity: str, cores: float | None) -> None:
    assert cpu_cores(quantity) == cores


def test_the_bridge_cpu_is_the_template_limit_then_request_then_the_operator_default() -> None:
    settings = OperatorSettings()
    assert bridge_cpu(settings, None) == 1.0  # the operator's default limit
    requests_only = {"container": {"resources": {"requests": {"cpu": "250m"}}}}
    assert bridge_cpu(settings, BridgeTemplate.model_validate(requests_only)) == 0.25
    limited = {"container": {"resources": {"limits": {"cpu": "2"}, "requests": {"cpu": "1"}}}}
    assert bridge_cpu(settings, BridgeTemplate.model_validate(limited)) == 2.0
    empty = BridgeTemplate.model_validate({"container": {"resources": {}}})
    assert bridge_cpu(settings, empty) is None, "they replace the defaults: unbounded"
    unbounded = OperatorSettings(cpu_limit="", cpu_request="")
    assert bridge_cpu(unbounded, None) is None


def test_a_source_beyond_the_rule_of_thumb_is_oversized_and_says_by_how_much() -> None:
    assert oversized(parse_spec(source(FITS)), 1.0) is None
    message = oversized(parse_spec(source(FITS + 1)), 1.0)
    assert message is not None
    assert message.startswith(f"{FITS + 1} streams at a planning rate of 10 msg/s each")
    assert "need about 1.1 CPU cores" in message
    assert "the bridge container has 1:" in message
    assert oversized(parse_spec(source(FITS + 1)), 2.0) is None, "two cores carry it"
    assert oversized(parse_spec(source(FITS * 10)), None) is None, "nothing bounds the CPU"
    plain = {"url": "wss://f/ws", "kafka": {"bootstrapServers": "k:9", "topic": "t"}}
    assert oversized(parse_spec(plain), 0.1) is None, "no streams: nothing to plan"


def test_reconcile_warns_about_an_oversized_source_and_applies_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    applied: list[str] = []
    events: list[tuple[str, str, str]] = []
    monkeypatch.setattr(kube, "apply", lambda manifest: applied.append(manifest["kind"]))
    monkeypatch.setattr(kopf, "adopt", lambda manifest, owner: None)
    monkeypatch.setattr(
        kopf,
        "event",
        lambda body, type, reason, message: events.append((type, reason, message)),
    )
    body = {"metadata": {"namespace": "ns", "name": "big", "uid": "u"}}
    small = {"container": {"resources": {"limits": {"cpu": "500m"}}}}
    spec = source(FITS, template=small)
    reconcile.reconcile_source(body, spec, "big", "ns", OperatorSettings(), EventLimiter(0), {})
    (warning,) = [event for event in events if event[1] == "Oversized"]
    assert warning[0] == "Warning"
    assert "the bridge container has 0.5:" in warning[2]
    assert "Deployment" in applied, "applied anyway"

"""Whether a source is larger than its bridge pod is sized for: a rule of thumb, pure.

The operator cannot know a feed's message rate. It knows how many streams a source lists, and
the CPU its bridge container may use (its limit, else its request). The rule of thumb
(``docs/performance.md``, "Many connections in one bridge"):

- plan :data:`PLANNING_MSGS_PER_STREAM` messages per second for each stream (a depth stream
  at 100 ms sends 10; a trade stream fewer on average and more in bursts);
- one core of the bridge carries :data:`MSGS_PER_CORE` messages per second with many
  connections: half of what the benchmark measured with 50 connections, the other half left
  for bursts, reconnects and the drain.

A source whose planned rate is beyond what its CPU carries is *oversized*: the operator says
so in a Warning Event (``Oversized``) and its log, with the numbers, and applies it anyway
(the rule cannot know the real rate; a quiet feed may well fit).
"""

from __future__ import annotations

import math
from decimal import Decimal, InvalidOperation

from ws2kafka.bridge.config import WebSocketSourceSpec
from ws2kafka.bridge.podtemplate import BridgeTemplate, merged

from .settings import OperatorSettings

#: Messages per second planned for each stream of ``spec.streams``.
PLANNING_MSGS_PER_STREAM = 10
#: Messages per second one CPU core of a bridge carries with many connections: the benchmark's
#: 50 connections at 20,000 msg/s together cost 31.6 us per message (``docs/connections.json``,
#: 2026-12-02), about 31,600 msg/s per core; half of it.
MSGS_PER_CORE = 15_000


def cpu_cores(quantity: str) -> float | None:
    """A Kubernetes CPU quantity in cores (``"500m"`` -> 0.5, ``"2"`` -> 2); None if it is
    not one."""
    text = quantity.strip()
    try:
        if text.endswith("m"):
            return float(Decimal(text[:-1]) / 1000)
        return float(Decimal(text))
    except InvalidOperation:
        return None


def bridge_cpu(settings: OperatorSettings, template: BridgeTemplate | None) -> float | None:
    """The cores a source's bridge container may use: the limit, else the request, of the
    resources its template sets (they replace the operator's), else of the operator's
    defaults; None when nothing bounds it."""
    resources = merged(settings.bridge_template, template).container.resources
    if resources is None:
        quantity: object = settings.cpu_limit or settings.cpu_request
    else:
        limits, requests = resources.get("limits") or {}, resources.get("requests") or {}
        quantity = limits.get("cpu") or requests.get("cpu")
    return cpu_cores(str(quantity)) if quantity else None


def oversized(spec: WebSocketSourceSpec, cores: float | None) -> str | None:
    """What to tell the user when ``spec`` plans more than ``cores`` carry (None: it fits, or
    nothing bounds the CPU, or the source lists no streams)."""
    if spec.streams is None or cores is None or cores <= 0:
        return None
    streams = len(spec.streams.names)
    planned = streams * PLANNING_MSGS_PER_STREAM
    carried = cores * MSGS_PER_CORE
    if planned <= carried:
        return None
    needed = math.ceil(planned / MSGS_PER_CORE * 10) / 10
    return (
        f"{streams} streams at a planning rate of {PLANNING_MSGS_PER_STREAM} msg/s each "
        f"({planned:,} msg/s) need about {needed:g} CPU cores ({MSGS_PER_CORE:,} msg/s per "
        f"core), the bridge container has {cores:g}: raise its CPU "
        "(spec.template.container.resources) or split the source"
    )

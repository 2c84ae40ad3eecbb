"""Operator settings, from command-line flags or ``WS2KAFKA_OPERATOR_*`` environment variables."""

from __future__ import annotations

import json
import os
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from ws2kafka.bridge.podtemplate import BridgeTemplate

from .election import Timings
from .ratelimit import DEFAULT_BURST, DEFAULT_QPS


class Mode(StrEnum):
    """How sources are run."""

    POD = "pod"
    """One Deployment (bridge pod) per source: production."""
    INLINE = "inline"
    """Every bridge inside the operator process: local use and small installs."""


class BridgePod(BaseModel):
    """Where bridge pods run and how their image is pulled (pod mode), as in a PodSpec.

    Set as JSON in ``WS2KAFKA_OPERATOR_BRIDGE_POD`` (the Helm chart's ``bridge.*`` values). The
    Secrets named in ``imagePullSecrets`` must exist in the namespace of each source: bridge
    pods run there, under a ServiceAccount of their own.
    """

    model_config = ConfigDict(
        frozen=True, extra="forbid", alias_generator=to_camel, populate_by_name=True
    )

    image_pull_secrets: list[str] = Field(default_factory=list)
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[dict[str, Any]] = Field(default_factory=list)
    affinity: dict[str, Any] = Field(default_factory=dict)
    priority_class_name: str = ""


class OperatorSettings(BaseModel):
    """Everything the operator needs to know besides the resources themselves."""

    model_config = ConfigDict(frozen=True)

    mode: Mode = Mode.POD
    namespaces: list[str] = Field(default_factory=list)
    """Namespaces to watch; empty means cluster-wide."""
    bridge_image: str = "ghcr.io/ws2kafka/ws2kafka:0.2.0"
    """Image of bridge pods (the same image runs the operator)."""
    image_pull_policy: str = "IfNotPresent"
    cpu_request: str = "100m"
    memory_request: str = "128Mi"
    cpu_limit: str = "1"
    memory_limit: str = "512Mi"
    heartbeat_timeout_seconds: float = Field(default=30.0, gt=0)
    """A bridge whose last status report is older than this is not Ready."""
    report_interval_seconds: float = Field(default=5.0, gt=0)
    """How often a bridge reports its counters (state changes are reported at once)."""
    condition_interval_seconds: float = Field(default=5.0, gt=0)
    """How often the operator re-derives conditions from the facts."""
    api_qps: float = Field(default=DEFAULT_QPS, ge=0)
    """The operator's own API requests a second (applies, status patches), after a burst of
    ``api_burst``: a catch-up of thousands of sources does not flood the API server (0: no
    limit). The Lease requests of leader election are not limited."""
    api_burst: int = Field(default=DEFAULT_BURST, ge=1)
    secret_check_seconds: float = Field(default=30.0, ge=0)
    """How often an inline bridge's Secrets are read again, so that a rotated one is taken up
    without a restart (0: only when the bridge starts). Bridge pods watch their mounted
    Secret files themselves."""
    event_interval_seconds: float = Field(default=60.0, ge=0)
    """At most one Event per resource and reason in this many seconds."""
    bridge_pod: BridgePod = Field(default_factory=BridgePod)
    """Scheduling and image pull secrets of bridge pods."""
    bridge_template: BridgeTemplate = Field(default_factory=BridgeTemplate)
    """Defaults of every bridge pod's ``spec.template`` (the chart's ``bridge.template``), as
    JSON in ``WS2KAFKA_OPERATOR_BRIDGE_TEMPLATE``; a source's own template is merged over it."""
    leader_election: bool = False
    """Act only while holding the Lease ``lease_namespace/lease_name`` (several replicas);
    off: the one replica acts from the start, as without a Lease."""
    lease_name: str = "ws2kafka-operator"
    lease_namespace: str = "default"
    """The operator's own namespace (the chart sets it)."""
    lease_identity: str = ""
    """This replica's name in the Lease (the chart sets the pod's name); empty: host name,
    process id and a random suffix."""
    lease_duration_seconds: float = Field(default=10.0, gt=0)
    """How long a standby waits after the Lease last changed before taking it over."""
    renew_deadline_seconds: float = Field(default=7.0, gt=0)
    """How long the leader goes on acting without renewing the Lease (API server unreachable)."""
    retry_period_seconds: float = Field(default=2.0, gt=0)
    """How often the leader renews the Lease and a standby looks at it."""

    @model_validator(mode="after")
    def _election_timings(self) -> OperatorSettings:
        self.election_timings()  # raises ValueError if they do not nest
        return self

    def election_timings(self) -> Timings:
        return Timings(
            self.lease_duration_seconds, self.renew_deadline_seconds, self.retry_period_seconds
        )

    @classmethod
    def from_env(cls, **overrides: object) -> OperatorSettings:
        """Defaults, overridden by ``WS2KAFKA_OPERATOR_<FIELD>`` variables, then by flags."""
        values: dict[str, object] = {}
        for name in cls.model_fields:
            variable = f"WS2KAFKA_OPERATOR_{name.upper()}"
            raw = os.environ.get(variable)
            if raw is None:
                continue
            if name == "namespaces":
                values[name] = raw.split(",")
            elif name in ("bridge_pod", "bridge_template"):
                values[name] = _json(variable, raw)
            else:
                values[name] = raw
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.model_validate(values)


def _json(variable: str, raw: str) -> object:
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise ValueError(f"{variable} is not JSON: {exc}") from None

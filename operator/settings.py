"""Operator settings, from command-line flags or ``WS2KAFKA_OPERATOR_*`` environment variables."""

from __future__ import annotations

import os
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class Mode(StrEnum):
    """How sources are run."""

    POD = "pod"
    """One Deployment (bridge pod) per source: production."""
    INLINE = "inline"
    """Every bridge inside the operator process: local use and small installs."""


class OperatorSettings(BaseModel):
    """Everything the operator needs to know besides the resources themselves."""

    model_config = ConfigDict(frozen=True)

    mode: Mode = Mode.POD
    namespaces: list[str] = Field(default_factory=list)
    """Namespaces to watch; empty means cluster-wide."""
    bridge_image: str = "ghcr.io/ws2kafka/ws2kafka:0.1.0"
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
    event_interval_seconds: float = Field(default=60.0, ge=0)
    """At most one Event per resource and reason in this many seconds."""

    @classmethod
    def from_env(cls, **overrides: object) -> OperatorSettings:
        """Defaults, overridden by ``WS2KAFKA_OPERATOR_<FIELD>`` variables, then by flags."""
        values: dict[str, object] = {}
        for name in cls.model_fields:
            raw = os.environ.get(f"WS2KAFKA_OPERATOR_{name.upper()}")
            if raw is not None:
                values[name] = raw.split(",") if name == "namespaces" else raw
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.model_validate(values)

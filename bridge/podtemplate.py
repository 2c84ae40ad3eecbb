"""How a bridge pod is customised: ``spec.template``, after Strimzi's ``template`` convention.

The operator builds a hardened pod for every source; users add to it what their cluster needs
(a proxy in ``env``, a CA in a volume, labels for a policy engine, host networking, the UID
range OpenShift assigns) without forking the operator. The same model is the chart-wide
default (the chart's ``bridge.template`` value); a source's own ``spec.template`` is merged over
it by :func:`merged`. Kubernetes objects inside it (EnvVar, Volume, SecurityContext...) are
checked by the API server when the operator applies the pod, so they are kept as given here.

The bridge process itself ignores the template: the operator removes it from the config file.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, TypeVar

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

_PRESERVED: Final = {"x-kubernetes-preserve-unknown-fields": True}
#: A Kubernetes object (SecurityContext, ResourceRequirements), validated by the API server
#: when the operator applies the pod.
KubeObject = Annotated[dict[str, Any], Field(json_schema_extra=_PRESERVED)]
EnvVar = Annotated[
    dict[str, Any], Field(description="A Kubernetes EnvVar.", json_schema_extra=_PRESERVED)
]
EnvFromSource = Annotated[
    dict[str, Any], Field(description="A Kubernetes EnvFromSource.", json_schema_extra=_PRESERVED)
]
Volume = Annotated[
    dict[str, Any], Field(description="A Kubernetes Volume.", json_schema_extra=_PRESERVED)
]
VolumeMount = Annotated[
    dict[str, Any], Field(description="A Kubernetes VolumeMount.", json_schema_extra=_PRESERVED)
]
DEFAULT_METRICS_PORT = 9400
T = TypeVar("T")


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        use_attribute_docstrings=True,
    )


class PodMetadata(_Model):
    """Labels and annotations added to the bridge pod (the operator's own ones win)."""

    labels: dict[str, str] = Field(default_factory=dict, max_length=64)
    """Extra pod labels."""
    annotations: dict[str, str] = Field(default_factory=dict, max_length=64)
    """Extra pod annotations."""


class PodTemplate(_Model):
    """Settings of the bridge pod."""

    metadata: PodMetadata = Field(default_factory=PodMetadata)
    """Extra labels and annotations."""
    security_context: KubeObject | None = None
    """The pod's securityContext, replacing the default one (non-root UID 10001, seccomp
    RuntimeDefault). On OpenShift's restricted SCC, leave out runAsUser/runAsGroup."""
    host_network: bool | None = None
    """Run the pod in the node's network namespace (then give each source its own
    ``container.metricsPort``: two bridges on one node cannot share a port)."""
    dns_policy: str | None = Field(default=None, max_length=64)
    """The pod's dnsPolicy (ClusterFirstWithHostNet with host networking)."""
    volumes: list[Volume] = Field(default_factory=list, max_length=64)
    """Extra volumes (Secrets, ConfigMaps...), for ``container.volumeMounts``."""


class ContainerTemplate(_Model):
    """Settings of the bridge container."""

    env: list[EnvVar] = Field(default_factory=list, max_length=128)
    """Extra environment variables (EnvVar), e.g. HTTPS_PROXY and NO_PROXY."""
    env_from: list[EnvFromSource] = Field(default_factory=list, max_length=32)
    """Extra environment variables from ConfigMaps or Secrets (EnvFromSource)."""
    volume_mounts: list[VolumeMount] = Field(default_factory=list, max_length=64)
    """Extra volume mounts (VolumeMount) of ``pod.volumes``."""
    security_context: KubeObject | None = None
    """The container's securityContext, replacing the default one (no privilege escalation,
    read-only root filesystem, all capabilities dropped)."""
    resources: KubeObject | None = None
    """The container's resources, replacing the operator's defaults."""
    metrics_port: int | None = Field(default=None, ge=1024, le=65535)
    """Port of the bridge's /metrics, /healthz and /readyz (default 9400)."""


class BridgeTemplate(_Model):
    """Customisations of a source's bridge pod (pod mode only)."""

    pod: PodTemplate = Field(default_factory=PodTemplate)
    """The pod."""
    container: ContainerTemplate = Field(default_factory=ContainerTemplate)
    """The bridge container."""


def merged(base: BridgeTemplate, override: BridgeTemplate | None) -> BridgeTemplate:
    """``override`` over ``base``: maps merge key by key, lists append (an env variable of
    ``override`` replaces the one of ``base`` with its name), other set values replace."""
    if override is None:
        return base
    pod, extra_pod = base.pod, override.pod
    container, extra_container = base.container, override.container
    return BridgeTemplate(
        pod=PodTemplate(
            metadata=PodMetadata(
                labels={**pod.metadata.labels, **extra_pod.metadata.labels},
                annotations={**pod.metadata.annotations, **extra_pod.metadata.annotations},
            ),
            security_context=_first(extra_pod.security_context, pod.security_context),
            host_network=_first(extra_pod.host_network, pod.host_network),
            dns_policy=_first(extra_pod.dns_policy, pod.dns_policy),
            volumes=[*pod.volumes, *extra_pod.volumes],
        ),
        container=ContainerTemplate(
            env=_by_name(container.env, extra_container.env),
            env_from=[*container.env_from, *extra_container.env_from],
            volume_mounts=[*container.volume_mounts, *extra_container.volume_mounts],
            security_context=_first(extra_container.security_context, container.security_context),
            resources=_first(extra_container.resources, container.resources),
            metrics_port=_first(extra_container.metrics_port, container.metrics_port),
        ),
    )


def _first(preferred: T | None, fallback: T | None) -> T | None:
    return preferred if preferred is not None else fallback


def _by_name(base: list[dict[str, Any]], override: list[dict[str, Any]]) -> list[dict[str, Any]]:
    names = {item.get("name") for item in override}
    return [*(item for item in base if item.get("name") not in names), *override]

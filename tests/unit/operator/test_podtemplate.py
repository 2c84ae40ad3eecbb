"""spec.template over the chart-wide bridge.template, applied to the rendered bridge pod."""

from typing import Any

from ws2kafka.bridge.podtemplate import BridgeTemplate
from ws2kafka.operator.resources import build_deployment, render_source
from ws2kafka.operator.settings import OperatorSettings

SPEC = {"url": "ws://127.0.0.1:1/feed", "kafka": {"bootstrapServers": "k:9092", "topic": "t"}}
CHART_WIDE = {
    "pod": {"metadata": {"labels": {"team": "feeds", "tier": "a"}}, "hostNetwork": True},
    "container": {
        "env": [
            {"name": "KUBERNETES_SERVICE_HOST", "value": "127.0.0.1"},
            {"name": "HTTPS_PROXY", "value": "http://proxy:3128"},
        ]
    },
}


def pod_of(spec: dict[str, Any], chart_wide: dict[str, Any]) -> dict[str, Any]:
    settings = OperatorSettings(bridge_template=BridgeTemplate.model_validate(chart_wide))
    deployment = build_deployment("src", "ns", render_source(spec), settings, suspended=False)
    template: dict[str, Any] = deployment["spec"]["template"]
    return template


def test_defaults_leave_the_hardened_pod_as_it_is() -> None:
    pod = pod_of(SPEC, {})
    spec = pod["spec"]
    assert spec["securityContext"]["runAsUser"] == 10001
    assert "hostNetwork" not in spec
    [bridge] = spec["containers"]
    assert bridge["ports"] == [{"name": "metrics", "containerPort": 9400}]
    assert bridge["securityContext"]["readOnlyRootFilesystem"] is True


def test_source_template_merges_over_the_chart_wide_one() -> None:
    own = {
        "pod": {
            "metadata": {"labels": {"tier": "b"}, "annotations": {"policy": "x"}},
            "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
            "volumes": [{"name": "ca", "secret": {"secretName": "ca"}}],
        },
        "container": {
            "env": [{"name": "HTTPS_PROXY", "value": "http://other:3128"}],
            "envFrom": [{"configMapRef": {"name": "proxy"}}],
            "volumeMounts": [{"name": "ca", "mountPath": "/ca", "readOnly": True}],
            "resources": {"limits": {"memory": "1Gi"}},
            "metricsPort": 9471,
        },
    }
    pod = pod_of({**SPEC, "template": own}, CHART_WIDE)
    metadata, spec = pod["metadata"], pod["spec"]
    assert metadata["labels"]["team"] == "feeds"
    assert metadata["labels"]["tier"] == "b"
    assert metadata["labels"]["app.kubernetes.io/component"] == "bridge"
    assert metadata["annotations"]["policy"] == "x"
    assert metadata["annotations"]["prometheus.io/port"] == "9471"
    assert spec["hostNetwork"] is True
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert spec["containers"][0][probe]["httpGet"]["host"] == "127.0.0.1"
    assert "runAsUser" not in spec["securityContext"], "OpenShift assigns the UID"
    assert spec["volumes"][-1] == {"name": "ca", "secret": {"secretName": "ca"}}
    [bridge] = spec["containers"]
    assert bridge["env"][-2:] == [
        {"name": "KUBERNETES_SERVICE_HOST", "value": "127.0.0.1"},
        {"name": "HTTPS_PROXY", "value": "http://other:3128"},
    ]
    assert bridge["envFrom"] == [{"configMapRef": {"name": "proxy"}}]
    assert bridge["volumeMounts"][-1]["mountPath"] == "/ca"
    assert bridge["resources"] == {"limits": {"memory": "1Gi"}}
    assert bridge["ports"] == [{"name": "metrics", "containerPort": 9471}]
    assert bridge["args"][bridge["args"].index("--metrics-port") + 1] == "9471"


def test_the_bridge_config_does_not_carry_the_template() -> None:
    rendered = render_source({**SPEC, "template": {"pod": {"hostNetwork": True}}})
    assert "template" not in rendered.config_yaml
    assert rendered.spec_hash == render_source(SPEC).spec_hash

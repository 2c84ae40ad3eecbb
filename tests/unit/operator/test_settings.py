"""Operator settings from the environment, and a clear refusal of a bad one."""

import pytest

from ws2kafka.operator.__main__ import main
from ws2kafka.operator.settings import BridgePod, OperatorSettings


def test_bridge_pod_settings_are_json_in_one_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "WS2KAFKA_OPERATOR_BRIDGE_POD",
        '{"imagePullSecrets": ["registry"], "nodeSelector": {"pool": "feeds"}}',
    )
    monkeypatch.setenv("WS2KAFKA_OPERATOR_NAMESPACES", "a,b")
    settings = OperatorSettings.from_env()
    assert settings.bridge_pod == BridgePod(
        image_pull_secrets=["registry"], node_selector={"pool": "feeds"}
    )
    assert settings.namespaces == ["a", "b"]


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("{not json", "WS2KAFKA_OPERATOR_BRIDGE_POD is not JSON"),
        ('{"nodeSelectr": {}}', "nodeSelectr"),
        ('{"tolerations": "all"}', "tolerations"),
    ],
)
def test_a_bad_setting_exits_2_naming_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], value: str, problem: str
) -> None:
    monkeypatch.setenv("WS2KAFKA_OPERATOR_BRIDGE_POD", value)
    assert main(["run"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("ws2kafka-operator: invalid settings:")
    assert problem in error

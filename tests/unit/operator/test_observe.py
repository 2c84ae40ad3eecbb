"""Facts from the operator's index of bridge Deployments, without an API server."""

import pytest

from ws2kafka.operator.conditions import PodProblem
from ws2kafka.operator.observe import (
    DeploymentIndex,
    PodIndex,
    bridge_pod_problem,
    deployment_available,
    is_available,
)


@pytest.mark.parametrize(
    ("status", "available"),
    [({}, False), ({"availableReplicas": 0}, False), ({"availableReplicas": 1}, True)],
)
def test_available_means_an_available_replica(status: dict[str, int], available: bool) -> None:
    assert is_available(status) is available


def test_the_index_answers_for_the_sources_own_deployment() -> None:
    index: DeploymentIndex = {("ns", "up-bridge"): [True], ("ns", "down-bridge"): [False]}
    assert deployment_available(index, "ns", "up") is True
    assert deployment_available(index, "ns", "down") is False
    assert deployment_available(index, "other", "up") is None  # not created (yet)
    assert deployment_available(None, "ns", "up") is None  # inline mode: no Deployments


def test_the_pod_index_gives_the_first_problem_of_the_sources_pods() -> None:
    stuck = PodProblem("up-bridge-1", "CrashLoopBackOff", "pod up-bridge-1: CrashLoopBackOff")
    index: PodIndex = {("ns", "up"): [None, stuck], ("ns", "fine"): [None]}
    assert bridge_pod_problem(index, "ns", "up") == stuck
    assert bridge_pod_problem(index, "ns", "fine") is None
    assert bridge_pod_problem(index, "ns", "absent") is None
    assert bridge_pod_problem(None, "ns", "up") is None  # inline mode: no pods

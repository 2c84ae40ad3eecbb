"""Conditions from facts: one summary (Ready), truthful reasons, stable transition times."""

from datetime import UTC, datetime, timedelta

import pytest

from ws2kafka.operator.conditions import (
    MAX_POD_MESSAGE,
    Facts,
    PodCreating,
    PodProblem,
    derive,
    event_problem,
    merge_conditions,
    pod_problem,
    pod_verdict,
)

CONNECTED = {"state": "Connected", "since": "2026-11-28T00:00:00Z", "messagesDropped": 0}


def facts(**overrides: object) -> Facts:
    base: dict[str, object] = {
        "generation": 3,
        "spec_error": None,
        "suspended": False,
        "connection": CONNECTED,
        "heartbeat_age": 1.0,
        "heartbeat_timeout": 30.0,
        "deployment_available": True,
    }
    return Facts(**{**base, **overrides})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("overrides", "status", "reason"),
    [
        ({}, "True", "Streaming"),
        ({"spec_error": "spec.url: bad"}, "False", "SpecInvalid"),
        ({"suspended": True}, "False", "Suspended"),
        ({"deployment_available": False}, "False", "DeploymentUnavailable"),
        ({"heartbeat_age": None, "connection": None}, "False", "BridgeStarting"),
        ({"heartbeat_age": 31.0}, "False", "BridgeNotReporting"),
        ({"connection": {"state": "Backoff", "lastError": "refused"}}, "False", "Backoff"),
        ({"connection": {"state": "GaveUp"}}, "False", "GaveUp"),
        ({"deployment_available": None}, "True", "Streaming"),
    ],
)
def test_ready(overrides: dict[str, object], status: str, reason: str) -> None:
    ready = derive(facts(**overrides))["Ready"]
    assert (ready.status, ready.reason) == (status, reason)


GAVE_UP = {
    "state": "GaveUp",
    "since": "T0",
    "lastError": "gave up after 1 failed attempts: refused",
}


@pytest.mark.parametrize(
    ("overrides", "note"),
    [
        ({}, ""),  # autoRestart off: as before
        ({"auto_restart": {"count": 0, "nextRestartTime": "2026-12-02T04:00:10Z"}},
         "; automatic restart 1 at 2026-12-02T04:00:10Z"),
        ({"auto_restart": {"count": 3, "nextRestartTime": None}, "max_restarts": 3},
         "; no more automatic restarts: maxRestarts (3) reached"),
        ({"auto_restart": {"count": 3, "nextRestartTime": None}}, ""),  # restarting now
        ({"auto_restart": {"count": 2, "nextRestartTime": None, "lastGiveUpTime": "T0",
                           "lastRestartTime": "T1"}},
         "; automatic restart 2 made at T1"),  # pod mode: the new pod has not reported yet
        ({"auto_restart": {"count": 3, "nextRestartTime": None, "lastGiveUpTime": "T0",
                           "lastRestartTime": "T1"}, "max_restarts": 3},
         "; automatic restart 3 made at T1"),  # the last restart is under way: not the limit
        ({"auto_restart": {"count": 3, "nextRestartTime": None, "lastGiveUpTime": "T0",
                           "lastRestartTime": "S9"}, "max_restarts": 3},
         "; no more automatic restarts: maxRestarts (3) reached"),  # its pod gave up again
    ],
)  # fmt: skip
def test_ready_of_a_bridge_that_gave_up_says_what_auto_restart_does(
    overrides: dict[str, object], note: str
) -> None:
    ready = derive(facts(connection=GAVE_UP, **overrides))["Ready"]
    assert (ready.status, ready.reason) == ("False", "GaveUp")
    assert ready.message == GAVE_UP["lastError"] + note


def test_a_bridge_that_gave_up_for_auto_restart_is_not_reported_missing() -> None:
    """It stopped reporting because it ended: its last word holds while the restart waits;
    without autoRestart the heartbeat's age decides, as before."""
    auto = {"count": 0, "nextRestartTime": "2026-12-02T04:00:10Z"}
    waiting = derive(facts(connection=GAVE_UP, heartbeat_age=300.0, auto_restart=auto))
    assert (waiting["Ready"].reason, waiting["Ready"].message) == (
        "GaveUp",
        GAVE_UP["lastError"] + "; automatic restart 1 at 2026-12-02T04:00:10Z",
    )
    silent = derive(facts(connection=GAVE_UP, heartbeat_age=300.0))
    assert silent["Ready"].reason == "BridgeNotReporting"


def test_a_bridge_pod_that_gave_up_and_stays_not_ready_is_shown_as_given_up() -> None:
    """Pod mode: the pod that stays after giving up is not ready, so its Deployment is
    unavailable; what the operator does next is the truth, unless the pod cannot run."""
    auto = {"count": 0, "nextRestartTime": "2026-12-02T04:00:10Z"}
    staying = facts(connection=GAVE_UP, deployment_available=False, auto_restart=auto)
    assert derive(staying)["Ready"].reason == "GaveUp"
    crash = PodProblem("src-abc", "CrashLoopBackOff", "exit 2")
    crashing = facts(
        connection=GAVE_UP, deployment_available=False, auto_restart=auto, pod_problem=crash
    )
    assert derive(crashing)["Ready"].reason == "CrashLoopBackOff"
    without = facts(connection=GAVE_UP, deployment_available=False)
    assert derive(without)["Ready"].reason == "DeploymentUnavailable"


def test_auto_restart_says_nothing_of_a_bridge_that_did_not_give_up() -> None:
    backoff = {"state": "Backoff", "lastError": "refused"}
    auto = {"count": 1, "nextRestartTime": "2026-12-02T04:00:10Z"}
    assert derive(facts(connection=backoff, auto_restart=auto))["Ready"].message == "refused"


UNREACHABLE = {
    "reason": "BrokersUnreachable",
    "message": "no Kafka broker reachable (last error: refused); 574 records wait in the buffer",
}


@pytest.mark.parametrize(
    ("kafka", "ready", "producing"),
    [
        ({"reason": "Producing", "message": "ok"}, ("True", "Streaming"), ("True", "Producing")),
        (UNREACHABLE, ("False", "BrokersUnreachable"), ("False", "BrokersUnreachable")),
        (
            {"reason": "TopicAuthorizationFailed", "message": "denied"},
            ("False", "TopicAuthorizationFailed"),
            ("False", "TopicAuthorizationFailed"),
        ),
        (None, ("True", "Streaming"), ("Unknown", "BridgeNotReporting")),
    ],
)
def test_ready_covers_the_kafka_side(
    kafka: dict[str, str] | None, ready: tuple[str, str], producing: tuple[str, str]
) -> None:
    """A bridge connected to its feed is not Ready while nothing reaches Kafka (an older
    bridge that reports no Kafka side is judged by its connection alone)."""
    verdicts = derive(facts(connection={**CONNECTED, "kafka": kafka}))
    assert (verdicts["Ready"].status, verdicts["Ready"].reason) == ready
    assert (verdicts["Producing"].status, verdicts["Producing"].reason) == producing
    if kafka is UNREACHABLE:
        assert "574 records wait" in verdicts["Ready"].message


def test_degraded_on_losses_and_terminal_states() -> None:
    assert derive(facts())["Degraded"].status == "False"
    lossy = derive(facts(connection={**CONNECTED, "messagesDropped": 4}))["Degraded"]
    assert (lossy.status, lossy.reason) == ("True", "MessagesLost")
    assert derive(facts(connection={"state": "AuthenticationFailed"}))["Degraded"].status == "True"


def test_stale_heartbeat_makes_connected_unknown() -> None:
    connected = derive(facts(heartbeat_age=99.0))["Connected"]
    assert (connected.status, connected.reason) == ("Unknown", "BridgeNotReporting")


def test_transition_time_moves_only_when_status_changes() -> None:
    t0 = datetime(2026, 11, 28, tzinfo=UTC)
    first = merge_conditions([], derive(facts()), 3, t0)
    assert [c["type"] for c in first] == [
        "Ready",
        "Connected",
        "Producing",
        "Progressing",
        "Degraded",
    ]
    same = merge_conditions(first, derive(facts()), 3, t0 + timedelta(minutes=5))
    assert same == first
    down = merge_conditions(first, derive(facts(heartbeat_age=99.0)), 3, t0 + timedelta(minutes=9))
    ready = next(c for c in down if c["type"] == "Ready")
    assert ready["lastTransitionTime"] == "2026-11-28T00:09:00Z"
    degraded = next(c for c in down if c["type"] == "Degraded")
    assert degraded["lastTransitionTime"] == "2026-11-28T00:00:00Z"


def crash_looping(last: dict[str, object]) -> dict[str, object]:
    """A bridge container's status as the kubelet writes it while backing off a restart."""
    return {
        "phase": "Running",
        "containerStatuses": [
            {
                "name": "bridge",
                "state": {
                    "waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s restarting"}
                },
                "lastState": {"terminated": last},
            }
        ],
    }


def test_a_crash_loop_names_the_last_termination_message() -> None:
    last = {"exitCode": 2, "reason": "Error", "message": "spec.tls.ca: cannot read /x\n"}
    problem = pod_problem("p-1", crash_looping(last))
    assert problem == PodProblem(
        "p-1",
        "CrashLoopBackOff",
        "pod p-1: CrashLoopBackOff: back-off 40s restarting; "
        "last exit code 2 (Error): spec.tls.ca: cannot read /x",
    )


def test_a_memory_limit_crash_is_reported_as_oomkilled() -> None:
    problem = pod_problem("p-1", crash_looping({"exitCode": 137, "reason": "OOMKilled"}))
    assert problem is not None
    assert problem.reason == "OOMKilled"
    assert problem.message.endswith("last exit code 137 (OOMKilled)")


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (
            {"containerStatuses": [{"state": {"waiting": {"reason": "ImagePullBackOff"}}}]},
            "ImagePullBackOff",
        ),
        (
            {
                "containerStatuses": [
                    {
                        "state": {
                            "waiting": {
                                "reason": "CreateContainerConfigError",
                                "message": 'secret "feed" not found',
                            }
                        }
                    }
                ]
            },
            "CreateContainerConfigError",
        ),
        (
            {
                "conditions": [
                    {"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}
                ]
            },
            "Unschedulable",
        ),
        ({"phase": "Failed", "reason": "Evicted", "message": "low on memory"}, "Evicted"),
    ],
)
def test_pod_problems_keep_the_kubelets_reason(status: dict[str, object], reason: str) -> None:
    problem = pod_problem("p-1", status)
    assert problem is not None
    assert problem.reason == reason


@pytest.mark.parametrize(
    "status",
    [
        {},
        {"phase": "Pending"},
        {"containerStatuses": [{"state": {"waiting": {"reason": "ContainerCreating"}}}]},
        {
            "containerStatuses": [
                {
                    "state": {"running": {"startedAt": "2026-11-28T00:00:00Z"}},
                    "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}},
                }
            ]
        },
    ],
)
def test_a_pod_on_its_way_up_or_running_has_no_problem(status: dict[str, object]) -> None:
    assert pod_problem("p-1", status) is None


def test_a_long_termination_message_keeps_its_end() -> None:
    """The kubelet's fallback to the logs gives the last lines; the fatal error is last."""
    logs = "x" * 5000 + "\nws2kafka-operator: spec.tls.caFile: cannot load /etc/ws2kafka-tls/ca.pem"
    problem = pod_problem("p-1", crash_looping({"exitCode": 2, "message": logs}))
    assert problem is not None
    assert len(problem.message) <= MAX_POD_MESSAGE
    assert problem.message.endswith("spec.tls.caFile: cannot load /etc/ws2kafka-tls/ca.pem")
    assert "last exit code 2 (no reason): …x" in problem.message


SCHEDULED = {"type": "PodScheduled", "status": "True"}


@pytest.mark.parametrize(
    "status",
    [
        {"phase": "Pending", "conditions": [SCHEDULED]},
        {
            "phase": "Pending",
            "conditions": [SCHEDULED],
            "containerStatuses": [{"state": {"waiting": {"reason": "ContainerCreating"}}}],
        },
    ],
)
def test_a_scheduled_pending_pod_is_creating(status: dict[str, object]) -> None:
    verdict = pod_verdict("p-1", "2026-11-28T00:00:00Z", status)
    assert verdict == PodCreating("p-1", datetime(2026, 11, 28, tzinfo=UTC))


@pytest.mark.parametrize(
    "status",
    [
        {"phase": "Pending"},  # not scheduled yet: the scheduler's reason comes in status
        {"phase": "Running", "conditions": [SCHEDULED]},
        {
            "phase": "Pending",
            "conditions": [SCHEDULED],
            "containerStatuses": [{"state": {"running": {}}}],
        },
    ],
)
def test_other_pods_are_not_creating(status: dict[str, object]) -> None:
    assert pod_verdict("p-1", "2026-11-28T00:00:00Z", status) is None


def test_a_pods_problem_wins_over_creating() -> None:
    verdict = pod_verdict("p-1", "2026-11-28T00:00:00Z", crash_looping({"exitCode": 2}))
    assert isinstance(verdict, PodProblem)
    assert verdict.reason == "CrashLoopBackOff"


def test_the_newest_warning_event_is_the_pods_problem() -> None:
    events: list[dict[str, object]] = [
        {
            "reason": "FailedScheduling",
            "message": "old",
            "lastTimestamp": "2026-11-28T00:00:01+00:00",
        },
        {
            "reason": "FailedMount",
            "message": 'MountVolume.SetUp failed for volume "tls" : secret "ca" not found',
            "count": 4,
            "lastTimestamp": "2026-11-28T00:00:09+00:00",
        },
    ]
    assert event_problem("p-1", events) == PodProblem(
        "p-1",
        "FailedMount",
        'pod p-1: FailedMount (4 times): MountVolume.SetUp failed for volume "tls" : '
        'secret "ca" not found',
    )
    assert event_problem("p-1", []) is None


def test_an_unavailable_deployment_takes_the_pods_reason() -> None:
    stuck = PodProblem("p-1", "ImagePullBackOff", "pod p-1: ImagePullBackOff")
    verdicts = derive(facts(deployment_available=False, pod_problem=stuck))
    assert (verdicts["Ready"].reason, verdicts["Ready"].message) == (
        "ImagePullBackOff",
        "pod p-1: ImagePullBackOff",
    )
    assert (verdicts["Progressing"].status, verdicts["Progressing"].reason) == (
        "False",
        "ImagePullBackOff",
    )
    # a pod problem does not matter while the Deployment is available (an old pod serves)
    assert derive(facts(pod_problem=stuck))["Ready"].reason == "Streaming"


UNCLEAN_GAP = {
    "error": "UncleanExit",
    "newConnectionId": "c-new",
    "closeReason": "the previous bridge (pod a) ended without a clean stop, ... 750 ...",
}


def test_degraded_while_running_on_the_connection_after_an_unclean_exit() -> None:
    connection = {**CONNECTED, "connectionId": "c-new"}
    degraded = derive(facts(connection=connection, last_gap=UNCLEAN_GAP))["Degraded"]
    assert (degraded.status, degraded.reason) == ("True", "UncleanExit")
    assert "750" in degraded.message
    # a later connection (a reconnect or a rotation) ends it; so does an ordinary gap
    later = {**CONNECTED, "connectionId": "c-later"}
    assert derive(facts(connection=later, last_gap=UNCLEAN_GAP))["Degraded"].reason == "NoLoss"
    ordinary = {**UNCLEAN_GAP, "error": "ConnectionClosedError"}
    assert derive(facts(connection=connection, last_gap=ordinary))["Degraded"].reason == "NoLoss"


def test_a_bridge_that_could_not_start_says_why_while_its_pod_is_down() -> None:
    failed = {"state": "StartupFailed", "lastError": "spec.tls.caFile: cannot read /x"}
    ready = derive(facts(deployment_available=False, connection=failed))["Ready"]
    assert (ready.reason, ready.message) == ("StartupFailed", "spec.tls.caFile: cannot read /x")


def subscribed(state: str, message: str = "") -> Facts:
    connection = {**CONNECTED, "subscription": {"state": state, "message": message}}
    return facts(connection=connection, subscription_checked=True)


@pytest.mark.parametrize(
    ("state", "subscribed_status", "ready"),
    [
        ("Subscribed", "True", ("True", "Streaming")),
        ("Pending", "Unknown", ("False", "SubscriptionPending")),
        ("SubscriptionRejected", "False", ("False", "SubscriptionRejected")),
        ("SubscriptionTimeout", "False", ("False", "SubscriptionTimeout")),
    ],
)
def test_a_checked_subscription_is_its_own_condition_and_part_of_ready(
    state: str, subscribed_status: str, ready: tuple[str, str]
) -> None:
    verdicts = derive(subscribed(state, "Failed to subscribe"))
    assert (verdicts["Subscribed"].status, verdicts["Subscribed"].reason) == (
        subscribed_status,
        state,
    )
    assert (verdicts["Ready"].status, verdicts["Ready"].reason) == ready
    if subscribed_status == "False":
        assert verdicts["Ready"].message == "Failed to subscribe"


def test_without_spec_subscription_there_is_no_subscribed_condition() -> None:
    verdicts = derive(facts())
    assert "Subscribed" not in verdicts
    now = datetime(2026, 12, 1, tzinfo=UTC)
    types = [cond["type"] for cond in merge_conditions([], verdicts, 3, now)]
    assert types == ["Ready", "Connected", "Producing", "Progressing", "Degraded"]
    with_subscription = merge_conditions([], derive(subscribed("Subscribed")), 3, now)
    assert [cond["type"] for cond in with_subscription][2] == "Subscribed"


def logged_in(authentication: dict[str, object] | None, **connection: object) -> Facts:
    reported = {**CONNECTED, **connection, "authentication": authentication}
    return facts(connection=reported, authentication_checked=True)


REJECTED = {"state": "LoginRejected", "message": "Login failed."}
FETCH_FAILED = {"state": "TokenFetchFailed", "message": "token listenKey: HTTP 503: busy"}
EXPIRED = {"state": "TokenExpired", "message": "the server says token listenKey expired"}


@pytest.mark.parametrize(
    ("fact", "status", "reason", "message"),
    [
        (logged_in({"state": "Authenticated", "message": "ok"}), "True", "Authenticated", "ok"),
        (logged_in({"state": "Pending", "message": ""}), "Unknown", "Pending", None),
        # the refusal stays visible while the next attempt backs off or waits for its answer
        (
            logged_in({**REJECTED, "lastFailure": REJECTED}, state="AuthenticationFailed"),
            "False",
            "LoginRejected",
            "Login failed.",
        ),
        (
            logged_in({"state": "Pending", "message": "", "lastFailure": REJECTED}),
            "False",
            "LoginRejected",
            "Login failed.",
        ),
        (logged_in(None), "Unknown", "NotConnected", None),
        (facts(suspended=True, authentication_checked=True), "False", "Suspended", None),
        # spec.tokens: a failed fetch, and a token the server said expired
        (
            logged_in({**FETCH_FAILED, "lastFailure": FETCH_FAILED}, state="Backoff"),
            "False",
            "TokenFetchFailed",
            "token listenKey: HTTP 503: busy",
        ),
        (
            logged_in({**EXPIRED, "lastFailure": EXPIRED}, state="Backoff"),
            "False",
            "TokenExpired",
            "the server says token listenKey expired",
        ),
        (
            logged_in({"state": "Authenticated", "message": "token listenKey fetched"}),
            "True",
            "Authenticated",
            "token listenKey fetched",
        ),
    ],
)
def test_a_login_is_its_own_condition_authenticated(
    fact: Facts, status: str, reason: str, message: str | None
) -> None:
    verdict = derive(fact)["Authenticated"]
    assert (verdict.status, verdict.reason) == (status, reason)
    if message is not None:
        assert verdict.message == message


def test_without_spec_login_there_is_no_authenticated_condition() -> None:
    assert "Authenticated" not in derive(facts())
    now = datetime(2026, 12, 1, tzinfo=UTC)
    verdicts = derive(logged_in({"state": "Authenticated", "message": "ok"}))
    types = [cond["type"] for cond in merge_conditions([], verdicts, 3, now)]
    assert types == ["Ready", "Connected", "Authenticated", "Producing", "Progressing", "Degraded"]


def test_degraded_names_the_connections_that_are_down() -> None:
    connections = {
        "total": 12,
        "connected": 10,
        "backingOff": 1,
        "ready": "10/12",
        "unhealthy": [
            {"index": 3, "state": "Backoff", "lastError": "refused"},
            {"index": 7, "state": "Connecting", "lastError": None},
        ],
    }
    degraded = derive(facts(connection={**CONNECTED, "connections": connections}))["Degraded"]
    assert (degraded.status, degraded.reason) == ("True", "ConnectionsDown")
    assert degraded.message == "2 of 12 down: #3 Backoff (refused); #7 Connecting"
    single = {**connections, "total": 1, "connected": 1, "unhealthy": []}
    assert derive(facts(connection={**CONNECTED, "connections": single}))["Degraded"].status == (
        "False"
    )


def test_a_silent_bridges_condition_does_not_change_while_it_stays_silent() -> None:
    """Its message names the last report, not its age: otherwise every check would patch."""
    silent = {**CONNECTED, "heartbeatTime": "2026-11-28T00:00:00Z"}
    t0 = datetime(2026, 11, 28, 0, 1, tzinfo=UTC)
    first = merge_conditions([], derive(facts(connection=silent, heartbeat_age=60.0)), 3, t0)
    later = derive(facts(connection=silent, heartbeat_age=95.0))
    assert merge_conditions(first, later, 3, t0 + timedelta(seconds=35)) == first
    ready = next(c for c in first if c["type"] == "Ready")
    assert ready["message"] == "no report from the bridge since 2026-11-28T00:00:00Z (limit 30 s)"

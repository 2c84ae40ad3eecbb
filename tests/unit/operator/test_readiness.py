"""The operator's readiness: kopf started, and the API lists sources with its credentials."""

import asyncio

import pytest

from ws2kafka.operator.readiness import Readiness, list_scope


@pytest.mark.parametrize(
    ("namespaces", "scope"),
    [
        ([], [None]),
        (["team-a", "team-b"], ["team-a", "team-b"]),
        (["team-*"], [None]),
        (["team-a", "!team-b"], [None]),
    ],
)
def test_sources_are_listed_where_the_operator_watches(
    namespaces: list[str], scope: list[str | None]
) -> None:
    assert list_scope(namespaces) == scope


async def test_ready_only_after_kopf_started_and_while_the_api_answers() -> None:
    """Each check sees the verdict of the one before: ok, refused, ok, then a fourth."""
    answers: list[Exception | None] = [None, PermissionError("403 forbidden"), None, None]
    seen: list[bool] = []
    fourth = asyncio.Event()
    loop = asyncio.get_running_loop()
    readiness: Readiness

    def check(namespace: str | None) -> None:
        assert namespace == "team-a"
        seen.append(readiness.ready)
        if len(seen) == len(answers):  # the check runs in a worker thread
            loop.call_soon_threadsafe(fourth.set)
        answer = answers[min(len(seen), len(answers)) - 1]
        if answer is not None:
            raise answer

    readiness = Readiness(["team-a"], check=check, interval=0.01)
    task = asyncio.create_task(readiness.run())
    await asyncio.sleep(0.05)
    assert not readiness.ready
    assert seen == []  # kopf has not started yet
    readiness.started.set()
    await asyncio.wait_for(fourth.wait(), 10)
    task.cancel()
    assert seen == [False, True, False, True]

"""The client-side limit of the operator's API requests: a burst at once, then the rate."""

from collections.abc import Callable

import pytest

from ws2kafka.operator import kube
from ws2kafka.operator.ratelimit import RateLimitCollector, TokenBucket


class Clock:
    """Time that moves only when a caller sleeps."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_a_burst_goes_at_once_and_the_rest_at_the_rate() -> None:
    clock = Clock()
    bucket = TokenBucket(10.0, 5, clock=clock, sleep=clock.sleep)
    waits = [bucket.take() for _ in range(8)]
    assert waits[:5] == [0.0] * 5
    assert [round(wait, 3) for wait in waits[5:]] == [0.1, 0.1, 0.1]
    assert round(clock.now, 3) == 0.3
    assert round(bucket.waited, 3) == 0.3


def test_an_idle_bucket_fills_up_to_its_burst_and_no_more() -> None:
    clock = Clock()
    bucket = TokenBucket(10.0, 2, clock=clock, sleep=clock.sleep)
    bucket.take()
    bucket.take()
    clock.now += 60  # a minute idle: two tokens again, not 600
    assert [bucket.take() for _ in range(2)] == [0.0, 0.0]
    assert round(bucket.take(), 3) == 0.1


def test_a_rate_of_zero_is_no_limit() -> None:
    bucket = TokenBucket(0.0, 1, sleep=lambda _: (_ for _ in ()).throw(AssertionError))
    assert [bucket.take() for _ in range(1000)] == [0.0] * 1000


def test_the_wait_is_a_counter_of_the_operator() -> None:
    clock = Clock()
    bucket = TokenBucket(1.0, 1, clock=clock, sleep=clock.sleep)
    bucket.take()
    bucket.take()
    [family] = RateLimitCollector(lambda: bucket).collect()
    assert family.name == "ws2kafka_operator_api_rate_limited_seconds"
    assert [sample.value for sample in family.samples] == [1.0]


class Refusing(TokenBucket):
    """A bucket that stops the request it was asked for, so no API server is reached."""

    def take(self) -> float:
        raise LookupError("rate limited")


@pytest.mark.parametrize("read", [kube.secret_data, kube.config_map_data])
def test_inline_reads_of_secrets_and_config_maps_wait_for_the_limit(
    read: Callable[[str, str], object], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kube, "LIMIT", Refusing(1.0, 1))
    with pytest.raises(LookupError, match="rate limited"):
        read("default", "kafka-credentials")

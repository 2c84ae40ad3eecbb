"""The produce-latency histogram puts each value in the first bucket whose bound holds it."""

from ws2kafka.bridge.stats import LATENCY_BUCKETS, LatencyHistogram


def test_each_latency_lands_in_the_first_bucket_whose_bound_is_not_below_it() -> None:
    histogram = LatencyHistogram()
    for seconds in (0.0, 0.0005, 0.0006, 0.005, 29.0, 30.0, 31.0):
        histogram.observe(seconds)
    expected = [0] * (len(LATENCY_BUCKETS) + 1)
    for index in (0, 0, 1, 3, -2, -2, -1):  # a bound itself belongs to its bucket (le)
        expected[index] += 1
    assert histogram.counts == expected
    assert histogram.total == sum((0.0, 0.0005, 0.0006, 0.005, 29.0, 30.0, 31.0))

"""The produce-latency histogram puts each value in the first bucket whose bound holds it."""

from ws2kafka.bridge.metrics import close_code_counts
from ws2kafka.bridge.stats import LATENCY_BUCKETS, BridgeStats, LatencyHistogram, close_code_label


def test_each_latency_lands_in_the_first_bucket_whose_bound_is_not_below_it() -> None:
    histogram = LatencyHistogram()
    for seconds in (0.0, 0.0005, 0.0006, 0.005, 29.0, 30.0, 31.0):
        histogram.observe(seconds)
    expected = [0] * (len(LATENCY_BUCKETS) + 1)
    for index in (0, 0, 1, 3, -2, -2, -1):  # a bound itself belongs to its bucket (le)
        expected[index] += 1
    assert histogram.counts == expected
    assert histogram.total == sum((0.0, 0.0005, 0.0006, 0.005, 29.0, 30.0, 31.0))


def test_close_code_labels_stay_bounded_whatever_the_peer_sends() -> None:
    stats = BridgeStats()
    for code in (1000, 1006, 1015, 3001, 3999, 4000, 4999, 0, 999, 1016, 2999, 5000, 65535):
        stats.count_close(code)
    assert close_code_counts(stats.close_codes) == {
        "1000": 1,
        "1006": 1,
        "1015": 1,
        "3xxx": 2,
        "4xxx": 2,
        "other": 6,
    }
    assert {close_code_label(code) for code in range(65536)} == {
        *(str(code) for code in range(1000, 1016)),
        "3xxx",
        "4xxx",
        "other",
    }

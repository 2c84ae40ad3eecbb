"""The repository layout must not shadow the standard library (see pyproject.toml)."""

import operator

import ws2kafka.operator


def test_stdlib_operator_is_not_shadowed() -> None:
    assert operator.__name__ == "operator"
    assert hasattr(operator, "itemgetter")
    assert ws2kafka.operator.__name__ == "ws2kafka.operator"

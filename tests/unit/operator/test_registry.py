"""The handlers each mode registers, with the settings kopf applies to them."""

from ws2kafka.bridge.config import MAX_DRAIN_TIMEOUT_SECONDS
from ws2kafka.operator import constants as c
from ws2kafka.operator.inline import InlineBridges
from ws2kafka.operator.main import build_registry
from ws2kafka.operator.settings import Mode, OperatorSettings


def test_an_inline_bridge_gets_its_whole_drain_before_kopf_cancels_it() -> None:
    """kopf cancelled an inline bridge 30 s after the stop, even with drainTimeoutSeconds
    of up to an hour: what it still held was then neither delivered nor counted."""
    registry = build_registry(OperatorSettings(mode=Mode.INLINE), InlineBridges())
    daemons = [h for h in registry._spawning.get_all_handlers() if h.id == c.HANDLER_INLINE]
    assert len(daemons) == 1
    assert daemons[0].cancellation_backoff > MAX_DRAIN_TIMEOUT_SECONDS

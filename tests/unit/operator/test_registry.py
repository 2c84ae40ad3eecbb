"""The operator's kopf registry: what the handlers need from a source, and what they do not."""

import inspect
import logging

import pytest
from kopf._core.intents.handlers import DaemonHandler  # the registry's own type

from ws2kafka.bridge.config import MAX_DRAIN_TIMEOUT_SECONDS
from ws2kafka.operator import constants as c
from ws2kafka.operator.inline import InlineBridges
from ws2kafka.operator.main import RoutineSuccesses, build_registry, still_known
from ws2kafka.operator.settings import Mode, OperatorSettings


@pytest.mark.parametrize("mode", list(Mode))
def test_no_handler_puts_a_finalizer_on_sources(mode: Mode) -> None:
    """A finalizer would outlive an uninstalled operator and block every deletion."""
    registry = build_registry(OperatorSettings(mode=mode), InlineBridges())
    spawning = registry._spawning.get_all_handlers()
    assert spawning, "the conditions timer (and the inline daemon) are there"
    assert [handler.requires_finalizer for handler in spawning] == [False] * len(spawning)
    assert all(handler.when is still_known for handler in spawning)
    changing = registry._changing.get_all_handlers()
    assert not any(handler.requires_finalizer for handler in changing)


def test_a_deleted_source_stops_matching() -> None:
    """kopf drops a deleted source from the index first: its timer or daemon then stops."""
    index = {("ns", "kept"): [True]}
    assert still_known(namespace="ns", name="kept", known_sources=index)
    assert not still_known(namespace="ns", name="gone", known_sources=index)


def test_the_timer_reads_the_indexes_by_their_ids() -> None:
    """kopf passes an index to handlers as the keyword named by its id: without an explicit
    id, the timer's argument would silently stay None."""
    registry = build_registry(OperatorSettings(mode=Mode.POD), InlineBridges())
    ids = {handler.id for handler in registry._indexing.get_all_handlers()}
    assert ids == {"known_sources", "bridge_deployments", "bridge_pods"}
    [timer] = registry._spawning.get_all_handlers()
    parameters = inspect.signature(timer.fn).parameters
    assert {"bridge_deployments", "bridge_pods"} <= parameters.keys()


def test_an_inline_bridge_gets_its_whole_drain_before_kopf_cancels_it() -> None:
    """kopf cancelled an inline bridge 30 s after the stop, even with drainTimeoutSeconds
    of up to an hour: what it still held was then neither delivered nor counted."""
    registry = build_registry(OperatorSettings(mode=Mode.INLINE), InlineBridges())
    daemons = [h for h in registry._spawning.get_all_handlers() if h.id == c.HANDLER_INLINE]
    assert len(daemons) == 1
    assert isinstance(daemons[0], DaemonHandler)
    backoff = daemons[0].cancellation_backoff
    assert backoff is not None
    assert backoff > MAX_DRAIN_TIMEOUT_SECONDS


def test_kopf_logs_no_line_for_each_routine_success() -> None:
    """The per-event handler and the conditions timer run every second per source: their
    successes are not logged; other handlers' are, and failures always."""
    registry = build_registry(OperatorSettings(mode=Mode.POD), InlineBridges())
    routine = [
        *registry._watching.get_all_handlers(),
        *registry._spawning.get_all_handlers(),
    ]
    quiet = RoutineSuccesses()

    def logged(message: str) -> bool:
        return quiet.filter(
            logging.LogRecord("kopf.objects", logging.INFO, "", 0, message, (), None)
        )

    assert routine
    assert not any(logged(f"{handler} succeeded.") for handler in routine)
    [reconcile, *_] = registry._changing.get_all_handlers()
    assert logged(f"{reconcile} succeeded.")
    assert logged(f"{routine[0]} failed with an exception and will try again in 60 seconds: x")

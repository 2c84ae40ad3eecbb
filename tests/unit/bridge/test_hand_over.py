"""The read loop hands records to the producer once per burst of frames, in order.

The producer is replaced by a recorder (``RecordingSink``): these tests are about when records
are handed over, not about Kafka (the integration tests deliver the same frames to a real
broker).
"""

import asyncio
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosedOK

from ws2kafka.bridge.config import WebSocketSourceSpec
from ws2kafka.bridge.flow import HAND_OVER_BATCH
from ws2kafka.bridge.service import Bridge
from ws2kafka.bridge.source import SourceConnection
from ws2kafka.devstack.harness import RecordingSink, bridge_spec
from ws2kafka.devstack.waiting import until


class Bursts:
    """A connection whose frames arrive in bursts: ready at once within a burst, then a pause
    (the reader suspends) before the next; after the last burst it waits for the close."""

    subprotocol = None

    def __init__(self, bursts: list[int]) -> None:
        self._bursts = list(bursts)
        self._ready: list[str] = []
        self._sent = 0
        self._closed = asyncio.Event()

    @property
    def transport(self) -> Any:
        return self

    def abort(self) -> None:
        self._closed.set()

    async def recv(self) -> str:
        if not self._ready:
            await asyncio.sleep(0.01)
            if not self._bursts:
                await self._closed.wait()
                raise ConnectionClosedOK(None, None)
            burst = self._bursts.pop(0)
            self._ready = [str(self._sent + n + 1) for n in range(burst)]
            self._sent += burst
        return self._ready.pop(0)

    async def send(self, message: str) -> None:
        """Subscriptions are not part of these tests."""

    async def ping(self) -> Any:
        raise NotImplementedError

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self._closed.set()


def spec() -> WebSocketSourceSpec:
    return bridge_spec("127.0.0.1:1", "ws://127.0.0.1:1", "t", drainTimeoutSeconds=0.1)


async def handed_batches(bursts: list[int]) -> list[list[bytes]]:
    connection = Bursts(bursts)

    async def opener(*_: object) -> SourceConnection:
        return connection

    sink = RecordingSink()
    bridge = Bridge(spec(), name="burst", opener=opener, sink_factory=sink.attach)
    task = asyncio.create_task(bridge.run())
    total = sum(bursts)
    await until(lambda: sum(map(len, sink.batches)) >= total, 10, f"{total} records handed over")
    bridge.stop()
    summary = await task
    assert (summary.delivered, summary.undelivered) == (total, 0)
    return [[record.value for record in batch] for batch in sink.batches]


@pytest.mark.parametrize("bursts", [[1], [3, 1, 5], [HAND_OVER_BATCH * 2 + 7]])
async def test_each_burst_is_handed_over_in_order_in_batches_of_at_most_the_limit(
    bursts: list[int],
) -> None:
    batches = await handed_batches(bursts)
    assert [value for batch in batches for value in batch] == [
        str(n).encode() for n in range(1, sum(bursts) + 1)
    ]
    expected_sizes = []
    for burst in bursts:
        full, rest = divmod(burst, HAND_OVER_BATCH)
        expected_sizes += [HAND_OVER_BATCH] * full + ([rest] if rest else [])
    assert [len(batch) for batch in batches] == expected_sizes

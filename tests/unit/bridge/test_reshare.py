"""A live change of ``streams.names``: the stable reassignment (properties, against a brute
force on small cases) and a running bridge re-sharing on scripted connections, where only the
connections whose share changed are replaced, make-before-break."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ws2kafka.bridge.config import WebSocketSourceSpec
from ws2kafka.bridge.service import Bridge
from ws2kafka.bridge.stats import ConnectionState
from ws2kafka.bridge.streams import (
    Assignment,
    changed_connections,
    in_order,
    live_change,
    reassign,
)
from ws2kafka.devstack.harness import RecordingSink, ScriptedConnection, bridge_spec, run_until
from ws2kafka.devstack.waiting import until

PROPERTIES = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def changes(draw: st.DrawFn) -> tuple[dict[int, tuple[str, ...]], list[str], int]:
    """An assignment under its cap (sparse indexes, as live changes leave them) and a new
    stream list: some streams kept, some removed, some new, in any order."""
    per = draw(st.integers(1, 4))
    count = draw(st.integers(1, 4))
    indexes = draw(st.lists(st.integers(0, 6), min_size=count, max_size=count, unique=True))
    sizes = [draw(st.integers(1, per)) for _ in indexes]
    names = iter(f"s{n}" for n in itertools.count())
    old = {
        index: tuple(next(names) for _ in range(size))
        for index, size in zip(indexes, sizes, strict=True)
    }
    every = [stream for streams in old.values() for stream in streams]
    kept = draw(st.lists(st.sampled_from(every), unique=True))
    added = [f"n{n}" for n in range(draw(st.integers(0, 3)))]
    listed = draw(st.permutations(kept + added))
    if not listed:
        listed = ["n0"]
    return old, listed, per


def cost(old: Assignment, new: Assignment) -> tuple[int, int]:
    """What a reassignment costs: its connections, then the connections that change."""
    return len(new), len(changed_connections(old, new))


def cheapest(old: Assignment, names: list[str], per: int) -> tuple[int, int]:
    """By brute force: every placement of the new streams in the kept connections or new
    ones (kept streams stay: that is the rule), the lowest cost among those under the cap."""
    listed = set(names)
    kept = {index: [s for s in streams if s in listed] for index, streams in old.items()}
    new = [s for s in names if all(s not in streams for streams in old.values())]
    bins = sorted(kept) + [100 + n for n in range(len(new))]
    best: tuple[int, int] | None = None
    for choice in itertools.product(bins, repeat=len(new)):
        placed = {index: list(streams) for index, streams in kept.items()}
        for stream, index in zip(new, choice, strict=True):
            placed.setdefault(index, []).append(stream)
        if any(len(streams) > per for streams in placed.values()):
            continue
        candidate = {index: tuple(s) for index, s in placed.items() if s}
        best = min(best or cost(old, candidate), cost(old, candidate))
    assert best is not None
    return best


@PROPERTIES
@given(changes())
def test_a_reassignment_keeps_every_stream_in_place_under_the_cap(
    change: tuple[dict[int, tuple[str, ...]], list[str], int],
) -> None:
    old, names, per = change
    new = reassign(old, names, per)
    carried = [stream for streams in new.values() for stream in streams]
    assert sorted(carried) == sorted(names), "every stream once, and nothing else"
    assert all(0 < len(streams) <= per for streams in new.values())
    where = {stream: index for index, streams in old.items() for stream in streams}
    for index, streams in new.items():
        for stream in streams:
            assert where.get(stream, index) == index, f"{stream} moved"
    for index in set(old) & set(new):  # kept streams keep their order, new ones follow
        kept = [s for s in old[index] if s in names]
        assert list(new[index][: len(kept)]) == kept


@PROPERTIES
@given(changes())
def test_a_reassignment_has_the_fewest_connections_then_the_fewest_changes(
    change: tuple[dict[int, tuple[str, ...]], list[str], int],
) -> None:
    old, names, per = change
    assert cost(old, reassign(old, names, per)) == cheapest(old, names, per)


def test_adding_streams_fills_the_changed_then_new_then_roomiest_connections() -> None:
    old = {0: ("a", "b", "c"), 1: ("d", "e"), 2: ("f",), 3: ("g", "h", "i")}
    # b removed: connection 0 is replaced anyway and takes the first new stream; the next
    # two fit into connection 2 (the most room) alone; 1 and 3 stay as they are
    new = reassign(old, ["a", "c", "d", "e", "f", "g", "h", "i", "x", "y", "z"], 3)
    assert new == {0: ("a", "c", "x"), 1: ("d", "e"), 2: ("f", "y", "z"), 3: ("g", "h", "i")}
    assert changed_connections(old, new) == {0, 2}
    # more than the room left: a new connection at the lowest free index, the unchanged
    # ones untouched while the new one has room
    grown = reassign(new, [*"acdefghixyz", "p", "q"], 3)
    assert changed_connections(new, grown) == {4}
    assert grown[4] == ("p", "q")


def test_removing_every_stream_of_a_connection_closes_it_or_reuses_it() -> None:
    old = in_order(list("abcdef"), 2)
    assert reassign(old, list("abef"), 2) == {0: ("a", "b"), 2: ("e", "f")}
    # a new stream that does not fit elsewhere takes the emptied connection's place
    assert reassign(old, list("abefx"), 2) == {0: ("a", "b"), 1: ("x",), 2: ("e", "f")}


def names_spec(names: list[str], **fields: Any) -> WebSocketSourceSpec:
    return bridge_spec(
        "127.0.0.1:1",
        "ws://127.0.0.1:1/ws",
        "t",
        streams={"names": names, "maxPerConnection": 2, "urlTemplate": "ws://feed/{streams}"},
        **{"drainTimeoutSeconds": 5, **fields},
    )


def test_only_a_change_of_the_names_is_applied_live() -> None:
    running = names_spec(["a", "b"])
    assert live_change(running, names_spec(["a", "c", "d"]))
    assert not live_change(running, names_spec(["a", "b"], drainTimeoutSeconds=7))
    assert running.streams is not None
    other_cap = running.streams.model_copy(update={"max_per_connection": 5})
    assert not live_change(running, running.model_copy(update={"streams": other_cap}))
    plain = bridge_spec("127.0.0.1:1", "ws://127.0.0.1:1/ws", "t")
    assert not live_change(plain, plain)


class Feed:
    """Scripted connections by URL (a share's URL names its streams): each delivers its
    frames, ``<stream>-<n>``, then stays open; every open and close is kept."""

    def __init__(self, frames: int = 2) -> None:
        self.frames = frames
        self.opened: list[str] = []
        self.connections: dict[str, list[ScriptedConnection]] = {}

    def opener(self) -> Callable[..., Awaitable[ScriptedConnection]]:
        async def open_share(spec: WebSocketSourceSpec, _: object) -> ScriptedConnection:
            streams = spec.url.removeprefix("ws://feed/").split("/")
            number = len(self.opened)
            frames: list[str | bytes] = [
                f"{stream}-{number}-{n}" for n in range(self.frames) for stream in streams
            ]
            connection = ScriptedConnection(frames)
            self.opened.append(spec.url)
            self.connections.setdefault(spec.url, []).append(connection)
            return connection

        return open_share

    def closed(self, url: str) -> list[bool]:
        return [connection._closed.is_set() for connection in self.connections[url]]


async def test_a_live_change_replaces_only_the_connections_whose_share_changed() -> None:
    feed = Feed()
    sink = RecordingSink()
    bridge = Bridge(
        names_spec(["a", "b", "c", "d", "e"]),
        name="live",
        opener=feed.opener(),
        sink_factory=sink.attach,
    )
    assert [link.share.streams for link in bridge.links] == [("a", "b"), ("c", "d"), ("e",)]
    untouched = bridge.links[0]

    def connected() -> bool:
        return bridge.stats.state is ConnectionState.CONNECTED and bridge.stats.delivered >= 10

    def apply_changes() -> bool:
        if not connected():
            return False
        if len(feed.opened) == 3:
            # d leaves: connection 1 is replaced (c, x); y and z go onto a new connection
            # rather than also touching connection 2; connection 0 (a, b) is not touched
            assert bridge.reshare(names_spec(["a", "b", "c", "e", "x", "y", "z"]))
        if len(feed.opened) == 5 and feed.closed("ws://feed/c/d") == [True]:
            assert bridge.reshare(names_spec(["a", "b", "c", "x", "z", "y", "e"]))  # order
            assert bridge.reshare(names_spec(["a", "b", "z"]))  # 1, 2 close, 3 is replaced
        return (
            feed.opened[-1:] == ["ws://feed/z"]
            and feed.closed("ws://feed/y/z") == [True]
            and feed.closed("ws://feed/c/x") == [True]
            and feed.closed("ws://feed/e") == [True]
            and feed.closed("ws://feed/a/b") == [False]
        )

    summary = await run_until(bridge, apply_changes, "two live changes", 10)
    assert feed.opened[:3] == ["ws://feed/a/b", "ws://feed/c/d", "ws://feed/e"]
    assert sorted(feed.opened[3:5]) == ["ws://feed/c/x", "ws://feed/y/z"]
    assert feed.opened[5:] == ["ws://feed/z"]
    assert [link.share.index for link in bridge.links] == [0, 3]
    assert bridge.links[0] is untouched
    assert bridge.stats.reconnects == 0, "no connection was lost"
    assert bridge.stats.gaps == 0
    assert bridge.stats.rotations == 2  # c/d to c/x, y/z to z
    values = {record.value.decode() for batch in sink.batches for record in batch}
    # every frame of every connection, the replaced ones' included (read to their end)
    for number, url in enumerate(feed.opened):
        for stream in url.removeprefix("ws://feed/").split("/"):
            assert {f"{stream}-{number}-0", f"{stream}-{number}-1"} <= values, url
    assert summary.balanced, summary


async def test_a_replacement_that_fails_is_tried_again_and_the_old_connection_stays() -> None:
    feed = Feed()
    refusals = 2
    opener = feed.opener()

    async def refusing(spec: WebSocketSourceSpec, kwargs: object) -> ScriptedConnection:
        nonlocal refusals
        if spec.url == "ws://feed/a/c" and refusals:
            refusals -= 1
            raise ConnectionRefusedError("not now")
        return await opener(spec, kwargs)

    bridge = Bridge(
        names_spec(["a", "b"]), name="retry", opener=refusing, sink_factory=RecordingSink().attach
    )

    async def change_once_connected() -> None:
        await until(lambda: bridge.stats.delivered >= 4, 10, "the first frames")
        assert bridge.reshare(names_spec(["a", "c"]))

    changing = asyncio.create_task(change_once_connected())
    summary = await run_until(
        bridge, lambda: feed.opened[-1:] == ["ws://feed/a/c"], "the replacement", 10
    )
    await changing
    assert bridge.stats.rotation_failures == 2
    assert (bridge.stats.rotations, bridge.stats.reconnects) == (1, 0)
    assert summary.balanced


async def test_any_other_change_is_not_applied_live() -> None:
    bridge = Bridge(
        names_spec(["a"]), name="other", opener=Feed().opener(), sink_factory=RecordingSink().attach
    )
    assert not bridge.reshare(names_spec(["a"], drainTimeoutSeconds=9))
    assert bridge.spec.drain_timeout_seconds == 5


async def test_a_change_during_the_handshake_replaces_the_connection_once_it_is_open() -> None:
    feed = Feed()
    opener = feed.opener()
    handshake = asyncio.Event()
    opening = asyncio.Event()

    async def slow(spec: WebSocketSourceSpec, kwargs: object) -> ScriptedConnection:
        if not feed.opened:
            opening.set()
            await handshake.wait()
        return await opener(spec, kwargs)

    bridge = Bridge(
        names_spec(["a", "b"]), name="slow", opener=slow, sink_factory=RecordingSink().attach
    )

    async def change_during_the_handshake() -> None:
        await opening.wait()
        assert bridge.reshare(names_spec(["a", "c"]))
        handshake.set()

    changing = asyncio.create_task(change_during_the_handshake())
    summary = await run_until(
        bridge,
        lambda: feed.opened == ["ws://feed/a/b", "ws://feed/a/c"] and bridge.stats.rotations == 1,
        "the connection opened for the old share replaced",
        10,
    )
    await changing
    assert bridge.stats.reconnects == 0
    assert summary.balanced

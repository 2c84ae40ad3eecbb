"""How a source's streams are spread over connections, without I/O.

``spec.streams`` lists the streams (symbols, channels) and the server's cap per connection.
A bridge starts with the streams cut in order into shares (:func:`in_order`), one per
connection; a share becomes that connection's URL (``urlTemplate``) or its subscribe
messages (``subscribeTemplate``, at most ``maxPerMessage`` streams each). A source without
``streams`` is one share: its ``url`` and ``subscribe`` as written.

When only ``streams.names`` changes, the running bridge keeps its connections where it can:
:func:`reassign` takes the current assignment and the new list and moves as little as
possible (a kept stream never changes connection; see its docstring for the rule), so only
the connections whose share changed are replaced (:func:`live_change` says whether a new
spec can be applied that way).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .config import StreamsSpec, WebSocketSourceSpec

Assignment = Mapping[int, tuple[str, ...]]
"""The streams of each connection, by the connection's index (no empty shares)."""


@dataclass(frozen=True)
class Share:
    """One connection's part of the source."""

    index: int
    """The connection's index: 0-based, in the order of ``streams.names`` at the start; a
    connection a live change adds takes the lowest free index."""
    streams: tuple[str, ...]
    spec: WebSocketSourceSpec
    """The source's spec with this connection's ``url`` and ``subscribe``."""


def in_order(names: Sequence[str], per_connection: int) -> dict[int, tuple[str, ...]]:
    """The streams cut in order into connections of ``per_connection`` (a bridge's start)."""
    return {
        index: tuple(names[start : start + per_connection])
        for index, start in enumerate(range(0, len(names), per_connection))
    }


def reassign(
    old: Assignment, names: Sequence[str], per_connection: int
) -> dict[int, tuple[str, ...]]:
    """The new assignment for the stream list ``names``, moving as little as possible.

    - A stream in both keeps its connection (and its place in the connection's order); a
      removed stream just leaves; a connection left without streams closes.
    - The new streams (in ``names`` order) first fill the connections that lost some
      streams and keep others (they are replaced anyway), then as many connections as the
      room left in the unchanged ones cannot take (a connection that lost all its streams
      first, it is replaced anyway; then new ones, at the lowest free index), then the
      unchanged connections, the one with the most room first.

    So the assignment has the fewest connections that keep every stream where it is, and
    among those the fewest connections that change (lose or gain streams, open or close).
    ``per_connection`` holds if it held in ``old``.
    """
    listed = set(names)
    kept = {index: [s for s in streams if s in listed] for index, streams in old.items()}
    placed = {stream for streams in kept.values() for stream in streams}
    pending = [stream for stream in dict.fromkeys(names) if stream not in placed]
    pending.reverse()  # pop() takes them in order
    lost = [index for index in sorted(old) if len(kept[index]) < len(old[index])]
    unchanged = [index for index in sorted(old) if index not in lost]

    def fill(index: int) -> None:
        streams = kept.setdefault(index, [])
        for _ in range(min(per_connection - len(streams), len(pending))):
            streams.append(pending.pop())

    for index in lost:
        if kept[index]:
            fill(index)
    spare = sum(per_connection - len(kept[index]) for index in unchanged)
    opening = max(0, -(-(len(pending) - spare) // per_connection))
    emptied = [index for index in lost if not kept[index]]
    fresh = (index for index in range(len(old) + opening) if index not in old)
    for _ in range(opening):
        fill(emptied.pop(0) if emptied else next(fresh))
    for index in sorted(unchanged, key=lambda each: (len(kept[each]), each)):
        fill(index)
    return {index: tuple(streams) for index, streams in sorted(kept.items()) if streams}


def changed_connections(old: Assignment, new: Assignment) -> set[int]:
    """The connections that open, close or carry other streams."""
    return {index for index in set(old) | set(new) if old.get(index) != new.get(index)}


def live_change(old: WebSocketSourceSpec, new: WebSocketSourceSpec) -> bool:
    """Whether ``new`` differs from ``old`` in ``streams.names`` only: then a running bridge
    re-shares its connections (:func:`reassign`); any other change restarts it."""
    if old.streams is None or new.streams is None:
        return False
    return (
        old.model_copy(update={"streams": new.streams}) == new
        and old.streams.model_copy(update={"names": new.streams.names}) == new.streams
    )


def shares(spec: WebSocketSourceSpec, assignment: Assignment | None = None) -> list[Share]:
    """The connections ``spec`` needs, each with its own URL and subscribe messages:
    ``assignment``'s, or the streams cut in order (:func:`in_order`)."""
    streams = spec.streams
    if streams is None:
        return [Share(0, (), spec)]
    if assignment is None:
        assignment = in_order(streams.names, streams.max_per_connection)
    return [_share(spec, streams, index, names) for index, names in sorted(assignment.items())]


def _share(
    spec: WebSocketSourceSpec, streams: StreamsSpec, index: int, names: tuple[str, ...]
) -> Share:
    url = spec.url
    subscribe = list(spec.subscribe)
    if streams.url_template is not None:
        url = streams.url_template.replace("{streams}", streams.separator.join(names))
    if streams.subscribe_template is not None:
        subscribe.extend(
            subscribe_messages(streams.subscribe_template, names, streams.max_per_message)
        )
    return Share(index, names, spec.model_copy(update={"url": url, "subscribe": subscribe}))


def subscribe_messages(template: str, names: tuple[str, ...], per_message: int) -> list[str]:
    """The template once per group of at most ``per_message`` names (0: one group)."""
    size = per_message or len(names)
    return [
        template.replace("{streams}", json.dumps(list(names[start : start + size]))).replace(
            "{n}", str(number)
        )
        for number, start in enumerate(range(0, len(names), size), 1)
    ]

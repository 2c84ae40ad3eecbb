"""How a source's streams are spread over connections, without I/O.

``spec.streams`` lists the streams (symbols, channels) and the server's cap per connection.
The streams are split in order into shares, one per connection; a share becomes that
connection's URL (``urlTemplate``) or its subscribe messages (``subscribeTemplate``, at most
``maxPerMessage`` streams each). A source without ``streams`` is one share: its ``url`` and
``subscribe`` as written.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from .config import StreamsSpec, WebSocketSourceSpec


@dataclass(frozen=True)
class Share:
    """One connection's part of the source."""

    index: int
    """0-based, in the order of ``streams.names``."""
    streams: tuple[str, ...]
    spec: WebSocketSourceSpec
    """The source's spec with this connection's ``url`` and ``subscribe``."""


def shares(spec: WebSocketSourceSpec) -> list[Share]:
    """The connections ``spec`` needs, each with its own URL and subscribe messages."""
    streams = spec.streams
    if streams is None:
        return [Share(0, (), spec)]
    size = streams.max_per_connection
    names = streams.names
    return [
        _share(spec, streams, index, tuple(names[start : start + size]))
        for index, start in enumerate(range(0, len(names), size))
    ]


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

"""Following the config file while the bridge runs: a change of ``streams.names`` applies live.

A bridge pod reads its config from a ConfigMap volume, which the kubelet updates in place (it
writes the new files into a new directory and swaps a symlink), so the file at the config path
becomes another file. The operator changes the ConfigMap without rolling the pod when only
``streams.names`` changed; the bridge looks at the file every few seconds and hands a changed
spec to :meth:`~.service.Bridge.reshare`. Any other change is logged and waits for the next
start (the operator rolls the pod for those). ``ws2kafka-bridge`` follows its file the same way.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from pathlib import Path

from .config import WebSocketSourceSpec
from .errors import ConfigError
from .service import Bridge

log = logging.getLogger(__name__)

#: Seconds between two looks at the config file (the kubelet's update takes longer anyway).
CONFIG_POLL_SECONDS = 2.0

Stamp = tuple[int, int, int, int]


def stamp(path: Path) -> Stamp | None:
    """What tells one version of the file from the next (the symlink swap gives a new inode);
    None when it cannot be read right now."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino, info.st_mtime_ns, info.st_size


async def follow_config(
    bridge: Bridge,
    path: Path,
    load: Callable[[], WebSocketSourceSpec],
    interval: float = CONFIG_POLL_SECONDS,
) -> None:
    """Until cancelled: every ``interval``, if the file changed, load it and apply it live.

    The first look always loads it: it may have changed since the bridge read it.
    """
    seen: Stamp | None = None
    while True:
        await asyncio.sleep(interval)
        current = stamp(path)
        if current is None or current == seen:
            continue
        seen = current
        try:
            spec = load()
        except ConfigError as exc:
            log.warning(
                "%s: the changed config file is not used: %s", bridge.name, "; ".join(exc.problems)
            )
            continue
        if spec == bridge.spec or bridge.reshare(spec):
            continue
        log.warning(
            "%s: the config file changed beyond streams.names: the change applies when the "
            "bridge starts again",
            bridge.name,
        )

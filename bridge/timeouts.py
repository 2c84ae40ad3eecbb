"""Waiting with a limit, the way this bridge needs it on Python 3.11."""

from __future__ import annotations

import asyncio
import contextlib


async def wait_event(event: asyncio.Event, timeout: float) -> bool:
    """Wait for ``event`` at most ``timeout`` seconds; returns whether it is set.

    ``asyncio.timeout`` rather than ``wait_for``: on Python 3.11, ``wait_for`` swallows a
    cancellation that arrives as the event is set, and the cancelled task then waits on.
    """
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(max(0.0, timeout)):
            await event.wait()
    return event.is_set()

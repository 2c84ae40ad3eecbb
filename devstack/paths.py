"""Where the stack caches what it builds, so only the first run on a machine pays for it."""

import os
from pathlib import Path

#: The folder that holds this package's build assets (pom.xml, the Go tools module).
ASSETS = Path(__file__).resolve().parent


def cache_dir() -> Path:
    """The ws2kafka cache: ``$WS2KAFKA_CACHE``, else ``$XDG_CACHE_HOME/ws2kafka``."""
    explicit = os.environ.get("WS2KAFKA_CACHE")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "ws2kafka"

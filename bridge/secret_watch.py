"""Noticing that a secret read from a file has changed, so the connection picks it up.

A bridge pod reads every Secret a resource references from a file of a projected volume,
which the kubelet updates in place when the Secret changes (a rotated API key); a local
config may name files too (``file:``). A value from ``env`` or ``value`` never changes in a
running process, so only files are watched. The connection's secrets (headers, ``auth``,
``query``, ``login``...) are taken up by a make-before-break rotation: the new connection
opens with them before the old one closes. The producer's (``kafka.secretProperties``) are
fixed for the producer's life: a change is reported, and applies from the next start.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel

from .config import SecretValue, WebSocketSourceSpec
from .errors import ConfigError

#: How often a bridge reads its secret files again (the kubelet's own update takes longer).
SECRET_CHECK_SECONDS = 10.0


def file_secrets(node: Any) -> Iterator[SecretValue]:
    """Every secret of ``node`` (a model, or lists and mappings of them) read from a file."""
    if isinstance(node, SecretValue):
        if node.file is not None:
            yield node
    elif isinstance(node, BaseModel):
        for name in type(node).model_fields:
            yield from file_secrets(getattr(node, name))
    elif isinstance(node, dict):
        for value in node.values():
            yield from file_secrets(value)
    elif isinstance(node, list | tuple):
        for item in node:
            yield from file_secrets(item)


class SecretWatch:
    """The fingerprint of some secrets as last read, and whether it changed since."""

    def __init__(self, secrets: list[SecretValue]) -> None:
        self._secrets = secrets
        self._seen = self._fingerprint()

    @classmethod
    def of_connection(cls, spec: WebSocketSourceSpec) -> SecretWatch:
        """The secrets a connection is opened with: all but the producer's."""
        fields = (name for name in type(spec).model_fields if name != "kafka")
        return cls([secret for name in fields for secret in file_secrets(getattr(spec, name))])

    @classmethod
    def of_producer(cls, spec: WebSocketSourceSpec) -> SecretWatch:
        return cls(list(file_secrets(spec.kafka)))

    @property
    def watching(self) -> bool:
        """Whether there is any file to watch."""
        return bool(self._secrets)

    def changed(self) -> bool:
        """Whether a secret differs from the last look (reads the files: off the loop). A
        file that cannot be read right now (the kubelet swapping it) counts as unchanged."""
        current = self._fingerprint()
        if current is None or current == self._seen:
            return False
        self._seen = current
        return True

    def _fingerprint(self) -> str | None:
        digest = hashlib.sha256()
        for secret in self._secrets:
            try:
                digest.update(secret.resolve().encode() + b"\0")
            except ConfigError:
                return None
        return digest.hexdigest()

"""Noticing that a secret read from a file has changed, so the connection picks it up.

A bridge pod reads every Secret a resource references from a file of a projected volume,
which the kubelet updates in place when the Secret changes (a rotated API key); a local
config may name files too (``file:``). A value from ``env`` or ``value`` never changes in a
running process, so only files are watched. The connection's secrets (headers, ``auth``,
``query``, ``login``...) are taken up by a make-before-break rotation: the new connection
opens with them before the old one closes. Of the producer's (``kafka.secretProperties``),
the SASL username and password are handed to the running producer (librdkafka's
``set_sasl_credentials``: its next authentication to a broker, a reconnect or a KIP-368
re-authentication, uses them); any other is fixed for the producer's life: its change is
reported, and applies from the next start.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

from pydantic import BaseModel

from .config import KafkaSinkSpec, SecretValue, WebSocketSourceSpec
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


#: The ``kafka.secretProperties`` a running producer takes anew (``set_sasl_credentials``).
LIVE_PRODUCER_SECRETS: Final = frozenset({"sasl.username", "sasl.password"})


class SecretWatch:
    """The fingerprints of some named secrets as last read, and which changed since."""

    def __init__(self, secrets: Mapping[str, SecretValue]) -> None:
        self._secrets = secrets
        self._seen = self._fingerprints()

    @classmethod
    def of_connection(cls, spec: WebSocketSourceSpec) -> SecretWatch:
        """The secrets a connection is opened with: all but the producer's."""
        fields = (name for name in type(spec).model_fields if name != "kafka")
        found = [secret for name in fields for secret in file_secrets(getattr(spec, name))]
        return cls({str(index): secret for index, secret in enumerate(found)})

    @classmethod
    def of_producer(cls, spec: WebSocketSourceSpec) -> SecretWatch:
        """The producer's secrets, by property name."""
        properties = spec.kafka.secret_properties.items()
        return cls({name: secret for name, secret in properties if secret.file is not None})

    @property
    def watching(self) -> bool:
        """Whether there is any file to watch."""
        return bool(self._secrets)

    def changed(self) -> list[str]:
        """The names of the secrets that differ from the last look (reads the files: off the
        loop). While a file cannot be read (the kubelet swapping it) or is empty (an editor
        or ``echo >`` rewriting it in place: truncated, not yet written), nothing changed;
        else a rotation would start with the empty value and a second follow with the new."""
        current, seen = self._fingerprints(), self._seen
        if current is None or current == seen:
            return []
        changed = [
            name for name, digest in current.items() if seen is None or seen.get(name) != digest
        ]
        self._seen = current
        return changed

    def _fingerprints(self) -> dict[str, str] | None:
        digests = {}
        for name, secret in self._secrets.items():
            try:
                value = secret.resolve()
            except ConfigError:
                return None
            if not value:
                return None
            digests[name] = hashlib.sha256(value.encode()).hexdigest()
        return digests


def sasl_credentials(spec: KafkaSinkSpec) -> tuple[str, str] | None:
    """The SASL username and password as they are now (reads the files: off the loop), or
    None when the spec names no username or no password."""
    secrets = spec.secret_properties
    values = {name: spec.properties.get(name) for name in ("sasl.username", "sasl.password")}
    values.update({name: secrets[name].resolve() for name in values if name in secrets})
    username, password = values["sasl.username"], values["sasl.password"]
    if username is None or password is None:
        return None
    return username, password


@dataclass(frozen=True)
class Rekeyed:
    """Which secret values differ between two specs that are alike otherwise."""

    connection: bool
    """A secret the connections use (headers, query, auth, login, tokens, TLS material)."""
    producer: list[str]
    """The ``kafka.secretProperties`` that differ, by name."""


def rekeyed(old: WebSocketSourceSpec, new: WebSocketSourceSpec) -> Rekeyed | None:
    """What changed between ``old`` and ``new`` if only secret values did (inline mode reads
    its Secrets again: a rotated key comes as a new value); None when nothing did, or
    anything else did too. Secret values dump as ``**********``, so the dumps are equal
    exactly when all else is."""
    if old == new or old.model_dump(mode="json") != new.model_dump(mode="json"):
        return None
    fields = [name for name in type(old).model_fields if name != "kafka"]
    connection = any(getattr(old, name) != getattr(new, name) for name in fields)
    before, after = old.kafka.secret_properties, new.kafka.secret_properties
    return Rekeyed(connection, [name for name in after if before.get(name) != after[name]])

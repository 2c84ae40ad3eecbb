"""Migration from the Kafka Connect WebSocket source connector: its config -> a WebSocketSource.

Every key the connector documents has an equivalent (:data:`SEED_KEYS`, the README's "From the
Java connector" table); the keys Kafka Connect itself reads (``connector.class``,
``tasks.max``, ``name``) need none. Any other key is reported, never dropped in silence.
Credentials (``websocket.auth.token``, and headers whose name looks like one) go into a Secret
that the resource references: a resource never holds a secret. The spec is validated with the
bridge's own model, so what ``ws2kafka convert`` writes is what the bridge runs.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import yaml

from ws2kafka.bridge.config import ReconnectSpec, WebSocketSourceSpec, parse_spec
from ws2kafka.bridge.errors import ConfigError

from .constants import API_VERSION, KIND

#: A connector config has no bootstrap servers (Kafka Connect takes them from its worker).
DEFAULT_BOOTSTRAP_SERVERS: Final = "kafka:9092"

#: Keys that Kafka Connect reads itself; a WebSocketSource has no use for them.
FRAMEWORK_KEYS: Final = frozenset({"connector.class", "tasks.max", "name"})

#: Names (of headers, of URL query parameters) that suggest a credential.
CREDENTIAL_NAME: Final = re.compile(
    r"auth|token|key|secret|passw|cookie|signature|session|credential", re.IGNORECASE
)

#: The Secret key of the bearer token.
BEARER_TOKEN_KEY: Final = "bearer-token"


@dataclass(frozen=True)
class Conversion:
    """The manifests for one connector, and what the user must know about them."""

    source: dict[str, Any]
    """The WebSocketSource."""
    secret: dict[str, Any] | None
    """The Secret that the source's ``secretKeyRef``s point at, if it needs one."""
    warnings: tuple[str, ...]
    connector_name: str | None
    bootstrap_servers: str

    @property
    def secret_name(self) -> str | None:
        return None if self.secret is None else str(self.secret["metadata"]["name"])

    @property
    def manifests(self) -> list[dict[str, Any]]:
        """The Secret first, so that ``kubectl apply -f`` creates it before the source."""
        return [self.source] if self.secret is None else [self.secret, self.source]


@dataclass
class _Draft:
    """A spec being built from seed keys, with the secret data its references need."""

    secret_name: str
    spec: dict[str, Any] = field(default_factory=dict)
    secret_data: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def put(self, path: str, value: object) -> None:
        """Set the spec field at the dotted ``path`` (``reconnect.enabled``)."""
        *parents, leaf = path.split(".")
        node = self.spec
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value

    def secret_ref(self, key: str, value: str) -> dict[str, Any]:
        """Keep ``value`` for the Secret; the spec gets a reference to it."""
        self.secret_data[key] = value
        return {"secretKeyRef": {"name": self.secret_name, "key": key}}

    def credential(self, where: str, key: str, value: str) -> dict[str, Any]:
        """:meth:`secret_ref` of a value that only looks like a credential (by its name):
        the user is told where it went."""
        self.warnings.append(
            f"{where} looks like a credential, its value is in the Secret {self.secret_name} "
            f"(key {key})"
        )
        return self.secret_ref(key, value)


@dataclass(frozen=True)
class SeedKey:
    """How one key of the seed connector becomes part of the spec."""

    target: str
    """The spec field it sets, as a dotted camelCase path."""
    value: Callable[[str, _Draft], object]
    """The field's value from the key's text (may keep secret data in the draft)."""


def _text(text: str, _: _Draft) -> str:
    return text


def _url(text: str, draft: _Draft) -> str:
    """The URL without the credentials of its query (``?token=...``): those move into the
    Secret, and ``query`` appends them at every connect, shown as ``***``. A password in the
    URL's user part cannot move (a feed would not take it as a header): the user is told."""
    parts = urlsplit(text)
    kept: list[tuple[str, str]] = []
    moved: list[dict[str, Any]] = []
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if CREDENTIAL_NAME.search(name):
            where = f"websocket.url: the query parameter {name}"
            ref = draft.credential(where, f"query-{_secret_key(name)}", value)
            moved.append({"name": name, "valueFrom": ref})
        else:
            kept.append((name, value))
    if moved:
        draft.put("query", moved)
        text = urlunsplit(parts._replace(query=urlencode(kept)))
    if parts.password is not None:
        draft.warnings.append(
            "websocket.url carries a password, which the resource shows in clear text: "
            "send it in a header from the Secret if the feed accepts one"
        )
    return text


def _list_of_one(text: str, _: _Draft) -> list[str]:
    return [text]


def _boolean(text: str, _: _Draft) -> bool:
    """Kafka Connect's booleans: ``true`` or ``false``, in any case."""
    if text.strip().lower() not in ("true", "false"):
        raise ValueError(f"{text!r} is not true or false")
    return text.strip().lower() == "true"


def _integer(text: str, _: _Draft) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not an integer") from None


def _seconds(text: str, draft: _Draft) -> float:
    """Milliseconds (the seed's unit) as seconds, whole seconds written as integers."""
    seconds = _integer(text, draft) / 1000
    return int(seconds) if seconds.is_integer() else seconds


def _bearer_token(text: str, draft: _Draft) -> dict[str, Any]:
    return draft.secret_ref(BEARER_TOKEN_KEY, text)


def _secret_key(name: str) -> str:
    """A Secret key made of a header's or parameter's name (Secret keys allow -._a-z0-9)."""
    return re.sub(r"[^-._a-z0-9]", "-", name.lower())


def _headers(text: str, draft: _Draft) -> list[dict[str, Any]]:
    headers: list[dict[str, Any]] = []
    for name, value in split_headers(text):
        if CREDENTIAL_NAME.search(name):
            ref = draft.credential(
                f"websocket.headers: {name}", f"header-{_secret_key(name)}", value
            )
            headers.append({"name": name, "valueFrom": ref})
        else:
            headers.append({"name": name, "value": value})
    return headers


def split_headers(text: str) -> list[tuple[str, str]]:
    """``k1:v1,k2:v2`` as (name, value) pairs, each split at its first colon.

    A part without a colon continues the previous value: the seed cut values at every comma,
    which broke values such as ``Accept:text/html,application/json``.
    """
    pairs: list[tuple[str, str]] = []
    for part in text.split(","):
        if not part.strip():
            continue
        if ":" in part:
            name, value = part.split(":", 1)
            pairs.append((name.strip(), value.strip()))
        elif pairs:
            name, value = pairs[-1]
            pairs[-1] = (name, f"{value},{part.strip()}")
        else:
            raise ValueError(f"{part.strip()!r} is not name:value")
    return pairs


#: Every configuration key of the seed connector, in the order of its README.
SEED_KEYS: Final[Mapping[str, SeedKey]] = {
    "websocket.url": SeedKey("url", _url),
    "kafka.topic": SeedKey("kafka.topic", _text),
    "websocket.subscription.message": SeedKey("subscribe", _list_of_one),
    "websocket.reconnect.enabled": SeedKey("reconnect.enabled", _boolean),
    "websocket.reconnect.interval.ms": SeedKey("reconnect.initialDelaySeconds", _seconds),
    "websocket.headers": SeedKey("headers", _headers),
    "websocket.auth.token": SeedKey("auth.bearerToken", _bearer_token),
    "websocket.message.queue.size": SeedKey("buffer.maxMessages", _integer),
    "websocket.connection.timeout.ms": SeedKey("connection.connectTimeoutSeconds", _seconds),
}
REQUIRED_KEYS: Final = ("websocket.url", "kafka.topic")


def connector_to_resources(
    connector: object,
    *,
    bootstrap_servers: str = DEFAULT_BOOTSTRAP_SERVERS,
    namespace: str | None = None,
) -> Conversion:
    """The manifests for a connector: ``{"name": ..., "config": {...}}`` or a bare config.

    Raises ConfigError with one line per problem (missing or invalid keys, or a spec the
    bridge would reject, named by the seed key it came from).
    """
    connector_name, config = _unwrap(connector)
    name, warnings = _resource_name(connector_name, config)
    draft = _Draft(secret_name=f"{name}-credentials", warnings=warnings)
    draft.put("kafka.bootstrapServers", bootstrap_servers)
    _apply_seed_keys(config, draft)
    spec = _ordered(draft.spec)
    try:
        parse_spec(spec)
    except ConfigError as exc:
        raise ConfigError([_blame(problem) for problem in exc.problems]) from None
    metadata = {"name": name} if namespace is None else {"name": name, "namespace": namespace}
    return Conversion(
        source={"apiVersion": API_VERSION, "kind": KIND, "metadata": metadata, "spec": spec},
        secret=_secret(draft, namespace),
        warnings=tuple(draft.warnings),
        connector_name=connector_name,
        bootstrap_servers=bootstrap_servers,
    )


def _unwrap(connector: object) -> tuple[str | None, Mapping[str, object]]:
    """(connector name, config) of the REST API's wrapped form or of a bare config."""
    if not isinstance(connector, Mapping):
        raise ConfigError(["the connector must be a JSON object"])
    config = connector.get("config", connector)
    if not isinstance(config, Mapping):
        raise ConfigError(["config: must be a JSON object"])
    name = connector.get("name", config.get("name"))
    return (None if name is None else str(name)), config


def _resource_name(
    connector_name: str | None, config: Mapping[str, object]
) -> tuple[str, list[str]]:
    """A DNS-1123 label (what names of the operator's children need) from the connector's
    name, else from its topic; a warning when it had to be changed."""
    original = connector_name or str(config.get("kafka.topic") or "websocket-source")
    label = re.sub(r"[^a-z0-9]+", "-", original.lower())[:63].strip("-") or "websocket-source"
    if label == original:
        return label, []
    return label, [f"name {original!r} is not a valid resource name: using {label!r}"]


def _apply_seed_keys(config: Mapping[str, object], draft: _Draft) -> None:
    problems = [f"{key} is required" for key in REQUIRED_KEYS if not config.get(key)]
    for key, seed_key in SEED_KEYS.items():
        raw = config.get(key)
        if raw is None or raw == "":
            continue
        try:
            draft.put(seed_key.target, seed_key.value(_as_text(raw), draft))
        except ValueError as exc:
            problems.append(f"{key}: {exc}")
    if problems:
        raise ConfigError(problems)
    _fit_backoff_cap(draft)
    draft.warnings.extend(
        f"not mapped: {key}" for key in config if key not in SEED_KEYS and key not in FRAMEWORK_KEYS
    )


def _as_text(raw: object) -> str:
    """Kafka Connect configs are strings, but JSON numbers and booleans are accepted too."""
    if isinstance(raw, bool):
        return str(raw).lower()
    if isinstance(raw, str | int):
        return str(raw)
    raise ValueError(f"{raw!r} is not a string")


def _fit_backoff_cap(draft: _Draft) -> None:
    """The seed retried at a fixed interval; ws2kafka's backoff starts at it and doubles up to
    maxDelaySeconds, which must not be lower than the start."""
    reconnect = draft.spec.get("reconnect", {})
    cap = ReconnectSpec.model_fields["max_delay_seconds"].default
    if reconnect.get("initialDelaySeconds", 0) > cap:
        reconnect["maxDelaySeconds"] = reconnect["initialDelaySeconds"]


def _ordered(spec: dict[str, Any]) -> dict[str, Any]:
    """The spec's fields in the model's order, so every conversion reads the same way."""
    aliases = [info.alias or name for name, info in WebSocketSourceSpec.model_fields.items()]
    return {alias: spec[alias] for alias in aliases if alias in spec}


def _blame(problem: str) -> str:
    """``spec.buffer.maxMessages: ...`` + the seed key that set the field."""
    location = problem.split(":", 1)[0].removeprefix("spec.")
    for key, seed_key in SEED_KEYS.items():
        if re.match(rf"{re.escape(seed_key.target)}($|[.\[])", location):
            return f"{problem} (from {key})"
    return problem


def _secret(draft: _Draft, namespace: str | None) -> dict[str, Any] | None:
    if not draft.secret_data:
        return None
    metadata = {"name": draft.secret_name}
    if namespace is not None:
        metadata["namespace"] = namespace
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata,
        "type": "Opaque",
        "stringData": draft.secret_data,
    }


def conversion_to_yaml(conversion: Conversion) -> str:
    """The manifests as one YAML file, headed by comments on what to check before applying."""
    origin = conversion.connector_name or "(unnamed)"
    lines = [
        f"# Converted by `ws2kafka convert` from the Kafka Connect connector {origin}.",
        f"# CHECK spec.kafka.bootstrapServers ({conversion.bootstrap_servers}, from "
        "--bootstrap-servers): a connector",
        "# config has none, Kafka Connect takes it from its worker.",
    ]
    if conversion.secret_name is not None:
        lines += [
            f"# The Secret {conversion.secret_name} holds credentials in clear text:",
            "# keep this file out of version control.",
        ]
    documents = yaml.safe_dump_all(
        conversion.manifests, sort_keys=False, explicit_start=True, width=10_000
    )
    return "\n".join(lines) + "\n" + documents

"""Exceptions of the bridge.

::

    Ws2KafkaError
    ├── ConfigError (also a ValueError): invalid configuration, one message per problem
    ├── SourceError: the WebSocket side failed
    │   ├── HandshakeFailed: the server answered the upgrade with an HTTP error
    │   │   └── AuthenticationFailed: ... with 401 or 403
    │   └── GaveUp: reconnecting stopped after the configured number of attempts
    └── SinkError: the Kafka side failed
        └── ProducerFatal: librdkafka reported a fatal error; the producer must be recreated

The class name of an exception is the ``reason`` of the status condition it causes.
"""

from __future__ import annotations


class Ws2KafkaError(Exception):
    """Root of every error the bridge raises on purpose."""


class ConfigError(Ws2KafkaError, ValueError):
    """The configuration is invalid; ``problems`` has one ``field: message`` line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class SourceError(Ws2KafkaError):
    """The WebSocket side failed."""


class HandshakeFailed(SourceError):
    """The server rejected the WebSocket upgrade with an HTTP status."""

    def __init__(self, status: int, retry_after: float | None = None) -> None:
        super().__init__(f"handshake rejected with HTTP {status}")
        self.status = status
        self.retry_after = retry_after


class AuthenticationFailed(HandshakeFailed):
    """The server answered 401 or 403: the credentials are wrong or expired."""


class GaveUp(SourceError):
    """Reconnecting stopped after ``attempts`` consecutive failures; ``last`` says why."""

    def __init__(self, attempts: int, last: str) -> None:
        super().__init__(f"gave up after {attempts} failed attempts; last error: {last}")
        self.attempts = attempts
        self.last = last


class SinkError(Ws2KafkaError):
    """The Kafka side failed."""


class ProducerFatal(SinkError):
    """librdkafka raised a fatal error (e.g. idempotence state lost)."""

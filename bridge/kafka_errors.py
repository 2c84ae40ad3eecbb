"""What a librdkafka error means for the people running the bridge, as one CamelCase reason.

librdkafka reports the same few situations through many codes: a wrong SASL password as
``_AUTHENTICATION`` (the client's own check) or ``SASL_AUTHENTICATION_FAILED`` (the broker's
answer), an untrusted broker certificate as ``_SSL``, a missing ACL as
``TOPIC_AUTHORIZATION_FAILED`` in a delivery report, and a client certificate the broker
refuses, under TLS 1.3, as a mere ``_TRANSPORT`` error whose text carries the TLS alert (the
client's half of the handshake had already completed). :func:`classify` maps an error (from
``error_cb`` or a delivery report) to the reason a status condition shows; errors that need no
one's attention (a retried request, a leader that moved) map to None.

The integration test ``test_kafka_security.py`` checks these mappings against what a real
broker makes librdkafka report.
"""

from __future__ import annotations

from typing import Final

from confluent_kafka import KafkaError

KAFKA_AUTHENTICATION_FAILED: Final = "KafkaAuthenticationFailed"
"""The brokers refused our credentials, or TLS failed (an untrusted certificate on either
side): retrying without a change of configuration or Secret cannot succeed."""
TOPIC_AUTHORIZATION_FAILED: Final = "TopicAuthorizationFailed"
"""Authenticated, but the principal may not write the topic (an ACL is missing)."""
CLUSTER_AUTHORIZATION_FAILED: Final = "ClusterAuthorizationFailed"
"""The principal may not use the idempotent producer (old brokers want IdempotentWrite)."""
BROKERS_UNREACHABLE: Final = "BrokersUnreachable"
"""No connection to the brokers (refused, reset, timed out); records wait in the buffer."""

#: Most specific first: when several hold at once (a refused password also leaves every
#: broker down), a status shows the first.
PRECEDENCE: Final = (
    KAFKA_AUTHENTICATION_FAILED,
    TOPIC_AUTHORIZATION_FAILED,
    CLUSTER_AUTHORIZATION_FAILED,
    BROKERS_UNREACHABLE,
)

_REASONS: Final = {
    KafkaError._AUTHENTICATION: KAFKA_AUTHENTICATION_FAILED,
    KafkaError.SASL_AUTHENTICATION_FAILED: KAFKA_AUTHENTICATION_FAILED,
    KafkaError.UNSUPPORTED_SASL_MECHANISM: KAFKA_AUTHENTICATION_FAILED,
    KafkaError.ILLEGAL_SASL_STATE: KAFKA_AUTHENTICATION_FAILED,
    KafkaError._SSL: KAFKA_AUTHENTICATION_FAILED,
    KafkaError.TOPIC_AUTHORIZATION_FAILED: TOPIC_AUTHORIZATION_FAILED,
    KafkaError.CLUSTER_AUTHORIZATION_FAILED: CLUSTER_AUTHORIZATION_FAILED,
    KafkaError._ALL_BROKERS_DOWN: BROKERS_UNREACHABLE,
    KafkaError._TRANSPORT: BROKERS_UNREACHABLE,
    KafkaError._RESOLVE: BROKERS_UNREACHABLE,
}


#: What OpenSSL appends to an error caused by the peer's TLS alert (``... alert certificate
#: unknown: SSL alert number 46``): the broker refused the handshake, as opposed to a
#: connection that broke afterwards.
_TLS_ALERT: Final = "SSL alert number"


def classify(error: KafkaError) -> str | None:
    """The reason for ``error`` (one of :data:`PRECEDENCE`), or None if it needs no one."""
    code = error.code()
    if code == KafkaError._TRANSPORT and _TLS_ALERT in error.str():
        return KAFKA_AUTHENTICATION_FAILED
    return _REASONS.get(code)

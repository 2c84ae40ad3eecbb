"""A single Kafka broker secured as production clusters are: SASL_SSL with SCRAM-SHA-512, mutual
TLS, and ACLs enforced by KRaft's ``StandardAuthorizer``.

Listeners, all on loopback:

- ``SASL_SSL``: TLS with a certificate from a test CA (``devstack.pki``), then SCRAM-SHA-512;
  the first SCRAM user is created when the storage is formatted (``--add-scram``), others
  (and new passwords) through the admin API; a connection re-authenticates every
  :data:`REAUTHENTICATION_MS` (KIP-368);
- ``SSL``: mutual TLS, a client certificate from the same CA required; its ``CN`` is the
  principal (``ssl.principal.mapping.rules``);
- ``PLAINTEXT``: for the test itself (readiness, topics, ACLs, reading back). Its principal,
  ``User:ANONYMOUS``, is the only super user, so nothing the bridge uses gets a free pass.

Every principal but the super user may do only what an ACL allows (no ACL: denied).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)

from .kafka import KafkaBroker, assemble_kafka, new_cluster_id
from .pki import Issued, Pki
from .processes import free_port

_ADMIN_TIMEOUT: Final = 30.0
_KEYSTORE_PASSWORD: Final = "ws2kafka-keystore"
#: How long a SASL connection lives before the broker wants it to re-authenticate.
REAUTHENTICATION_MS: Final = 3000


@dataclass(frozen=True)
class ScramUser:
    name: str
    password: str

    @property
    def principal(self) -> str:
        return f"User:{self.name}"


class SecuredKafka:
    """The broker, its CA and client certificate, its SCRAM user, and ACL helpers."""

    def __init__(
        self,
        broker: KafkaBroker,
        pki: Pki,
        user: ScramUser,
        client: Issued,
        sasl_ssl_port: int,
        ssl_port: int,
    ) -> None:
        self.broker = broker
        self.pki = pki
        self.user = user
        self.client = client
        """The client certificate the mutual-TLS listener accepts."""
        self.client_principal = f"User:{client.cert.stem}"
        self.sasl_ssl_servers = f"127.0.0.1:{sasl_ssl_port}"
        self.ssl_servers = f"127.0.0.1:{ssl_port}"

    @classmethod
    @contextlib.contextmanager
    def start(cls, workdir: Path, user: ScramUser) -> Iterator[SecuredKafka]:
        """Make the CA and certificates, format storage with ``user``, start the broker; on
        exit stop it and delete its data."""
        pki = Pki.create(workdir / "pki")
        server = pki.issue_server("kafka-broker")
        client = pki.issue_client("ws2kafka-bridge-tls")
        keystore = pki.keystore(server, _KEYSTORE_PASSWORD)
        port, sasl_ssl_port, ssl_port, controller_port = (free_port() for _ in range(4))
        listeners = (
            f"PLAINTEXT://127.0.0.1:{port},SASL_SSL://127.0.0.1:{sasl_ssl_port},"
            f"SSL://127.0.0.1:{ssl_port}"
        )
        broker = KafkaBroker(
            workdir / "broker",
            assemble_kafka(),
            port,
            controller_port=controller_port,
            overrides={
                "listeners": f"{listeners},CONTROLLER://127.0.0.1:{controller_port}",
                "advertised.listeners": listeners,
                **_security_settings(keystore, pki.ca),
            },
            name="kafka secured broker",
        )
        secured = cls(broker, pki, user, client, sasl_ssl_port, ssl_port)
        try:
            broker.format(
                new_cluster_id(),
                "--add-scram",
                f"SCRAM-SHA-512=[name={user.name},password={user.password}]",
            )
            broker.launch()
            yield secured
        finally:
            broker.stop()
            broker.remove_data()

    @property
    def log_path(self) -> Path:
        return self.broker.log_path

    def set_password(self, user: ScramUser) -> None:
        """Create ``user``, or give it a new password (the old one is refused from now on)."""
        admin = AdminClient({"bootstrap.servers": self.broker.bootstrap_servers})
        info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192)
        upsert = UserScramCredentialUpsertion(user.name, info, user.password.encode())
        for future in admin.alter_user_scram_credentials(
            [upsert], request_timeout=_ADMIN_TIMEOUT
        ).values():
            future.result(timeout=_ADMIN_TIMEOUT)

    def allow_writes(self, principal: str, topic_prefix: str) -> None:
        """Let ``principal`` write to (and describe) the topics whose names start with
        ``topic_prefix``, and nothing else."""
        admin = AdminClient({"bootstrap.servers": self.broker.bootstrap_servers})
        bindings = [
            AclBinding(
                ResourceType.TOPIC,
                topic_prefix,
                ResourcePatternType.PREFIXED,
                principal,
                "*",
                operation,
                AclPermissionType.ALLOW,
            )
            for operation in (AclOperation.WRITE, AclOperation.DESCRIBE)
        ]
        for future in admin.create_acls(bindings, request_timeout=_ADMIN_TIMEOUT).values():
            future.result(timeout=_ADMIN_TIMEOUT)


def _security_settings(keystore: Path, ca: Path) -> dict[str, str]:
    return {
        "listener.security.protocol.map": (
            "PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL,SSL:SSL,CONTROLLER:PLAINTEXT"
        ),
        "ssl.keystore.type": "PKCS12",
        "ssl.keystore.location": str(keystore),
        "ssl.keystore.password": _KEYSTORE_PASSWORD,
        "ssl.key.password": _KEYSTORE_PASSWORD,
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(ca),
        "listener.name.ssl.ssl.client.auth": "required",
        "ssl.principal.mapping.rules": "RULE:^CN=([^,]+)$/$1/,DEFAULT",
        "sasl.enabled.mechanisms": "SCRAM-SHA-512",
        "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": (
            "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        ),
        # SASL clients re-authenticate every few seconds (KIP-368), as a cluster that
        # enforces credential rotation makes them: a rotated password must be used then
        "connections.max.reauth.ms": str(REAUTHENTICATION_MS),
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users": "User:ANONYMOUS",
        "allow.everyone.if.no.acl.found": "false",
    }

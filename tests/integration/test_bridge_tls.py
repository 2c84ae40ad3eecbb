"""``wss://`` feeds: certificate verification, a private CA, mutual TLS, and the escape hatch.

A throwaway CA, server and client certificate are made with the ``openssl`` command line for
each test session; no Python dependency is added for it. Every test runs with both WebSocket
clients: each brings its own TLS layer (picows: aiofastnet's; websockets: asyncio's).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ws2kafka.bridge.service import Bridge, ExitCode
from ws2kafka.bridge.stats import ConnectionState
from ws2kafka.devstack.feeds import SequenceFeed, silent_server
from ws2kafka.devstack.harness import bridge_spec, new_topic, run_until, seqs
from ws2kafka.devstack.kafka import KafkaBroker
from ws2kafka.devstack.processes import free_port


@dataclass(frozen=True)
class Pki:
    """PEM files of a test CA and the certificates it signed."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    def server_context(self, *, require_client_cert: bool = False) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.server_cert, self.server_key)
        if require_client_cert:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(self.ca)
        return context


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def issue(name: str, extensions: str, cwd: Path) -> None:
    """A P-256 key and a certificate for ``name``, signed by ``ca``."""
    (cwd / f"{name}.ext").write_text(extensions)
    openssl(
        "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN=ws2kafka test {name}",
        cwd=cwd,
    )  # fmt: skip
    openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-out", f"{name}.pem", "-extfile", f"{name}.ext",
        cwd=cwd,
    )  # fmt: skip


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=ws2kafka test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=folder,
    )  # fmt: skip
    issue("server", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n", folder)
    issue("client", "extendedKeyUsage=clientAuth\n", folder)
    return Pki(
        ca=folder / "ca.pem",
        server_cert=folder / "server.pem",
        server_key=folder / "server.key",
        client_cert=folder / "client.pem",
        client_key=folder / "client.key",
    )


@pytest.fixture(params=["picows", "websockets"])
def connection(request: pytest.FixtureRequest) -> dict[str, str]:
    """``connection`` of the spec, selecting each client in turn."""
    return {"client": request.param}


async def test_an_unknown_ca_fails_verification_and_the_bridge_keeps_retrying(
    pki: Pki, connection: dict[str, str]
) -> None:
    async with SequenceFeed(count=10, ssl=pki.server_context()) as feed:
        assert feed.url.startswith("wss://")
        spec = bridge_spec(f"127.0.0.1:{free_port()}", feed.url, "t", connection=connection)
        bridge = Bridge(spec, name="untrusted")
        summary = await run_until(
            bridge,
            lambda: bridge.stats.connect_failures >= 3,
            "3 failed attempts",
        )
    stats = bridge.stats
    assert stats.errors == {"SSLCertVerificationError": stats.connect_failures}
    # the wording differs (websockets: "certificate verify failed: ...", picows: "ssl handshake
    # failed: ..."); both name the verification error and say why it failed
    assert "CERTIFICATE_VERIFY_FAILED" in (stats.last_error or "")
    assert "unable to get local issuer certificate" in (stats.last_error or "")
    assert (stats.connects, summary.received, feed.connections) == (0, 0, [])
    assert summary.exit_code == ExitCode.OK  # nothing was received, so nothing is missing


async def test_connect_timeout_covers_a_stalled_tls_handshake(connection: dict[str, str]) -> None:
    """A peer that accepts TCP but never answers the TLS hello must not hang the bridge."""
    async with silent_server() as port:
        url = f"wss://127.0.0.1:{port}"
        spec = bridge_spec(
            f"127.0.0.1:{free_port()}",
            url,
            "absent",
            connection={**connection, "connectTimeoutSeconds": 0.3},
            reconnect={"initialDelaySeconds": 0.01, "maxDelaySeconds": 0.02, "maxAttempts": 3},
        )
        started = time.monotonic()
        bridge = Bridge(spec, name="stalled")
        summary = await asyncio.wait_for(bridge.run(), 30)
    assert summary.exit_code == ExitCode.GAVE_UP
    assert bridge.stats.errors == {"ConnectTimeout": 3}
    assert time.monotonic() - started < 5


@pytest.mark.kafka
async def test_ca_file_trusts_a_private_ca(
    kafka: KafkaBroker, pki: Pki, connection: dict[str, str]
) -> None:
    topic = new_topic(kafka)
    async with SequenceFeed(count=50, ssl=pki.server_context()) as feed:
        tls = {"caFile": str(pki.ca)}
        spec = bridge_spec(kafka, feed.url, topic, tls=tls, connection=connection)
        bridge = Bridge(spec, name="privateca")
        summary = await run_until(bridge, lambda: bridge.stats.delivered >= 50, "50 records")
    assert (summary.exit_code, summary.received, summary.delivered) == (ExitCode.OK, 50, 50)
    assert bridge.stats.errors == {}
    assert seqs(kafka, topic, 50) == list(range(1, 51))


def mutual_tls(pki: Pki, form: str) -> dict[str, Any]:
    """Files, as a local config or a bridge pod's rendered config names them, or the PEM texts
    themselves, as inline mode hands over the referenced Secret keys."""
    if form == "files":
        return {
            "caFile": str(pki.ca),
            "clientCertFile": str(pki.client_cert),
            "clientKeyFile": str(pki.client_key),
        }
    return {
        name: {"value": path.read_text()}
        for name, path in (
            ("ca", pki.ca),
            ("clientCert", pki.client_cert),
            ("clientKey", pki.client_key),
        )
    }


@pytest.mark.kafka
@pytest.mark.parametrize("form", ["files", "values"])
async def test_mutual_tls_presents_the_client_certificate(
    kafka: KafkaBroker, pki: Pki, connection: dict[str, str], form: str
) -> None:
    topic = new_topic(kafka)
    context = pki.server_context(require_client_cert=True)
    async with SequenceFeed(count=20, ssl=context) as feed:
        anonymous = Bridge(
            bridge_spec(kafka, feed.url, topic, tls={"caFile": str(pki.ca)}, connection=connection),
            name="anonymous",
        )
        await run_until(anonymous, lambda: anonymous.stats.connect_failures >= 2, "2 refusals")
        assert (anonymous.stats.connects, feed.connections) == (0, [])
        assert sum(anonymous.stats.errors.values()) == anonymous.stats.connect_failures

        spec = bridge_spec(kafka, feed.url, topic, tls=mutual_tls(pki, form), connection=connection)
        mutual = Bridge(spec, name="mutual")
        summary = await run_until(mutual, lambda: mutual.stats.delivered >= 20, "20 records")
    assert (summary.exit_code, summary.received, summary.delivered) == (ExitCode.OK, 20, 20)
    assert (mutual.stats.errors, len(feed.connections)) == ({}, 1)
    assert seqs(kafka, topic, 20) == list(range(1, 21))


@pytest.mark.kafka
async def test_insecure_skip_verify_connects_and_warns_at_every_connect(
    kafka: KafkaBroker, pki: Pki, connection: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ws2kafka")
    topic = new_topic(kafka)
    # two connections: the warning is repeated for each, not only once at start
    async with SequenceFeed(close_after=5, ssl=pki.server_context()) as feed:
        tls = {"insecureSkipVerify": True}
        spec = bridge_spec(kafka, feed.url, topic, tls=tls, connection=connection)
        bridge = Bridge(spec, name="insecure")
        summary = await run_until(bridge, lambda: bridge.stats.delivered >= 10, "10 records")
    assert (summary.exit_code, summary.undelivered) == (ExitCode.OK, 0)
    warnings = [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and "TLS certificate checks are disabled" in r.getMessage()
    ]
    assert len(warnings) == bridge.stats.connects >= 2
    assert bridge.stats.state is ConnectionState.STOPPED
    assert seqs(kafka, topic, summary.received) == list(range(1, summary.received + 1))

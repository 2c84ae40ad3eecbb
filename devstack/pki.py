"""A throwaway certificate authority for TLS tests, made with the ``openssl`` command line.

One CA per test session signs a server certificate for 127.0.0.1 and client certificates;
another CA, unrelated to it, makes certificates nobody trusts. Keys are P-256, certificates
last two days, and nothing is kept between sessions. Kafka reads its key and certificate
from a PKCS#12 keystore (:meth:`Pki.keystore`) and the CA from a PEM file.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from .processes import StackError


@dataclass(frozen=True)
class Issued:
    """A certificate and its unencrypted private key, as PEM files."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class Pki:
    """A CA's certificate and key, in a folder where it writes what it issues."""

    folder: Path
    ca: Path
    ca_key: Path

    @classmethod
    def create(cls, folder: Path, name: str = "ws2kafka test CA") -> Pki:
        folder.mkdir(parents=True, exist_ok=True)
        openssl(
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", f"/CN={name}",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            cwd=folder,
        )  # fmt: skip
        return cls(folder, folder / "ca.pem", folder / "ca.key")

    def issue_server(self, name: str) -> Issued:
        """A certificate a TLS server on 127.0.0.1 (or localhost) presents."""
        return self._issue(
            name,
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
        )

    def issue_client(self, name: str) -> Issued:
        """A client certificate whose subject is ``CN=<name>``."""
        return self._issue(name, "extendedKeyUsage=clientAuth\n")

    def keystore(self, issued: Issued, password: str) -> Path:
        """``issued`` with its chain in a PKCS#12 keystore, as a JVM server reads it."""
        path = issued.cert.with_suffix(".p12")
        openssl(
            "pkcs12", "-export", "-in", str(issued.cert), "-inkey", str(issued.key),
            "-certfile", str(self.ca), "-name", issued.cert.stem, "-out", str(path),
            "-passout", f"pass:{password}",
            cwd=self.folder,
        )  # fmt: skip
        return path

    def _issue(self, name: str, extensions: str) -> Issued:
        (self.folder / f"{name}.ext").write_text(extensions)
        openssl(
            "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}",
            cwd=self.folder,
        )  # fmt: skip
        openssl(
            "x509", "-req", "-in", f"{name}.csr", "-CA", str(self.ca), "-CAkey",
            str(self.ca_key), "-CAcreateserial", "-days", "2", "-out", f"{name}.pem",
            "-extfile", f"{name}.ext",
            cwd=self.folder,
        )  # fmt: skip
        return Issued(self.folder / f"{name}.pem", self.folder / f"{name}.key")


def openssl(*args: str, cwd: Path) -> None:
    result = subprocess.run(
        ["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )
    if result.returncode != 0:
        raise StackError(f"openssl {args[0]} failed: {result.stderr.strip()}")

"""Toxiproxy on loopback: real TCP proxies whose connections a test can slow, cut or black-hole.

The network faults the bridge must survive (latency, a thin pipe, a peer that resets, a peer
that goes silent without closing, a slow close, a connection cut after N bytes) happen between
real sockets here, not in a mock. Shopify's Toxiproxy server is built once per machine from
the Go module proxy (``go install``, about half a minute) and cached like the control plane;
this module drives its HTTP API with the standard library.

Usage::

    with Toxiproxy.start(workdir) as toxiproxy:
        proxy = toxiproxy.create_proxy("feed", upstream="127.0.0.1:8765")
        with proxy.toxic("latency", latency=200):
            ...  # clients of proxy.listen see 200 ms more on every chunk
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final, Literal

from . import paths
from .processes import ManagedProcess, StackError, free_port, run_logged

log = logging.getLogger("ws2kafka.devstack")

#: The Go module and release the server is built from (``go list -m -versions`` lists them).
TOXIPROXY_MODULE: Final = "github.com/Shopify/toxiproxy/v2"
TOXIPROXY_VERSION: Final = "v2.5.0"
_BINARY: Final = "server"  # the name ``go install .../cmd/server`` gives it
_BUILD_TIMEOUT: Final = 900.0
_READY_TIMEOUT: Final = 30.0
_API_TIMEOUT: Final = 10.0

Stream = Literal["downstream", "upstream"]
"""``downstream``: data from the upstream server to the client; ``upstream``: the other way."""


def build_toxiproxy() -> Path:
    """The Toxiproxy server binary, built on the first call on a machine and reused afterwards.

    The binary appears by an atomic rename, and a lock serialises concurrent builds, so a
    parallel test run waits for the first build instead of racing it.
    """
    bin_dir = paths.cache_dir() / "bin" / f"toxiproxy-{TOXIPROXY_VERSION}"
    binary = bin_dir / _BINARY
    if os.access(binary, os.X_OK):
        return binary
    bin_dir.mkdir(parents=True, exist_ok=True)
    with (bin_dir / ".build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.access(binary, os.X_OK):
            return binary
        go = shutil.which("go")
        if go is None:
            raise StackError("Go (go) is not on PATH; it is needed once to build Toxiproxy")
        build_log = paths.cache_dir() / "logs" / f"toxiproxy-build-{TOXIPROXY_VERSION}.log"
        log.info("building Toxiproxy %s, log: %s", TOXIPROXY_VERSION, build_log)
        started = time.monotonic()
        staging = Path(tempfile.mkdtemp(prefix=".building-", dir=bin_dir))
        try:
            run_logged(
                [
                    go,
                    "install",
                    "-trimpath",
                    "-ldflags=-s -w",
                    f"{TOXIPROXY_MODULE}/cmd/server@{TOXIPROXY_VERSION}",
                ],
                build_log,
                what=f"building Toxiproxy {TOXIPROXY_VERSION} from the Go module proxy",
                env={"GOBIN": str(staging), "CGO_ENABLED": "0"},
                timeout=_BUILD_TIMEOUT,
            )
            (staging / _BINARY).rename(binary)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        log.info("Toxiproxy built in %.0f s: %s", time.monotonic() - started, binary)
    return binary


class ToxiproxyError(StackError):
    """The Toxiproxy API refused a request; the message carries its answer."""


class Toxiproxy:
    """A running Toxiproxy server and a client for its HTTP API."""

    def __init__(self, api_url: str, process: ManagedProcess | None = None) -> None:
        self.api_url = api_url.rstrip("/")
        self.process = process

    @classmethod
    @contextlib.contextmanager
    def start(cls, workdir: Path) -> Iterator[Toxiproxy]:
        """Start a server with its API on a free loopback port; stop it on exit."""
        binary = build_toxiproxy()
        port = free_port()
        workdir.mkdir(parents=True, exist_ok=True)
        with ManagedProcess(
            "toxiproxy",
            [str(binary), "-host", "127.0.0.1", "-port", str(port)],
            workdir / "toxiproxy.log",
        ) as process:
            toxiproxy = cls(f"http://127.0.0.1:{port}", process)
            process.wait_until(toxiproxy._answers, timeout=_READY_TIMEOUT, what="serving its API")
            yield toxiproxy

    @property
    def log_path(self) -> Path | None:
        return self.process.log_path if self.process is not None else None

    def version(self) -> str:
        return self._request("GET", "/version").strip()

    def create_proxy(self, name: str, upstream: str, listen: str = "127.0.0.1:0") -> Proxy:
        """A new enabled proxy; with the default ``listen`` it picks a free loopback port."""
        answer = json.loads(
            self._request(
                "POST",
                "/proxies",
                {"name": name, "listen": listen, "upstream": upstream, "enabled": True},
            )
        )
        return Proxy(self, answer["name"], answer["listen"], answer["upstream"])

    def reset(self) -> None:
        """Enable every proxy and remove every toxic."""
        self._request("POST", "/reset")

    def _answers(self) -> bool:
        try:
            self.version()
        except (OSError, ToxiproxyError):
            return False
        return True

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> str:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.api_url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"} if data is not None else {},
        )
        try:
            with urllib.request.urlopen(request, timeout=_API_TIMEOUT) as response:
                text: str = response.read().decode()
                return text
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace").strip()
            raise ToxiproxyError(f"Toxiproxy: {method} {path} -> {exc.code}: {detail}") from None


class Proxy:
    """One proxy: clients connect to ``listen`` and reach ``upstream`` through the toxics."""

    def __init__(self, server: Toxiproxy, name: str, listen: str, upstream: str) -> None:
        self.server = server
        self.name = name
        self.listen = listen
        self.upstream = upstream

    @property
    def port(self) -> int:
        return int(self.listen.rsplit(":", 1)[1])

    def add_toxic(
        self,
        kind: str,
        *,
        stream: Stream = "downstream",
        toxicity: float = 1.0,
        name: str | None = None,
        **attributes: int,
    ) -> str:
        """Add a toxic; returns its name (for :meth:`remove_toxic`).

        ``kind`` and its attributes, as Toxiproxy documents them (times in milliseconds):
        ``latency`` (latency, jitter), ``bandwidth`` (rate, KB/s), ``slow_close`` (delay),
        ``timeout`` (timeout; 0: black hole until removed), ``reset_peer`` (timeout),
        ``limit_data`` (bytes), ``slicer`` (average_size, size_variation, delay).
        Toxics act on open connections as well as on new ones.
        """
        return self._add(kind, stream, toxicity, name, attributes)

    def _add(
        self,
        kind: str,
        stream: Stream,
        toxicity: float,
        name: str | None,
        attributes: dict[str, int],
    ) -> str:
        toxic_name = name or f"{kind}_{stream}"
        self.server._request(
            "POST",
            f"/proxies/{self.name}/toxics",
            {
                "name": toxic_name,
                "type": kind,
                "stream": stream,
                "toxicity": toxicity,
                "attributes": attributes,
            },
        )
        return toxic_name

    def remove_toxic(self, name: str) -> None:
        self.server._request("DELETE", f"/proxies/{self.name}/toxics/{name}")

    def toxics(self) -> list[dict[str, Any]]:
        answer: list[dict[str, Any]] = json.loads(
            self.server._request("GET", f"/proxies/{self.name}/toxics")
        )
        return answer

    @contextlib.contextmanager
    def toxic(
        self, kind: str, *, stream: Stream = "downstream", toxicity: float = 1.0, **attributes: int
    ) -> Iterator[str]:
        """A toxic for the duration of a ``with`` block, removed whatever the block raised."""
        name = self._add(kind, stream, toxicity, None, attributes)
        try:
            yield name
        finally:
            self.remove_toxic(name)

    def enable(self) -> None:
        self._set_enabled(True)

    def disable(self) -> None:
        """Close every connection of the proxy and refuse new ones until :meth:`enable`."""
        self._set_enabled(False)

    def delete(self) -> None:
        self.server._request("DELETE", f"/proxies/{self.name}")

    def _set_enabled(self, enabled: bool) -> None:
        self.server._request("POST", f"/proxies/{self.name}", {"enabled": enabled})

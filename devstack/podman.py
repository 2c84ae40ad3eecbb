"""The container engine that builds images: podman, configured by the devstack alone.

The machine's own podman settings are never read or changed: ``CONTAINERS_CONF`` and
``CONTAINERS_STORAGE_CONF`` point at files in the ws2kafka cache, and storage lives there too.
Each setting is one this machine type needs (measured, see the README):

- host networking (``netns="host"``): builds fetch wheels over the machine's own network;
- ``cgroupfs`` and a ``file`` events logger: no systemd runs here;
- ``runc``: crun refuses cgroup v1 hybrid layouts;
- an open-files limit of 20000: root here cannot raise it to podman's default of 1048576;
- the overlay storage driver, with graph and run roots under the cache.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Final

from . import debian, paths
from .processes import StackError, run_logged

_CONTAINERS_CONF: Final = """\
[containers]
netns = "host"
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{root}/events.log"
runtime = "runc"
"""
_STORAGE_CONF: Final = """\
[storage]
driver = "overlay"
graphroot = "{root}/storage"
runroot = "{root}/run"
"""


def podman_dir() -> Path:
    """The folder holding podman's configuration and storage."""
    return paths.cache_dir() / "podman"


def env() -> dict[str, str]:
    """The environment that makes podman use the devstack's configuration and storage."""
    root = podman_dir()
    root.mkdir(parents=True, exist_ok=True)
    containers_conf, storage_conf = root / "containers.conf", root / "storage.conf"
    containers_conf.write_text(_CONTAINERS_CONF.format(root=root))
    storage_conf.write_text(_STORAGE_CONF.format(root=root))
    return {"CONTAINERS_CONF": str(containers_conf), "CONTAINERS_STORAGE_CONF": str(storage_conf)}


def binary() -> str:
    """podman, installed from Debian when missing."""
    debian.ensure(debian.IMAGE_PACKAGES)
    found = shutil.which("podman")
    if found is None:
        raise StackError("podman is not on PATH although its package is installed")
    return found


def run(argv: Sequence[str], log_path: Path, *, what: str, timeout: float = 900.0) -> None:
    """``podman ARGV`` with the devstack's configuration, its output in ``log_path``."""
    run_logged([binary(), *argv], log_path, what=what, env=env(), timeout=timeout)


def output(*argv: str) -> str:
    """The stripped stdout of ``podman ARGV``; StackError with stderr if it fails."""
    result = subprocess.run(
        [binary(), *argv],
        capture_output=True,
        text=True,
        env={**os.environ, **env()},
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise StackError(f"podman {' '.join(argv)} failed: {result.stderr.strip()}")
    return result.stdout.strip()


def has_image(name: str) -> bool:
    """Whether podman's storage holds the image ``name``."""
    result = subprocess.run(
        [binary(), "image", "exists", name],
        capture_output=True,
        env={**os.environ, **env()},
        timeout=60,
        check=False,
    )
    return result.returncode == 0


@contextmanager
def exclusive() -> Iterator[None]:
    """Serialise image builds across parallel runs sharing the cache."""
    lock_path = podman_dir() / ".build.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield

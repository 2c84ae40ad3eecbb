"""Debian packages the image build and the node need, installed with apt when missing.

podman, mmdebstrap, containerd, runc and the CNI plugins are system software: they come from
the machine's Debian archive, never from a download of their own. The first caller on a fresh
machine (CI) runs ``apt-get update`` and ``apt-get install`` once (as root, about a minute);
later callers find everything installed and pay one ``dpkg-query``.
"""

from __future__ import annotations

import fcntl
import logging
import os
import subprocess
import time
from typing import Final

from . import paths
from .processes import StackError, run_logged

log = logging.getLogger("ws2kafka.devstack")

#: Building the image: podman with runc (crun refuses this machine's hybrid cgroup layout), and
#: mmdebstrap for the base image where no registry is reachable.
IMAGE_PACKAGES: Final = ("podman", "runc", "mmdebstrap", "ca-certificates")
#: Running pods: containerd, runc, the CNI loopback plugin, gcc + libc6-dev for the pause binary.
NODE_PACKAGES: Final = ("containerd", "runc", "containernetworking-plugins", "gcc", "libc6-dev")
_APT_TIMEOUT: Final = 900.0


def missing(packages: tuple[str, ...]) -> list[str]:
    """The packages of ``packages`` that dpkg does not list as installed."""
    packages = tuple(dict.fromkeys(packages))
    result = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Package} ${db:Status-Status}\n", *packages],
        capture_output=True,
        text=True,
        check=False,
    )
    installed = {
        line.split()[0] for line in result.stdout.splitlines() if line.endswith(" installed")
    }
    return [package for package in packages if package not in installed]


def ensure(packages: tuple[str, ...]) -> None:
    """Install whatever of ``packages`` is missing, or fail saying what and why."""
    if not missing(packages):
        return
    if os.geteuid() != 0:
        raise StackError(f"these Debian packages are missing and need root: {missing(packages)}")
    lock_path = paths.cache_dir() / "apt.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        wanted = missing(packages)
        if not wanted:
            return
        apt_log = paths.cache_dir() / "logs" / "apt.log"
        log.info("installing Debian packages %s, log: %s", " ".join(wanted), apt_log)
        started = time.monotonic()
        env = {"DEBIAN_FRONTEND": "noninteractive"}
        run_logged(
            ["apt-get", "update"], apt_log, what="apt-get update", env=env, timeout=_APT_TIMEOUT
        )
        run_logged(
            ["apt-get", "install", "-y", "--no-install-recommends", *wanted],
            apt_log,
            what=f"installing {' '.join(wanted)}",
            env=env,
            timeout=_APT_TIMEOUT,
        )
        log.info("Debian packages installed in %.0f s", time.monotonic() - started)

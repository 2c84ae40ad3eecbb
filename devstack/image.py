"""The project's container image, built from the Dockerfile with podman (or docker).

``make image`` and the node's tests build it the same way. The base is ``python:3.11-slim``
where a registry answers, else the Debian-made equivalent of ``baseimage.py``;
``WS2KAFKA_BASE_IMAGE`` chooses one explicitly. The tag carries a hash of everything the
Dockerfile copies and of the base, so an unchanged tree reuses the image already built.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Final

from . import baseimage, paths, podman
from .processes import StackError, run_logged

log = logging.getLogger("ws2kafka.devstack")

REPOSITORY: Final = "localhost/ws2kafka"
DEFAULT_BASE: Final = "python:3.11-slim"
_REGISTRY: Final = ("registry-1.docker.io", 443)
#: What the Dockerfile copies (its .dockerignore is the same allowlist).
_CONTEXT: Final = (
    "Dockerfile",
    "pyproject.toml",
    "README.md",
    "bridge",
    "operator",
    "devstack/__init__.py",
)
#: The machine's CA bundle: pip in the build verifies PyPI with it (mounted, never copied).
CA_BUNDLE: Final = Path("/etc/ssl/certs/ca-certificates.crt")


def registry_reachable(timeout: float = 5.0) -> bool:
    """Whether Docker Hub answers a TCP connection (no registry: no python:3.11-slim)."""
    try:
        with socket.create_connection(_REGISTRY, timeout=timeout):
            return True
    except OSError:
        return False


def choose_base() -> str:
    """``$WS2KAFKA_BASE_IMAGE``, else python:3.11-slim if a registry answers, else the base
    made from Debian packages (made on the first call, then cached)."""
    explicit = os.environ.get("WS2KAFKA_BASE_IMAGE")
    if explicit:
        return explicit
    if docker() is None and not registry_reachable():
        log.info("no container registry reachable: using the base made from Debian packages")
        return baseimage.base_image()
    return DEFAULT_BASE


def docker() -> str | None:
    """A docker CLI whose daemon answers, which users may prefer; else None (podman)."""
    found = shutil.which("docker")
    if found is None:
        return None
    info = subprocess.run([found, "info"], capture_output=True, timeout=30, check=False)
    return found if info.returncode == 0 else None


def context_hash(context: Path, base: str) -> str:
    """A hash of the files the build copies and of the base image's name."""
    digest = hashlib.sha256(base.encode())
    for entry in _CONTEXT:
        root = context / entry
        files = sorted(root.rglob("*")) if root.is_dir() else [root]
        for path in files:
            if path.is_file() and "__pycache__" not in path.parts:
                digest.update(str(path.relative_to(context)).encode() + b"\0")
                digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def build(context: Path, *, name: str | None = None) -> str:
    """Build the image from ``context`` (the repository) and return its name: ``name``, else
    ``localhost/ws2kafka:dev-HASH``, which an unchanged tree reuses."""
    base = choose_base()
    explicit = name is not None
    name = name or f"{REPOSITORY}:dev-{context_hash(context, base)}"
    build_log = paths.cache_dir() / "logs" / "image-build.log"
    argv = ["build", "--build-arg", f"PYTHON_IMAGE={base}", "-t", name, str(context)]
    engine = docker()
    if engine is not None:
        run_logged([engine, *argv], build_log, what="docker build", timeout=1800)
        return name
    with podman.exclusive():
        if not explicit and podman.has_image(name):
            return name
        log.info("building %s from %s with podman, log: %s", name, base, build_log)
        started = time.monotonic()
        volume = f"{CA_BUNDLE}:{CA_BUNDLE}:ro"
        podman.run([argv[0], "-v", volume, *argv[1:]], build_log, what="podman build")
        # the builder stage stays behind as an untagged image: only the result is kept
        podman.run(["image", "prune", "--force"], build_log, what="pruning the builder stage")
        log.info("image built in %.0f s", time.monotonic() - started)
    return name


def archive(name: str) -> Path:
    """``name`` as a docker archive in the cache, saved on first use; older archives of
    ``localhost/ws2kafka:dev-*`` images are removed (one tree, one archive)."""
    folder = paths.cache_dir() / "images"
    target = folder / f"{name.replace('/', '_').replace(':', '_')}.tar"
    with podman.exclusive():
        if name.startswith(f"{REPOSITORY}:dev-"):
            for old in folder.glob(f"{REPOSITORY.replace('/', '_')}_dev-*.tar"):
                if old != target:
                    old.unlink()
        return save(name, target)


def save(name: str, archive: Path) -> Path:
    """The image as a docker-archive tarball (what ``ctr images import`` and kind load)."""
    if archive.exists():
        return archive
    archive.parent.mkdir(parents=True, exist_ok=True)
    if not podman.has_image(name):
        raise StackError(f"no image {name} in podman's storage; build it first")
    partial = archive.with_name(archive.name + ".partial")
    partial.unlink(missing_ok=True)
    podman.run(
        ["save", "--format", "docker-archive", "-o", str(partial), name],
        paths.cache_dir() / "logs" / "image-build.log",
        what=f"saving {name}",
    )
    partial.rename(archive)
    return archive

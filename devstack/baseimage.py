"""A Python 3.11 base image made from Debian packages, for machines without a container registry.

The Dockerfile's default base is ``python:3.11-slim`` from Docker Hub. Where no registry is
reachable (this project's CI), mmdebstrap builds the equivalent from the Debian archive:
bookworm's minimal variant with its python3 (3.11), pip/setuptools/wheel from PyPI installed
into ``/usr/local`` (as in the official image) and Debian's ``EXTERNALLY-MANAGED`` marker
removed, so the Dockerfile's ``pip`` lines work unchanged. The tarball is cached by the hash
of this recipe: a warm run imports it in seconds, or finds it already in podman's storage.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Final

from . import debian, paths, podman
from .processes import StackError, run_logged

log = logging.getLogger("ws2kafka.devstack")

SUITE: Final = "bookworm"
PACKAGES: Final = ("python3", "python-is-python3", "passwd", "ca-certificates", "netbase", "tzdata")
#: The same tools python:3.11-slim has; pinned, so the recipe's hash names its content.
PIP_VERSION: Final = "26.3"
PIP_TOOLS: Final = (f"pip=={PIP_VERSION}", "setuptools==84.2.1", "wheel==0.48.0")
_NO_DOCS: Final = (
    "/usr/share/doc/*",
    "/usr/share/man/*",
    "/usr/share/locale/*",
    "/usr/share/info/*",
)
#: Runs in the finished tree ($1) before it is packed: the wheels are in /root/wheels there.
_HOOK: Final = (
    'rm -f "$1"/usr/lib/python3.11/EXTERNALLY-MANAGED'
    f' && chroot "$1" python3 /root/wheels/pip-{PIP_VERSION}-py3-none-any.whl/pip install'
    " --no-index --no-deps"
    " --find-links /root/wheels --no-cache-dir --root-user-action=ignore --quiet "
    + " ".join(PIP_TOOLS)
    + ' && rm -rf "$1"/root/wheels'
)


def _mmdebstrap_args(wheels: Path) -> list[str]:
    excludes = [f"--dpkgopt=path-exclude={pattern}" for pattern in _NO_DOCS]
    return [
        "--variant=minbase",
        "--format=tar",
        f"--include={','.join(PACKAGES)}",
        *excludes,
        f'--customize-hook=mkdir -p "$1"/root/wheels && cp {wheels}/*.whl "$1"/root/wheels/',
        f"--customize-hook={_HOOK}",
    ]


def recipe_hash() -> str:
    """What the base is made of; a change to the recipe makes a new base."""
    recipe = "\n".join([SUITE, *_mmdebstrap_args(Path("WHEELS")), "CMD python3"])
    return hashlib.sha256(recipe.encode()).hexdigest()[:16]


def base_image() -> str:
    """The base image's name in podman's storage, made (about a minute) or imported first."""
    name = f"localhost/ws2kafka-base:{recipe_hash()}"
    with podman.exclusive():
        if podman.has_image(name):
            return name
        tarball = _tarball()
        import_log = paths.cache_dir() / "logs" / "base-image.log"
        podman.run(
            ["import", "--change", 'CMD ["python3"]', str(tarball), name],
            import_log,
            what="importing the Debian base image",
        )
    return name


def _tarball() -> Path:
    tarball = paths.cache_dir() / "images" / f"base-{recipe_hash()}.tar"
    if tarball.exists():
        return tarball
    debian.ensure(debian.IMAGE_PACKAGES)
    tarball.parent.mkdir(parents=True, exist_ok=True)
    build_log = paths.cache_dir() / "logs" / "base-image.log"
    log.info("making the Debian %s base image with mmdebstrap, log: %s", SUITE, build_log)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ws2kafka-base-") as scratch:
        wheels = Path(scratch) / "wheels"
        run_logged(
            [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:",
             "--no-deps", "--dest", str(wheels), *PIP_TOOLS],
            build_log,
            what="downloading pip, setuptools and wheel for the base image",
            timeout=300,
        )  # fmt: skip
        mmdebstrap = shutil.which("mmdebstrap")
        if mmdebstrap is None:
            raise StackError("mmdebstrap is not on PATH although its package is installed")
        partial = tarball.with_name(tarball.name + ".partial")
        run_logged(
            [mmdebstrap, *_mmdebstrap_args(wheels), SUITE, str(partial)],
            build_log,
            what="mmdebstrap of the base image",
            timeout=900,
        )
        partial.rename(tarball)
    log.info("base image made in %.0f s", time.monotonic() - started)
    return tarball

"""The previous release, taken from git history: its tree, its CRD, its image and its chart.

The upgrade test installs what a user installed before (`CHANGELOG.md` names every release
and its commit) and upgrades it to this tree, so the commit must be in the clone's history;
a shallow clone fails here with a message that says so, not later with a confusing diff.
"""

from __future__ import annotations

import io
import logging
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from . import image, paths, podman
from .processes import StackError

log = logging.getLogger("ws2kafka.devstack")

#: The repository this package lives in.
REPO: Final = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Release:
    """A tagged release: its version (the tag without ``v``) and the commit it was made from."""

    version: str
    commit: str

    @property
    def image(self) -> str:
        """The name its image gets in podman's storage and on the node."""
        return f"{image.REPOSITORY}:release-{self.version}"


#: The release before this tree (`CHANGELOG.md`, tag ``v0.1.0``).
PREVIOUS: Final = Release("0.1.0", "d8f6eec6f24c1dfc1262034ed15ca3fa6c8c5602")


def git(*args: str, binary: bool = False) -> bytes:
    """``git`` in the repository; a missing commit names the likely cause."""
    result = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, check=False)
    if result.returncode != 0:
        raise StackError(
            f"git {' '.join(args)} failed: {result.stderr.decode(errors='replace').strip()}"
            " (the upgrade test needs the previous release's commit: clone with full history)"
        )
    return result.stdout if binary else result.stdout.strip()


def file_at(release: Release, path: str) -> str:
    """One file of the release's tree, e.g. its CRD."""
    return git("show", f"{release.commit}:{path}").decode()


def tree(release: Release) -> Path:
    """The release's files, extracted once into the cache (symlinks kept: the chart's crds/)."""
    target = paths.cache_dir() / "releases" / release.version
    if (target / "pyproject.toml").exists():
        return target
    archive = git("archive", "--format=tar", release.commit, binary=True)
    partial = target.with_name(target.name + ".partial")
    subprocess.run(["rm", "-rf", str(partial)], check=True)
    partial.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(partial, filter="tar")
    partial.rename(target)
    return target


def build_image(release: Release) -> str:
    """The release's image, built from its tree on first use and then reused."""
    if not podman.has_image(release.image):
        log.info("building the image of release %s (%s)", release.version, release.commit[:12])
        image.build(tree(release), name=release.image)
    return release.image


def image_archive(release: Release) -> Path:
    """The release's image as a docker archive (what the node imports), saved once."""
    target = paths.cache_dir() / "images" / f"release-{release.version}.tar"
    return image.save(build_image(release), target)

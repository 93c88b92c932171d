"""The lab's images: offline Debian base images, then the host image from a Dockerfile.

No registry is reachable from the machines the lab runs on, so ``FROM debian:...`` can only
work if the base image already exists locally. When it is missing it is made the offline
way: ``debootstrap --variant=minbase`` into a directory (from the machine's configured
Debian mirror), then ``docker import``. Everything above the base is an ordinary
Dockerfile (``beamfleet/assets/lab/Dockerfile``), built once and reused: its tag carries a
hash of the build context, so editing the Dockerfile makes the next ``lab up`` rebuild it.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from importlib import resources
from pathlib import Path

from beamfleet.controller.docker_cli import context_hash
from beamfleet_lab.docker import docker, image_exists
from beamfleet_lab.errors import LabError

HOST_IMAGE_REPO = "beamfleet-lab-host"
# Debian suite -> the local tag the Dockerfiles build FROM.
BASE_IMAGES = {"bookworm": "debian:bookworm-slim", "trixie": "debian:trixie-slim"}
LABEL = "io.beamfleet.lab.image"


class BaseImageError(LabError):
    """A Debian base image is missing and could not be built with debootstrap."""


def lab_assets_dir() -> Path:
    """The directory holding the host image's Dockerfile and its files."""
    return Path(str(resources.files("beamfleet_lab") / "assets"))


def ensure_base_image(suite: str = "bookworm") -> str:
    """Return the local tag of Debian ``suite``, building it with debootstrap when missing."""
    tag = BASE_IMAGES[suite]
    if image_exists(tag):
        return tag
    debootstrap = shutil.which("debootstrap")
    if debootstrap is None:
        raise BaseImageError(
            f"image {tag} is missing and debootstrap is not installed: "
            "apt-get install debootstrap (bash scripts/setup.sh does), then retry"
        )
    with tempfile.TemporaryDirectory(prefix=f"beamfleet-{suite}-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        proc = subprocess.run(
            [debootstrap, "--variant=minbase", suite, str(rootfs)],
            capture_output=True,
            timeout=900,
            check=False,
        )
        if proc.returncode != 0:
            tail = proc.stderr.decode(errors="replace").strip().splitlines()[-5:]
            raise BaseImageError(
                f"debootstrap {suite} failed (is the Debian mirror in /etc/apt/sources.list "
                f"reachable?): {' / '.join(tail)}"
            )
        archive = Path(tmp) / "rootfs.tar"
        # GNU tar keeps ownership, device nodes and hard links exactly as debootstrap made them.
        subprocess.run(
            ["tar", "-C", str(rootfs), "-cf", str(archive), "."], check=True, timeout=600
        )
        docker("import", "--change", 'CMD ["bash"]', str(archive), tag, timeout=600)
    return tag


def host_image_tag(suite: str = "bookworm") -> str:
    """``beamfleet-lab-host:<hash>`` (``<suite>-<hash>`` for another suite than bookworm):
    the hash covers every file of the build context."""
    root = lab_assets_dir()
    files = {p.relative_to(root).as_posix(): p for p in root.rglob("*") if p.is_file()}
    prefix = "" if suite == "bookworm" else f"{suite}-"
    return f"{HOST_IMAGE_REPO}:{prefix}{context_hash(files)}"


def ensure_base_images() -> None:
    """Make every Debian base image the deploys' Dockerfiles build FROM, when missing.

    The lab's machines reach no image registry, so the lab provides these offline before
    any deploy runs; a real controller simply pulls them when it builds.
    """
    for suite in BASE_IMAGES:
        ensure_base_image(suite)


def ensure_host_image(suite: str = "bookworm") -> str:
    """Return the tag of the lab host image of Debian ``suite`` (bookworm: Debian 12,
    trixie: 13), building it (and the base images) when missing."""
    if suite not in BASE_IMAGES:
        raise LabError(f"unknown Debian suite {suite!r}: use one of {', '.join(BASE_IMAGES)}")
    ensure_base_images()
    tag = host_image_tag(suite)
    if image_exists(tag):
        return tag
    docker(
        "build", "-q", "--label", f"{LABEL}=host", "--build-arg", f"SUITE={suite}",
        "-t", tag, str(lab_assets_dir()), timeout=900,
    )  # fmt: skip
    _remove_outdated_host_images(keep=tag)
    return tag


def _suite_of(ref: str) -> str:
    tag = ref.rsplit(":", 1)[-1]
    return next((s for s in BASE_IMAGES if tag.startswith(f"{s}-")), "bookworm")


def _remove_outdated_host_images(keep: str) -> None:
    """Drop host images of earlier Dockerfile versions of the same suite (those still in
    use stay)."""
    out = docker("images", "--format", "{{.Repository}}:{{.Tag}}", HOST_IMAGE_REPO).stdout
    for ref in out.decode().split():
        if ref != keep and _suite_of(ref) == _suite_of(keep):
            docker("rmi", ref, check=False)

"""Release tarballs for host mode against the real dockerd and this machine.

A release is exported from an image built here (a fake release on ``scratch``, and the
standard release images of tests/lab/images, built as the release-image lab builds them),
then inspected; what inspection says is compared with what is read from the image itself,
and the image's own system, probed as a host would be, is found able to run it.
:data:`PROBE` runs on this machine and is compared with what Python reads of it.
"""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

import pytest

from beamfleet.controller.host_release import (
    PROBE,
    HostRuntime,
    compatibility_problems,
    export_from_image,
    inspect_tarball,
)
from tests.lab.test_release_images import build_image
from tests.unit.test_host_release import elixir_files

# kind (tests/lab/images): the release root in its image
RELEASE_ROOTS = {"mix": "/app", "mix-noerts": "/srv/imgmix", "rebar3": "/opt/imgrebar"}


def docker(*args: str) -> str:
    return subprocess.run(
        ["docker", *args], check=True, capture_output=True, text=True, timeout=900
    ).stdout.strip()


def containers_of(image_id: str) -> str:
    return docker("ps", "--all", "--quiet", "--filter", f"ancestor={image_id}")


def test_a_fake_release_exported_from_an_image(tmp_path: Path) -> None:
    context = tmp_path / "context"
    for relative, content in elixir_files().items():
        path = context / "app" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
    (context / "Dockerfile").write_text("FROM scratch\nCOPY app /srv/app\n")
    tag = f"beamfleet-test-host-release:{os.getpid()}"
    image_id = docker("build", "-q", "-t", tag, str(context))
    cache = tmp_path / "cache"
    try:
        path = export_from_image(image_id, "/srv/app", cache)
        assert containers_of(image_id) == ""  # the container made to copy from is gone
    finally:
        docker("image", "rm", "--force", tag)
    release = inspect_tarball(path)
    assert (release.name, release.version, release.erts_version) == ("app", "0.1.0", "15.2.7")
    assert (release.kind, release.bundled_erts, release.prefix) == ("elixir", True, "")
    assert (release.glibc_required, release.erts_arch) == ((2, 36), "amd64")
    # Cached per image ID: the image is gone, the archive is still given.
    assert export_from_image(image_id, "/srv/app", cache) == path


@pytest.mark.parametrize("kind", sorted(RELEASE_ROOTS))
def test_a_standard_release_image_exported(tmp_path: Path, kind: str) -> None:
    tag = build_image(kind)
    image_id = docker("image", "inspect", "--format", "{{.Id}}", tag)
    root = RELEASE_ROOTS[kind]
    listing = docker("run", "--rm", "--network", "none", "--entrypoint", "ls", tag, root)
    start_erl = docker(
        "run", "--rm", "--network", "none", "--entrypoint", "cat", tag,
        f"{root}/releases/start_erl.data",
    ).split()  # fmt: skip
    release = inspect_tarball(export_from_image(image_id, root, tmp_path))
    assert containers_of(image_id) == ""
    assert [release.erts_version, release.version] == start_erl
    assert release.kind == ("rebar3" if kind == "rebar3" else "elixir")
    assert release.bundled_erts == (f"erts-{start_erl[0]}" in listing.split())
    assert release.otp_major == int(start_erl[0].split(".")[0]) + 12
    assert release.name == ("imgrebar" if kind == "rebar3" else "imgmix")
    # The image's own system runs the release today: as a host, it has no problem with it.
    probed = docker("run", "--rm", "--network", "none", "--entrypoint", "sh", tag, "-c", PROBE)
    assert compatibility_problems(release, HostRuntime.parse(probed), "image") == []
    if release.bundled_erts:
        # Built on Debian 13 (glibc 2.41): a glibc 2.3x symbol set, this machine's type.
        assert release.glibc_required is not None and release.glibc_required >= (2, 34)
        machine = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine())
        assert release.erts_arch == machine


def test_the_probe_on_this_machine() -> None:
    output = subprocess.run(
        ["sh", "-c", PROBE], check=True, capture_output=True, text=True, timeout=60
    ).stdout
    runtime = HostRuntime.parse(output)
    libc = os.confstr("CS_GNU_LIBC_VERSION") or ""
    assert runtime.glibc == tuple(int(p) for p in libc.split()[-1].split(".")[:2])
    debian = Path("/etc/debian_version")
    assert runtime.debian_version == (debian.read_text().strip() if debian.exists() else "")

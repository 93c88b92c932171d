"""How host mode runs the node on a host: a release under systemd, or its image on the
host's network (``host_runner``).

Both put what the node runs under ``/opt/beamfleet/apps/<app>/releases/<install name>``
(the unpacked release; for an image, an empty marker named after the image), which
``current`` points at, and give the node's unit and environment. Everything else (the
port mapper, the cookie, the agent, the roll) is the same for both.

Example::

    runner = ReleaseRunner(release, archive)       # or ImageRunner(image)
    target = runner.install(me.facts, paths)       # operations; the directory `current` gets
    runner.unit(paths, node), runner.env(paths, node)
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from pyinfra.operations import server

from beamfleet.controller import host_files
from beamfleet.controller.deploys import images
from beamfleet.controller.deploys.docker_engine import docker_engine
from beamfleet.controller.facts.hosts import HostState
from beamfleet.controller.host_files import HostPaths, NodeUnit
from beamfleet.controller.host_release import HostRelease, cookie_edits, needs_erlang_base
from beamfleet.controller.operations import hosts as host_ops

DEBIAN_EPMD = "/usr/bin/epmd"
# After the unpack, as root: no setuid/setgid file and nothing the node's user (or anyone
# but root) can change. The release was checked for both (host_release), this makes sure.
RELEASE_MODES = 'chmod -R u-s,g-s,go-w "$target"'


def release_unpack(release: HostRelease) -> str:
    """The shell that unpacks the release's tarball (``$archive``) into ``$target``, as
    root: files owned by root, modes masked by the umask, the compression the tarball was
    found to have (:attr:`HostRelease.tar_options`).

    Example::

        release_unpack(release)
        # 'tar -x -z -f "$archive" -C "$target" --no-same-owner --no-same-permissions'
    """
    words = ["tar", "-x", release.tar_options, '-f "$archive" -C "$target"']
    if release.prefix:
        words.append("--strip-components=1")
    words += ["--no-same-owner", "--no-same-permissions"]
    return " ".join(w for w in words if w)


def epmd_copy(release: HostRelease, target: str) -> str:
    """The shell that copies the release's port mapper to a stable path, as root: only a
    regular file (``install`` would follow a link to any file root can read)."""
    source = shlex.quote(f"{target}/erts-{release.erts_version}/bin/epmd")
    return (
        f"src={source}; "
        'if [ -L "$src" ] || [ ! -f "$src" ]; then '
        'echo "$src: not a regular file, no port mapper copied" >&2; exit 1; fi; '
        f'install -m 755 "$src" {shlex.quote(f"{host_files.BIN}/epmd")}'
    )


class NodeRunner(Protocol):
    """What the node runs, and how."""

    @property
    def install_name(self) -> str:
        """The directory under ``releases/`` that ``current`` points at."""
        ...

    @property
    def label(self) -> str:
        """How operations name it."""
        ...

    @property
    def needs_erlang_base(self) -> bool:
        """Whether the host needs Debian's Erlang (the node's runtime, or its port mapper)."""
        ...

    @property
    def epmd(self) -> str:
        """The port mapper binary the host's unit runs (a path a roll never replaces)."""
        ...

    def install(self, facts: HostState, paths: HostPaths) -> str:
        """Operations that put it on the host; returns the directory ``current`` gets."""
        ...

    def unit(self, paths: HostPaths, node: NodeUnit) -> str: ...

    def env(self, paths: HostPaths, node: NodeUnit) -> str: ...

    def node_unit(self, node: NodeUnit) -> NodeUnit:
        """``node`` completed with what this runner knows (the release's name and kind)."""
        ...


@dataclass(frozen=True)
class ReleaseRunner:
    """A release tarball unpacked on the host, run by systemd as the node's user."""

    release: HostRelease
    archive: Path

    @property
    def install_name(self) -> str:
        return self.release.install_name

    @property
    def label(self) -> str:
        return f"release {self.release.name} {self.release.version} ({self.install_name})"

    @property
    def needs_erlang_base(self) -> bool:
        return needs_erlang_base(self.release)

    @property
    def epmd(self) -> str:
        return DEBIAN_EPMD if self.needs_erlang_base else f"{host_files.BIN}/epmd"

    def install(self, facts: HostState, paths: HostPaths) -> str:
        release = self.release
        target = f"{paths.releases}/{release.install_name}"
        host_ops.archive_unpacked(
            name=f"Release {release.name} {release.version} ({release.install_name})",
            archive=str(self.archive),
            directory=target,
            present=release.install_name in facts.releases,
            unpack=release_unpack(release),
            # the edits name the files where they are unpacked, before the move into place
            after=(*cookie_edits(release, f"{target}.tmp"), RELEASE_MODES),
            needed_bytes=self.archive.stat().st_size + release.unpacked_bytes,
        )
        if not self.needs_erlang_base and facts.epmd is None:
            server.shell(
                name="A stable port mapper binary (copied from the release's ERTS)",
                commands=[epmd_copy(release, target)],
            )
        return target

    def node_unit(self, node: NodeUnit) -> NodeUnit:
        return NodeUnit(
            **{**node.__dict__, "name": self.release.name, "kind": self.release.kind,
               "version": self.release.version}
        )  # fmt: skip

    def unit(self, paths: HostPaths, node: NodeUnit) -> str:
        return host_files.node_unit(paths, node)

    def env(self, paths: HostPaths, node: NodeUnit) -> str:
        return host_files.node_env(paths, node)


@dataclass(frozen=True)
class ImageRunner:
    """The application image (derived so that it names its node, see cluster.md) run by
    Docker on the host's network (``docker run --network host``), as the node's user."""

    image: images.Image

    @property
    def install_name(self) -> str:
        ident = (self.image.image_id or self.image.ref).removeprefix("sha256:")
        safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in ident)
        return f"image-{safe[:24]}"

    @property
    def label(self) -> str:
        return f"image {self.image.ref}"

    @property
    def needs_erlang_base(self) -> bool:
        return True  # the host's port mapper: Debian's, whatever the image's OS

    @property
    def epmd(self) -> str:
        return DEBIAN_EPMD

    def install(self, facts: HostState, paths: HostPaths) -> str:
        docker_engine()
        images.distribute(wanted=[self.image])
        target = f"{paths.releases}/{self.install_name}"
        if self.install_name not in facts.releases:
            server.shell(name=f"Marker of {self.label}", commands=[f"mkdir -p {target}"])
        return target

    def node_unit(self, node: NodeUnit) -> NodeUnit:
        return NodeUnit(**{**node.__dict__, "name": self.image.ref, "kind": "image"})

    def unit(self, paths: HostPaths, node: NodeUnit) -> str:
        return host_files.image_node_unit(paths, node, self.image.ref)

    def env(self, paths: HostPaths, node: NodeUnit) -> str:
        return host_files.image_node_env(paths, node)

"""Image distribution: get an image onto a host, from an archive or from a registry.

Clusters without a registry get images the way ``docker save | docker load`` does, over
the SSH connection pyinfra already has: :func:`loaded` uploads an archive made on the
controller (see :mod:`beamfleet.controller.deploys.images`) and loads it, leaving out the
layers the host already has (:mod:`beamfleet.controller.image_archive`). Clusters with a registry
use :func:`pulled`. Both do nothing when the host already has the image.
"""

from __future__ import annotations

import shlex
from collections.abc import Generator
from pathlib import Path

from pyinfra.api.command import FileUploadCommand, StringCommand
from pyinfra.api.exceptions import OperationValueError
from pyinfra.api.operation import operation
from pyinfra.context import host

from beamfleet.controller.facts.services import ImageId, LayerChains
from beamfleet.controller.image_archive import pruned_archive
from beamfleet.controller.remote_scripts import script_command

REMOTE_DIR = "/var/tmp"


def load_image_command(remote: str) -> StringCommand:
    """Load the archive ``remote`` on the host, then remove it (``assets/remote/load_image.sh``)."""
    return script_command("load_image.sh", remote)


@operation()
def loaded(
    image: str, image_id: str, archive: str
) -> Generator[StringCommand | FileUploadCommand, None, None]:
    """
    Load ``image`` on the host from a local ``docker save`` archive, unless the host
    already has that image ID under that reference.

    + image: the reference (``repo:tag``) the services use
    + image_id: the ``sha256:...`` ID the archive holds (``docker save``/``load`` keep it)
    + archive: path of the archive on the controller (``.tar`` or gzip-compressed)

    The archive goes to ``/var/tmp`` on the host and is removed once loaded. Only the
    layers the host lacks travel: the layer files of the others are left out of it.

    **Example:**

    .. code:: python

        images.loaded(image="demo:3f2a", image_id="sha256:...", archive="/tmp/demo.tar.gz")
    """
    if not image_id.startswith("sha256:"):
        raise OperationValueError(f"image_id must be a sha256:... image ID, not {image_id!r}")
    if not Path(archive).is_file():
        raise OperationValueError(f"image archive {archive} does not exist on this machine")
    if host.get_fact(ImageId, image=image) == image_id:
        host.noop(f"{image} is already on the host")
        return
    shipped, _ = pruned_archive(
        Path(archive), host.get_fact(LayerChains), Path(archive).parent / "pruned"
    )
    remote = f"{REMOTE_DIR}/beamfleet-image-{image_id.removeprefix('sha256:')[:16]}.tar"
    yield FileUploadCommand(str(shipped), remote)
    yield load_image_command(remote)


@operation()
def pulled(image: str) -> Generator[StringCommand, None, None]:
    """
    Pull ``image`` from its registry unless the host already has it.

    + image: a reference that names a registry, best pinned (``registry/app:1.4`` or
      ``...@sha256:...``): a tag already present is not pulled again

    **Example:**

    .. code:: python

        images.pulled(image="registry.example.com/app:1.4")
    """
    if host.get_fact(ImageId, image=image) is not None:
        host.noop(f"{image} is already on the host")
        return
    yield pull_command(image)


def pull_command(image: str) -> StringCommand:
    """``docker pull -q IMAGE``, the reference one quoted word whatever it holds (the
    inventory checks references too, before any host is touched)."""
    return StringCommand(shlex.join(["docker", "pull", "-q", image]), ">/dev/null")

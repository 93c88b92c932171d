"""The images a cluster runs: built once on the controller, then put on every host.

Two images by default, both built from Dockerfiles with the controller's Docker engine:

* the application, from a directory with a Dockerfile (default: ``examples/demo``); the
  naming shim ``beamfleet-nodename`` is added to its build context, so a Dockerfile can
  ``COPY beamfleet-nodename /usr/local/bin/``;
* the agent, from ``beamfleet/assets/agent`` plus the runtime package (``beamfleet.runtime``).

An application image that does not name itself (a standard release image: ``mix release``,
rebar3, plain ``erl``) is adapted by :func:`app_image`: inspected
(:mod:`beamfleet.controller.release_image`), then a thin image is derived from it here, on
the controller (one small layer: the naming shim, an entrypoint, the start script adapted
so that the cookie is a file erl reads itself). It is tagged ``<repo>-beamfleet:<hash>`` of
its context, whose Dockerfile starts ``FROM <input image ID>``: rebuilt only when the input
image (or beamfleet's files) changes.

Each is tagged ``<repo>:<hash of its build context>``, so an unchanged context is never
rebuilt, and saved once to a gzip archive in the cache directory
(``$XDG_CACHE_HOME/beamfleet/images``). Then, on each host, :func:`distribute` loads the
archive (no registry) or pulls (a registry is configured), doing nothing on a host that
already has the image.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from gevent.lock import Semaphore
from pyinfra.api.deploy import deploy
from pyinfra.api.exceptions import PyinfraError

from beamfleet.controller import release_image as release_image_module
from beamfleet.controller.docker_cli import (
    DockerCliError,
    DockerFailedError,
    DockerNotInstalledError,
    context_hash,
    run_docker,
)
from beamfleet.controller.operations import images
from beamfleet.controller.release_image import (
    ENTRYPOINT,
    PROBE,
    ImageConfig,
    ReleaseImageError,
    ReleaseLayout,
    inspect,
)
from beamfleet.controller.runtime_wheel import runtime_package_files

SHIM_NAME = "beamfleet-nodename"
APP_REPO_DEFAULT = "beamfleet-demo"
AGENT_REPO = "beamfleet-agent"


class ImageBuildError(PyinfraError):
    """An image could not be built or saved on the controller; the message says why."""


@dataclass(frozen=True)
class Image:
    """An image the cluster runs, and how hosts get it."""

    ref: str
    # Set for images built (or found) on the controller: hosts load them from `archive`.
    image_id: str | None = None
    archive: Path | None = None
    # Application images: how the image starts (None: pulled from a registry, used as is).
    layout: ReleaseLayout | None = None

    @property
    def epmd(self) -> str:
        """The EPMD binary a healthcheck runs in this image (found by inspection)."""
        return self.layout.epmd if self.layout is not None else "epmd"

    @property
    def from_registry(self) -> bool:
        return self.archive is None


def package_dir() -> Path:
    return Path(str(resources.files("beamfleet")))


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "beamfleet" / "images"


def _docker(*args: str, timeout: float = 900) -> str:
    try:
        return run_docker(*args, timeout=timeout).stdout.decode(errors="replace")
    except DockerNotInstalledError as exc:
        raise ImageBuildError(
            "no `docker` on this machine to build images with: install Docker here, or set "
            "`app_image`/`agent_image` to images in a registry (see docs/cluster.md)"
        ) from exc
    except DockerFailedError as exc:
        raise ImageBuildError(f"docker {args[0]} failed: {exc.tail()}") from exc
    except DockerCliError as exc:
        raise ImageBuildError(str(exc)) from exc


def _context_files(root: Path) -> Iterable[Path]:
    for path in sorted(root.rglob("*")):
        parts = set(path.relative_to(root).parts)
        if path.is_file() and not parts & {"__pycache__", "_build", "deps", ".git"}:
            yield path


def app_context(directory: Path) -> dict[str, Path]:
    """The application's build context: ``directory`` plus the naming shim."""
    if not (directory / "Dockerfile").is_file():
        raise ImageBuildError(
            f"{directory} has no Dockerfile: set `app_build` to your application's "
            "directory, or `app_image` to a ready image (docs/cluster.md)"
        )
    shim = package_dir() / "assets" / SHIM_NAME
    if not shim.is_file():
        raise ImageBuildError(f"the naming shim {shim} is missing from this beamfleet install")
    files = {p.relative_to(directory).as_posix(): p for p in _context_files(directory)}
    files[SHIM_NAME] = shim
    return files


_agent_files: dict[str, Path] = {}


def agent_context() -> dict[str, Path]:
    """The agent's build context: its Dockerfile and launcher, plus the runtime package.

    The runtime package is copied whole (:func:`runtime_package_files`, the files of the
    hosts' runtime wheel too). Read once per process, so every host of a run gets the
    same image.
    """
    with _lock:
        if not _agent_files:
            pkg = package_dir()
            _agent_files.update({p.name: p for p in _context_files(pkg / "assets" / "agent")})
            _agent_files.update(runtime_package_files())
        return dict(_agent_files)


_lock = Semaphore()
_built: dict[str, Image] = {}


def build(repo: str, files: Mapping[str, Path], archive: bool = True) -> Image:
    """Build (unless present) and save (unless saved) ``repo:<context hash>``, once.

    Once per process and context: every host of a run gets the same image, even if a
    file of the context is edited while the run plans. ``archive=False``: not saved (an
    input image that :func:`app_image` derives the image the hosts load from).
    """
    key = repo + "\0" + "\0".join(sorted(str(p) for p in files.values()))
    with _lock:
        if key in _built:
            return _built[key]
        ref = f"{repo}:{context_hash(files)}"
        if not _docker("images", "-q", ref).strip():
            with tempfile.TemporaryDirectory(prefix="beamfleet-build-") as tmp:
                for name, src in files.items():
                    dest = Path(tmp) / name
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(src, dest)
                _docker("build", "-q", "--label", "io.beamfleet.image=" + repo, "-t", ref, tmp)
        image_id = _docker("image", "inspect", "--format", "{{.Id}}", ref).strip()
        image = Image(ref=ref, image_id=image_id, archive=save(ref, image_id) if archive else None)
        if archive:
            _built[key] = image
        return image


def save(ref: str, image_id: str) -> Path:
    """``docker save ref | gzip`` into the cache, named by image ID (reused when there)."""
    directory = cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", ref)
    archive = directory / f"{safe}-{image_id.removeprefix('sha256:')[:16]}.tar.gz"
    if archive.is_file():
        return archive
    partial = archive.with_name(f"{archive.name}.{os.getpid()}.partial")
    with partial.open("wb") as out:
        saver = subprocess.Popen(["docker", "save", ref], stdout=subprocess.PIPE)
        gzip = subprocess.run(["gzip", "-1"], stdin=saver.stdout, stdout=out, check=False)
        if saver.stdout is not None:
            saver.stdout.close()
        if saver.wait(timeout=600) != 0 or gzip.returncode != 0:
            partial.unlink(missing_ok=True)
            raise ImageBuildError(f"docker save {ref} failed (is there room in {directory}?)")
    partial.rename(archive)
    _prune(directory, safe.rsplit("_", 1)[0] if ":" in ref else safe)
    return archive


KEEP_ARCHIVES = 3  # per image repository: the newest ones (a run still using one is safe)


def _prune(directory: Path, repo: str) -> None:
    """Drop all but the newest archives of ``repo``: each build leaves one behind."""
    olds = sorted(directory.glob(f"{repo}_*.tar.gz"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in olds[KEEP_ARCHIVES:]:
        old.unlink(missing_ok=True)


def local_image(ref: str) -> Image:
    """An image that exists in the controller's engine (``app_image`` without a registry)."""
    with _lock:
        if ref in _built:
            return _built[ref]
        try:
            image_id = _docker("image", "inspect", "--format", "{{.Id}}", ref).strip()
        except ImageBuildError as exc:
            raise ImageBuildError(
                f"image {ref} is not in this machine's Docker engine: build or load it here, "
                "or set `image_registry: true` if the hosts pull it from a registry"
            ) from exc
        image = Image(ref=ref, image_id=image_id, archive=save(ref, image_id))
        _built[ref] = image
        return image


_layouts: dict[str, ReleaseLayout] = {}


def inspect_release(ref: str, image_id: str) -> ReleaseLayout:
    """How the image starts: its configuration, a probe run in it, its start script.

    The probe and the script are read with throwaway containers (no network), as the
    image's own user; once per image ID and process.
    """
    if image_id in _layouts:
        return _layouts[image_id]
    saved = _saved_layout(image_id)
    if saved is not None:
        _layouts[image_id] = saved
        return saved
    config = json.loads(_docker("image", "inspect", "--format", "{{json .Config}}", image_id))
    image_config = ImageConfig.from_inspect(config or {})

    def in_image(*argv: str) -> str:
        return _docker("run", "--rm", "--network", "none", "--entrypoint", "sh", image_id, *argv)

    try:
        probe = in_image("-c", PROBE)
    except ImageBuildError as exc:
        raise ReleaseImageError(
            f"cannot inspect image {ref} (it needs a POSIX `sh`): {exc}"
        ) from exc

    def read_file(path: str) -> str:
        return in_image("-c", 'cat -- "$1"', "sh", path)

    layout = inspect(image_config, probe, read_file)
    _layouts[image_id] = layout
    _save_layout(image_id, layout)
    return layout


def _layout_file(image_id: str) -> Path:
    # An image ID names its content, so what inspection found holds until the inspection
    # itself changes: the file is keyed by both (a re-run then starts no container).
    rules = hashlib.sha256(Path(release_image_module.__file__).read_bytes()).hexdigest()[:12]
    return cache_dir() / "layouts" / f"{image_id.removeprefix('sha256:')[:32]}-{rules}.json"


def _saved_layout(image_id: str) -> ReleaseLayout | None:
    try:
        data = json.loads(_layout_file(image_id).read_text())
        return ReleaseLayout(**{**data, "argv": tuple(data["argv"]), "edits": tuple(data["edits"])})
    except (OSError, ValueError, TypeError, KeyError):
        return None  # absent or from another version: inspect again


def _save_layout(image_id: str, layout: ReleaseLayout) -> None:
    path = _layout_file(image_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    partial.write_text(json.dumps(dataclasses.asdict(layout)))
    partial.rename(path)


def derived_repo(ref: str) -> str:
    """``registry/app:1.0`` -> ``registry/app-beamfleet``: the derived image's repository."""
    name = ref.split("@", 1)[0]
    if ":" in name.rsplit("/", 1)[-1]:
        name = name.rsplit(":", 1)[0]
    return f"{name}-beamfleet"


def derived_context(layout: ReleaseLayout, image_id: str) -> dict[str, Path]:
    """The derived image's build context: its Dockerfile (``FROM image_id``), shim, entrypoint.

    The Dockerfile is written into the cache by content, so the context's hash (the tag)
    changes exactly when the input image ID or beamfleet's files do.
    """
    assets = package_dir() / "assets"
    files = {SHIM_NAME: assets / SHIM_NAME, ENTRYPOINT: assets / "release" / ENTRYPOINT}
    for path in files.values():
        if not path.is_file():
            raise ImageBuildError(f"{path} is missing from this beamfleet install")
    text = layout.dockerfile(image_id)
    directory = cache_dir() / "derived"
    directory.mkdir(parents=True, exist_ok=True)
    dockerfile = directory / f"{hashlib.sha256(text.encode()).hexdigest()[:16]}.Dockerfile"
    if not dockerfile.is_file():
        partial = dockerfile.with_name(f"{dockerfile.name}.{os.getpid()}.partial")
        partial.write_text(text)
        partial.rename(dockerfile)
    return {"Dockerfile": dockerfile, **files}


def app_image(ref: str, built: Image | None = None) -> Image:
    """The application image the hosts load: ``ref`` itself when it names itself, else the
    image derived from it (see the module's docstring). ``ref`` is in the controller's
    engine (``built``: just built from ``app_build``, not saved yet)."""
    image_id = built.image_id if built and built.image_id else _local_id(ref)
    # Once per image and process: every host of a run plans with the same image.
    with _app_lock:
        if image_id not in _apps:
            layout = inspect_release(ref, image_id)
            if layout.derived:
                derived = build(derived_repo(ref), derived_context(layout, image_id))
                _apps[image_id] = Image(derived.ref, derived.image_id, derived.archive, layout)
            else:
                _apps[image_id] = Image(ref, image_id, save(ref, image_id), layout)
        return _apps[image_id]


_app_lock = Semaphore()
_apps: dict[str, Image] = {}


def _local_id(ref: str) -> str:
    try:
        return _docker("image", "inspect", "--format", "{{.Id}}", ref).strip()
    except ImageBuildError as exc:
        raise ImageBuildError(
            f"image {ref} is not in this machine's Docker engine: build or load it here, "
            "or set `image_registry: true` if the hosts pull it from a registry"
        ) from exc


@deploy("Images")
def distribute(wanted: Iterable[Image]) -> None:
    """Put each image on the current host: load its archive, or pull it."""
    for image in wanted:
        if image.archive is None or image.image_id is None:
            images.pulled(name=f"Pull {image.ref}", image=image.ref)
        else:
            images.loaded(
                name=f"Load {image.ref}",
                image=image.ref,
                image_id=image.image_id,
                archive=str(image.archive),
            )

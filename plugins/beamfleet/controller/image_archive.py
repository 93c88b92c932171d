"""Ship only the layers a host lacks: a ``docker save`` archive pruned to them.

``docker load`` skips a layer the engine already has (it looks the layer up by its chain
ID before it reads the layer's tar), so an archive may leave out the ``layer.tar`` of
every layer the host holds: the manifest, the image configuration and the new layers are
enough. A new version that adds one small layer on top of the running one then costs
about that layer, not the whole image.

A host's layers are known by their chain IDs (the OCI image spec's ``ChainID``: a layer's
identity with everything under it), computed from the diff IDs of the images it has
(:func:`chain_ids`). The archive's own layers come from its manifest and configuration.

Example::

    index = ArchiveIndex.read(Path("demo.tar.gz"))
    missing = index.missing(present_chains)          # the layer files the host needs
    shipped = pruned_archive(Path("demo.tar.gz"), present_chains, cache)
"""

from __future__ import annotations

import gzip
import hashlib
import json
import tarfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any


class ImageArchiveError(ValueError):
    """The archive is not a ``docker save`` archive of one image."""


def chain_ids(diff_ids: Sequence[str]) -> list[str]:
    """The chain ID of each layer of an image, bottom up.

    ``ChainID(L0) = DiffID(L0)``; ``ChainID(L0..n) = sha256(ChainID(L0..n-1) + " " +
    DiffID(Ln))``.

    Example: ``chain_ids(["sha256:aa", "sha256:bb"])[1]`` is
    ``"sha256:" + sha256(b"sha256:aa sha256:bb").hexdigest()``.
    """
    chains: list[str] = []
    for diff_id in diff_ids:
        if not chains:
            chains.append(diff_id)
        else:
            text = f"{chains[-1]} {diff_id}".encode()
            chains.append("sha256:" + hashlib.sha256(text).hexdigest())
    return chains


def present_chains(images_diff_ids: Iterable[Sequence[str]]) -> frozenset[str]:
    """Every layer chain ID a host holds, from the diff ID lists of its images."""
    return frozenset(c for diff_ids in images_diff_ids for c in chain_ids(diff_ids))


def _open(path: Path) -> tarfile.TarFile:
    # streamed: `docker save` archives are hundreds of MB
    return tarfile.open(path, mode="r|gz" if _is_gzip(path) else "r|")


def _is_gzip(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(2) == b"\x1f\x8b"


@dataclass(frozen=True)
class ArchiveIndex:
    """What a ``docker save`` archive of one image holds: its layers' files and chain IDs."""

    config: str  # the configuration's member name
    layer_files: tuple[str, ...]  # manifest order, bottom up
    chains: tuple[str, ...]

    @classmethod
    def read(cls, path: Path) -> ArchiveIndex:
        """The archive's index (read once per archive file and process: archives are
        immutable, named by their image ID)."""
        key = (str(path), path.stat().st_mtime_ns)
        if key not in _INDEXES:
            _INDEXES[key] = cls._read(path)
        return _INDEXES[key]

    @classmethod
    def _read(cls, path: Path) -> ArchiveIndex:
        manifest: Any = None
        configs: dict[str, bytes] = {}
        with _open(path) as tar:
            for member in tar:
                if member.name == "manifest.json" or (
                    member.name.endswith(".json") and "/" not in member.name
                ):
                    data = tar.extractfile(member)
                    if data is not None:
                        configs[member.name] = data.read()
        if "manifest.json" in configs:
            manifest = json.loads(configs["manifest.json"])
        if not isinstance(manifest, list) or len(manifest) != 1:
            raise ImageArchiveError(f"{path}: not a `docker save` archive of one image")
        entry = manifest[0]
        config_name = str(entry["Config"])
        if config_name not in configs:
            raise ImageArchiveError(
                f"{path}: the manifest's configuration {config_name} is missing"
            )
        diff_ids = json.loads(configs[config_name])["rootfs"]["diff_ids"]
        layers = tuple(str(x) for x in entry["Layers"])
        if len(layers) != len(diff_ids):
            raise ImageArchiveError(f"{path}: {len(layers)} layer files for {len(diff_ids)} layers")
        return cls(config_name, layers, tuple(chain_ids(diff_ids)))

    def missing(self, present: frozenset[str]) -> list[str]:
        """The layer files a host with the ``present`` chain IDs needs."""
        return [f for f, c in zip(self.layer_files, self.chains, strict=True) if c not in present]


_INDEXES: dict[tuple[str, int], ArchiveIndex] = {}


def pruned_archive(archive: Path, present: frozenset[str], cache: Path) -> tuple[Path, int]:
    """``archive`` without the layer tars of the ``present`` layers (gzip), and the count
    of layers it keeps. The archive itself when the host has none of its layers; made
    once per (archive, layers kept) in ``cache``."""
    index = ArchiveIndex.read(archive)
    missing = index.missing(present)
    if len(missing) == len(index.layer_files):
        return archive, len(missing)
    key = hashlib.sha256("\n".join([archive.name, *missing]).encode()).hexdigest()[:16]
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / f"{archive.name.split('.tar')[0]}-{key}.tar.gz"
    if target.is_file():
        return target, len(missing)
    keep = set(missing)
    dropped = set(index.layer_files) - keep
    partial = target.with_name(target.name + ".partial")
    with (
        _open(archive) as src,
        gzip.open(partial, "wb", compresslevel=1) as raw,
        tarfile.open(fileobj=raw, mode="w|") as dst,
    ):
        for member in src:
            if member.name in dropped:
                continue
            data: IO[bytes] | None = src.extractfile(member) if member.isfile() else None
            dst.addfile(member, data)
    partial.rename(target)
    _trim(cache)
    return target, len(missing)


KEEP_PRUNED = 16  # pruned archives kept (per controller): the newest ones


def _trim(cache: Path) -> None:
    made = sorted(cache.glob("*.tar.gz"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in made[KEEP_PRUNED:]:
        old.unlink(missing_ok=True)

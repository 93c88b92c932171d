"""Shipping only the layers a host lacks, against this machine's real Docker engine.

Two images from scratch: v1 (an 8 MiB layer) and v2 (v1 plus a 1 MiB layer). With v1's
layers present, v2's archive keeps only v2's own layer tar, is about that layer's size,
and `docker load` of it gives back v2 with its very image ID.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import subprocess
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from beamfleet.controller.facts.services import LayerChains
from beamfleet.controller.image_archive import (
    ArchiveIndex,
    chain_ids,
    present_chains,
    pruned_archive,
)


def docker(*args: str, stdin: bytes | None = None) -> str:
    return subprocess.run(
        ["docker", *args], input=stdin, capture_output=True, check=True, timeout=300
    ).stdout.decode()


def build(tmp: Path, tag: str, base: str, size: int) -> None:
    ctx = tmp / tag.replace(":", "-")
    ctx.mkdir()
    (ctx / "blob").write_bytes(os.urandom(size))  # incompressible: sizes mean something
    (ctx / "Dockerfile").write_text(f"FROM {base}\nCOPY blob /{tag.replace(':', '-')}\n")
    docker("build", "-q", "-t", tag, str(ctx))


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, Path]]:
    tmp = tmp_path_factory.mktemp("ship")
    repo = f"beamfleet-test-ship-{uuid.uuid4().hex[:8]}"
    v1, v2 = f"{repo}:v1", f"{repo}:v2"
    build(tmp, v1, "scratch", 8 << 20)
    build(tmp, v2, v1, 1 << 20)
    archive = tmp / "v2.tar.gz"
    saved = subprocess.run(["docker", "save", v2], capture_output=True, check=True).stdout
    archive.write_bytes(gzip.compress(saved, compresslevel=1))
    try:
        yield v1, v2, archive
    finally:
        subprocess.run(["docker", "rmi", "-f", v2, v1], capture_output=True, check=False)


def diff_ids(image: str) -> list[str]:
    return list(
        json.loads(docker("image", "inspect", "--format", "{{json .RootFS.Layers}}", image))
    )


def test_chain_ids_follow_the_image_spec() -> None:
    a, b = "sha256:" + "a" * 64, "sha256:" + "b" * 64
    assert chain_ids([a]) == [a]
    assert chain_ids([a, b])[1] == "sha256:" + hashlib.sha256(f"{a} {b}".encode()).hexdigest()


def test_a_host_with_v1_gets_only_v2s_own_layer(
    images: tuple[str, str, Path], tmp_path: Path
) -> None:
    v1, v2, archive = images
    v2_id = docker("image", "inspect", "--format", "{{.Id}}", v2).strip()
    index = ArchiveIndex.read(archive)
    assert list(index.chains) == chain_ids(diff_ids(v2))

    present = present_chains([diff_ids(v1)])
    shipped, kept = pruned_archive(archive, present, tmp_path)
    assert kept == 1
    with tarfile.open(shipped) as tar:
        layers = [m for m in tar.getmembers() if m.name.endswith("layer.tar")]
    assert [m.name for m in layers] == [index.layer_files[-1]]
    layer_bytes = layers[0].size
    ratio = shipped.stat().st_size / layer_bytes
    print(f"full {archive.stat().st_size} B, shipped {shipped.stat().st_size} B, "
          f"layer {layer_bytes} B ({ratio:.3f}x)")  # fmt: skip
    assert ratio <= 1.2
    assert shipped.stat().st_size < archive.stat().st_size / 4

    # the engine that has v1 loads v2 from it, under its very ID
    docker("rmi", v2)
    docker("load", "-q", "-i", str(shipped))
    assert docker("image", "inspect", "--format", "{{.Id}}", v2).strip() == v2_id


def test_a_host_without_the_layers_gets_the_whole_archive(
    images: tuple[str, str, Path], tmp_path: Path
) -> None:
    _, _, archive = images
    shipped, kept = pruned_archive(archive, frozenset(), tmp_path)
    assert (shipped, kept) == (archive, 2)


def test_the_hosts_layers_as_the_fact_reads_them(images: tuple[str, str, Path]) -> None:
    """LayerChains' command run on this machine's engine, and its parsing."""
    v1, _, _ = images
    fact = LayerChains()
    out = subprocess.run(
        ["sh", "-c", fact.command()], capture_output=True, text=True, check=True, timeout=120
    ).stdout.splitlines()
    present = fact.process(out)
    assert set(chain_ids(diff_ids(v1))) <= present
    # an engine on the containerd image store reports nothing: it gets whole archives
    assert fact.process(["containerd-store"]) == frozenset()

"""Bytes sent to a host for a new image version one small layer above the running one.

    .venv/bin/python benchmarks/image_shipping.py [--image beamfleet-demo:TAG] [--kib 256]

Takes an application image on this machine (default: the newest `beamfleet-demo`), makes
v2 = that image plus one layer of --kib random KiB, and prints the archive beamfleet sends
to a host that runs v1: the whole image (before) and only the layers the host lacks (now,
:mod:`beamfleet.controller.image_archive`), beside the new layer's own size. Target: at
most 1.2x the layer. Nothing is sent anywhere: the archives are made and measured here.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))

from beamfleet.controller.image_archive import present_chains, pruned_archive  # noqa: E402


def docker(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, check=True, text=True).stdout


def newest(repo: str) -> str:
    tags = docker("images", "--format", "{{.Repository}}:{{.Tag}}", repo).split()
    if not tags:
        sys.exit(f"no {repo} image here: run the demo or the tests first, or give --image")
    return tags[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--image", default=None)
    parser.add_argument("--kib", type=int, default=256)
    args = parser.parse_args()
    v1 = args.image or newest("beamfleet-demo")
    v2 = "beamfleet-bench-ship:v2"
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "blob").write_bytes(os.urandom(args.kib * 1024))
        (tmp / "Dockerfile").write_text(f"FROM {v1}\nCOPY blob /srv/new-release-file\n")
        docker("build", "-q", "-t", v2, str(tmp))
        try:
            saved = subprocess.run(["docker", "save", v2], capture_output=True, check=True).stdout
            full = tmp / "v2.tar.gz"
            full.write_bytes(gzip.compress(saved, compresslevel=1))
            layers = json.loads(
                docker("image", "inspect", "--format", "{{json .RootFS.Layers}}", v1)
            )
            start = time.perf_counter()
            shipped, kept = pruned_archive(full, present_chains([layers]), tmp / "pruned")
            seconds = time.perf_counter() - start
        finally:
            subprocess.run(["docker", "rmi", v2], capture_output=True, check=False)
        layer = args.kib * 1024
        print(f"image_shipping: v1 {v1}, v2 = v1 + one layer of {args.kib} KiB")
        print(f"{'archive sent to a host running v1':<44}{'bytes':>14}{'x layer':>10}")
        print(f"{'whole image (docker save | gzip)':<44}{full.stat().st_size:>14,}"
              f"{full.stat().st_size / layer:>10.1f}")  # fmt: skip
        print(f"{'only the missing layers (' + str(kept) + ' layer)':<44}"
              f"{shipped.stat().st_size:>14,}{shipped.stat().st_size / layer:>10.3f}")  # fmt: skip
        print(f"pruning took {seconds:.2f} s on the controller; target <= 1.2x the layer: "
              f"{'ok' if shipped.stat().st_size <= 1.2 * layer else 'MISSED'}")  # fmt: skip


if __name__ == "__main__":
    main()

"""Release tarballs for tests: variants of a real release, made by editing one file.

A variant differs from its source in ``releases/<vsn>/env.sh`` (which the start script
sources), so it is another tarball (another digest, another install on the hosts) of
the same release. Appending ``exit 3`` gives a release that cannot boot.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path


def release_variant(source: Path, target: Path, env_sh_append: str) -> Path:
    """Copy the release tarball ``source`` to ``target`` with ``env_sh_append`` appended
    to its ``releases/*/env.sh``; returns ``target``."""
    changed = 0
    with tarfile.open(source, "r:gz") as src, tarfile.open(target, "w:gz") as dst:
        for member in src.getmembers():
            data = src.extractfile(member) if member.isfile() else None
            if data is not None and member.name.endswith("/env.sh") and "releases/" in member.name:
                text = data.read() + b"\n" + env_sh_append.encode() + b"\n"
                member.size = len(text)
                dst.addfile(member, io.BytesIO(text))
                changed += 1
            else:
                dst.addfile(member, data)
    if changed != 1:
        raise ValueError(f"{source}: expected one releases/<vsn>/env.sh, found {changed}")
    return target

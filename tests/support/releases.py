"""Release tarballs for tests: variants of a real release, made by editing one file, and
small releases written member by member (:func:`write_release`).

A variant differs from its source in ``releases/<vsn>/env.sh`` (which the start script
sources), so it is another tarball (another digest, another install on the hosts) of
the same release. Appending ``exit 3`` gives a release that cannot boot.
"""

from __future__ import annotations

import dataclasses
import io
import tarfile
from dataclasses import dataclass
from pathlib import Path

from beamfleet.controller.release_image import ELIXIR_COOKIE_DEFAULT, ELIXIR_COOKIE_FLAG


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


# -- releases built member by member (for the refusals of host mode's inspection) ---------


@dataclass(frozen=True)
class Member:
    """One archive member: a file (``data``), a directory, or a link (``link``)."""

    name: str
    data: bytes = b""
    kind: bytes = tarfile.REGTYPE
    mode: int = 0o644
    link: str = ""


def elixir_release(version: str = "0.1.0", erts: str = "15.2.7", name: str = "app") -> list[Member]:
    """The members of a small ERTS-bundled Elixir release (its start script of the shape
    beamfleet adapts), at the top of the archive."""
    script = (
        "#!/bin/sh\nset -e\n"
        f"{ELIXIR_COOKIE_DEFAULT}\nexport RELEASE_COOKIE\n"
        f'exec "$RELEASE_ROOT/erts-{erts}/bin/erl" {ELIXIR_COOKIE_FLAG} "$@"\n'
        "# elixir start_cli\n"
    ).encode()
    return [
        Member("bin", kind=tarfile.DIRTYPE, mode=0o755),
        Member(f"bin/{name}", script, mode=0o755),
        Member("releases", kind=tarfile.DIRTYPE, mode=0o755),
        Member("releases/start_erl.data", f"{erts} {version}\n".encode()),
        Member("releases/COOKIE", b"build-time-cookie"),
        Member(f"erts-{erts}", kind=tarfile.DIRTYPE, mode=0o755),
        Member(f"erts-{erts}/bin", kind=tarfile.DIRTYPE, mode=0o755),
        Member(f"erts-{erts}/bin/epmd", b"\x7fELF not really", mode=0o755),
    ]


def write_release(path: Path, members: list[Member], *, mode: str = "w:gz") -> Path:
    """Write ``members`` as a tar archive (``mode``: tarfile's, e.g. ``w:xz``, ``w``)."""
    with tarfile.open(path, mode) as archive:  # type: ignore[call-overload]
        for member in members:
            info = tarfile.TarInfo(member.name)
            info.type, info.mode, info.linkname = member.kind, member.mode, member.link
            info.size = len(member.data) if member.kind == tarfile.REGTYPE else 0
            archive.addfile(info, io.BytesIO(member.data) if info.size else None)
    return path


def replaced(members: list[Member], which: str, **changes: object) -> list[Member]:
    """``members`` with the one named ``which`` changed (its fields in ``changes``)."""
    if [m.name for m in members].count(which) != 1:
        raise ValueError(f"no single member {which!r}")
    return [dataclasses.replace(m, **changes) if m.name == which else m for m in members]  # type: ignore[arg-type]

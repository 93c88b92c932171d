"""beamfleet's runtime package as a wheel, built on the controller for hosts without an index.

In host mode the discovery agent, ``beamfleet mesh`` and the naming shim run on the hosts
themselves. Hosts need no package index: the controller writes a wheel of
``beamfleet.runtime`` (plus the package's top-level files and the shell assets the
hosts run) from the installed beamfleet, uploads it, and the host unpacks it (a wheel is
a zip laid out to be unpacked as it is). Its dependencies, click and dnspython, come from
the host's distribution (Debian: python3-click, python3-dnspython).

The wheel is reproducible: the same files give the same bytes (sorted entries, fixed
timestamps and modes), so its digest names the version on the host and an unchanged
runtime is neither uploaded nor restarted.

Example::

    wheel = build_runtime_wheel(cache_dir)   # .../beamfleet_runtime-0.1.0+<digest>-py3-none-any.whl
    runtime_digest(wheel)                    # the 12 hex digits hosts know it by
"""

from __future__ import annotations

import base64
import hashlib
import io
import zipfile
from importlib import resources
from pathlib import Path
from typing import Final

from beamfleet import __version__

DIST_NAME: Final = "beamfleet_runtime"
# The package's top-level files the runtime needs around ``beamfleet.runtime`` (the
# version, ``python -m beamfleet``); the controller side stays off the hosts.
PACKAGE_TOP: Final = ("__init__.py", "__main__.py", "py.typed")
# Shell assets the hosts run: the naming shim and the release entrypoint.
SHELL_ASSETS: Final = ("assets/beamfleet-nodename", "assets/release/beamfleet-entrypoint")
REQUIRES: Final = ("click>=8.0", "dnspython>=2.3")
_EPOCH: Final = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip entry can carry
_SKIP_PARTS: Final = frozenset({"__pycache__"})


def package_dir() -> Path:
    return Path(str(resources.files("beamfleet")))


def runtime_package_files() -> dict[str, Path]:
    """``{archive name: source}`` for the runtime package, copied whole.

    ``beamfleet/runtime`` is taken as it is, so a module added to it travels without a
    list to update; the agent image is built from the same files.
    """
    pkg = package_dir()
    files = {f"beamfleet/{name}": pkg / name for name in PACKAGE_TOP}
    for path in sorted((pkg / "runtime").rglob("*")):
        rel = path.relative_to(pkg)
        if path.is_file() and path.suffix in {".py", ".typed"} and not _SKIP_PARTS & set(rel.parts):
            files[(Path("beamfleet") / rel).as_posix()] = path
    return files


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return f"sha256={digest.decode()}"


def _entry(name: str, executable: bool = False) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, _EPOCH)
    info.external_attr = (0o100755 if executable else 0o100644) << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    return info


def _contents() -> dict[str, tuple[bytes, bool]]:
    """Every file of the wheel but its RECORD: ``{name: (bytes, executable)}``."""
    pkg = package_dir()
    out = {name: (src.read_bytes(), False) for name, src in runtime_package_files().items()}
    for asset in SHELL_ASSETS:
        out[f"beamfleet/{asset}"] = ((pkg / asset).read_bytes(), True)
    return out


def _metadata(version: str) -> dict[str, bytes]:
    info = f"{DIST_NAME}-{version}.dist-info"
    requires = "".join(f"Requires-Dist: {r}\n" for r in REQUIRES)
    return {
        f"{info}/METADATA": (
            f"Metadata-Version: 2.1\nName: {DIST_NAME}\nVersion: {version}\n"
            "Summary: beamfleet's runtime: naming, the distribution client, the discovery agent\n"
            f"Requires-Python: >=3.11\n{requires}"
        ).encode(),
        f"{info}/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: beamfleet\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }


def content_digest() -> str:
    """12 hex digits naming the runtime's files (names, modes and bytes)."""
    h = hashlib.sha256()
    for name, (data, executable) in sorted(_contents().items()):
        h.update(f"{name}\0{int(executable)}\0{len(data)}\0".encode())
        h.update(data)
    return h.hexdigest()[:12]


def build_runtime_wheel(directory: Path) -> Path:
    """Write the runtime wheel into ``directory`` (unless there) and return its path."""
    digest = content_digest()
    version = f"{__version__}+{digest}"
    path = directory / f"{DIST_NAME}-{version}-py3-none-any.whl"
    if path.is_file():
        return path
    files = {name: data for name, (data, _) in _contents().items()}
    files.update(_metadata(version))
    executable = {name for name, (_, x) in _contents().items() if x}
    record_name = f"{DIST_NAME}-{version}.dist-info/RECORD"
    record = "".join(f"{n},{_record_hash(files[n])},{len(files[n])}\n" for n in sorted(files))
    record += f"{record_name},,\n"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name in sorted(files):
            zf.writestr(_entry(name, name in executable), files[name])
        zf.writestr(_entry(record_name), record)
    directory.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(buffer.getvalue())
    tmp.replace(path)
    return path


def runtime_digest(wheel: Path) -> str:
    """The digest a wheel built here is named by (``..+<digest>-py3-none-any.whl``)."""
    return wheel.name.split("+", 1)[1].split("-", 1)[0]

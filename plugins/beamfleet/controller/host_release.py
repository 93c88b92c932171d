"""A release tarball for host mode: what it holds, and whether a host can run it.

In host mode a release runs directly on a Debian host as a systemd service. It comes as a
tarball on the controller (``mix release``'s, rebar3's ``tar``, or the same layout:
``bin/<name>``, ``releases/start_erl.data``, ``releases/<vsn>/``, ``lib/``, and
``erts-<vsn>/`` when ERTS is bundled), or is exported from a built image
(:func:`export_from_image`).

Everything here but the export is pure: :func:`inspect_tarball` reads the archive as a
stream (nothing is unpacked), :class:`HostRuntime` parses what :data:`PROBE` printed on a
host, and :func:`compatibility_problems` compares the two. The start script and the cookie
are adapted by the same rules as a release image (:mod:`beamfleet.controller.release_image`).

Example::

    release = inspect_tarball(Path("_build/prod/app-0.1.0.tar.gz"))
    release.install_name                      # "0.1.0-3f2a9c81d0e4"
    runtime = HostRuntime.parse(probe_output)
    for problem in compatibility_problems(release, runtime, "host1"):
        print(problem)
    cookie_edits(release, "/opt/app/0.1.0-3f2a9c81d0e4")
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import lzma
import os
import posixpath
import re
import tarfile
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Final, Literal

from pyinfra.api.exceptions import PyinfraError

from beamfleet.controller.docker_cli import DockerCliError, docker_stdout, run_docker
from beamfleet.controller.release_image import (
    ReleaseImageError,
    elixir_edits,
    is_vm_args,
    release_kind,
    relx_edits,
)

ReleaseKind = Literal["elixir", "rebar3"]

START_ERL_DATA: Final = "releases/start_erl.data"
# The ERTS executables a host runs: the newest glibc symbol version among them is what the
# host's glibc must provide.
ERTS_BINARIES: Final = ("beam.smp", "erl_child_setup", "epmd")
# Since OTP 23, an OTP major ships ERTS major = OTP major - 12 (OTP 22 shipped ERTS 10.4+,
# so the rule is not extended backwards); a newer ERTS is refused until it is listed here.
ERTS_TO_OTP: Final = {11: 23, 12: 24, 13: 25, 14: 26, 15: 27, 16: 28}
# ELF e_machine values and the Debian (dpkg) architecture of such a binary.
ELF_MACHINES: Final = {3: "i386", 21: "ppc64el", 22: "s390x", 62: "amd64", 183: "arm64"}
ELF_MAGIC: Final = b"\x7fELF"
# bin/ files that are not the start script: relx's helpers, Windows scripts, boot files.
HELPER_NAMES: Final = frozenset({"nodetool", "install_upgrade.escript", "no_dot_erlang.boot"})
HELPER_SUFFIXES: Final = (".bat", ".cmd", ".ps1", ".escript", ".boot", ".exe")
# Start scripts are a few tens of kB; a larger bin/ file is not read as one.
SCRIPT_LIMIT: Final = 1 << 20
CHUNK: Final = 1 << 16
GLIBC_VERSION: Final = re.compile(rb"GLIBC_2\.(\d+)(?:\.\d+)?\x00")
REL_FILE: Final = re.compile(r"releases/([^/]+)/([^/]+)\.rel")
# What a release's names and versions may be: they become paths root writes, words of the
# shell the deploy sends and lines of a systemd unit, so nothing else passes (no `/`, no
# `..` on its own, no quote, `$`, space or control character). A release version is
# SemVer-like (mix: `0.1.0`, `1.2.0-rc.1+build.5`); an ERTS version is dotted numbers; a
# start script's name is the release's name (an atom: letters, digits, `_`, `-`).
RELEASE_VERSION: Final = re.compile(r"[0-9A-Za-z][0-9A-Za-z._+-]{0,63}", re.ASCII)
ERTS_VERSION_TEXT: Final = re.compile(r"[0-9]{1,3}(?:\.[0-9]{1,4}){0,5}", re.ASCII)
START_SCRIPT_NAME: Final = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,63}", re.ASCII)
# Caps on what a release may unpack to (a small archive can expand to much more): far above
# a real release (a Phoenix release with ERTS is about 60 MB in 2-4 thousand files).
MAX_UNPACKED_BYTES: Final = 512 << 20
MAX_MEMBERS: Final = 50_000
# What the hosts can unpack: tar with gzip (Debian's essential set), or no compression.
GZIP_MAGIC: Final = b"\x1f\x8b"
OTHER_COMPRESSIONS: Final = {b"\xfd7zXZ\x00": "xz", b"BZh": "bzip2", b"\x28\xb5\x2f\xfd": "zstd"}
ERTS_FILE: Final = re.compile(r"(erts-[^/]+)/bin/([^/]+)")
HOST_ADVICE: Final = "Deploy it as an image, or give a release with a standard start script"

# Run on a host (`sh`, any user): what a release needs from it. One line per fact,
# "<tag> <value>"; a fact that cannot be read prints nothing. apt-cache runs in the C
# locale (its "Candidate:" is translated otherwise); erl is bounded in time (a broken
# installation must not hang a deploy).
PROBE: Final = r"""
v=$(getconf GNU_LIBC_VERSION 2>/dev/null) && echo "glibc ${v##* }"
[ -r /etc/debian_version ] && echo "debian $(cat /etc/debian_version)"
a=$(dpkg --print-architecture 2>/dev/null) && echo "arch $a"
LC_ALL=C apt-cache policy erlang-base 2>/dev/null |
  sed -n 's/^ *Candidate: *\([^ ]*\).*/erlang-candidate \1/p'
if command -v erl >/dev/null 2>&1; then
  o=$(timeout 30 erl -noshell \
      -eval 'io:format("~s", [erlang:system_info(otp_release)]), halt().' 2>/dev/null) &&
    echo "erl-otp $o"
fi
true
"""


class HostReleaseError(PyinfraError):
    """A release tarball cannot be used in host mode; the message says why and what to do."""


class NotAReleaseError(HostReleaseError):
    """The archive does not hold a release (the message names what was looked for)."""


class CorruptTarballError(HostReleaseError):
    """The archive cannot be read (truncated, not a tar, bad compression)."""


class AmbiguousStartScriptError(HostReleaseError):
    """More than one file in the release's ``bin/`` could be its start script."""


class UnknownErtsError(HostReleaseError):
    """The release's ERTS version maps to no OTP release beamfleet knows."""


class UnsafeReleaseError(HostReleaseError):
    """The archive holds something root must not unpack or use: a name or version outside
    its pattern, a member that is not a plain file, directory or link inside the release,
    a setuid/setgid file, or more than the caps allow. The message names the member."""


class ReleaseExportError(HostReleaseError):
    """A built image's release could not be exported to a tarball."""


@dataclass(frozen=True)
class HostRelease:
    """What a release tarball holds (see :func:`inspect_tarball`).

    ``prefix``: the one leading directory the release is under in the archive ("" when it
    is at the top); ``glibc_required``: the newest glibc the bundled ERTS binaries use
    (None without bundled ERTS); ``erts_arch``: the Debian architecture of the bundled
    ``beam.smp`` (None without bundled ERTS or when unknown); ``vm_args``: the
    ``releases/<vsn>/vm.args[.src]`` files, relative to the release root; ``digest``: the
    sha256 of the tarball; ``unpacked_bytes``: the size of its files; ``compressed``:
    gzip (else a plain tar).

    ``name``, ``version`` and ``erts_version`` match :data:`START_SCRIPT_NAME`,
    :data:`RELEASE_VERSION` and :data:`ERTS_VERSION_TEXT`: they are safe in paths, shell
    words and unit lines.
    """

    name: str
    version: str
    erts_version: str
    kind: ReleaseKind
    otp_major: int
    bundled_erts: bool
    digest: str
    glibc_required: tuple[int, int] | None = None
    erts_arch: str | None = None
    prefix: str = ""
    vm_args: tuple[str, ...] = ()
    script_text: str = field(default="", repr=False, compare=False)
    unpacked_bytes: int = 0
    compressed: bool = True

    @property
    def install_name(self) -> str:
        """The directory name of this exact tarball on a host: ``<version>-<digest12>``."""
        return f"{self.version}-{self.digest[:12]}"

    @property
    def tar_options(self) -> str:
        """How a host's ``tar -x`` reads it: ``-z`` for gzip, nothing for a plain tar."""
        return "-z" if self.compressed else ""


@dataclass
class _Root:
    """What the archive holds below one candidate release root (while it is read)."""

    start_erl: str | None = None
    bin: dict[str, str | None] = field(default_factory=dict)  # name -> text, None: not text
    regular: set[str] = field(default_factory=set)  # paths of regular files (or hard links)
    rel_files: set[tuple[str, str]] = field(default_factory=set)  # (version, release name)
    vm_args: set[str] = field(default_factory=set)
    erts: dict[str, _Erts] = field(default_factory=dict)  # "erts-<vsn>" -> its binaries


@dataclass
class _Erts:
    glibc: tuple[int, int] | None = None
    machine: int | None = None


def inspect_tarball(
    path: Path, *, max_bytes: int = MAX_UNPACKED_BYTES, max_members: int = MAX_MEMBERS
) -> HostRelease:
    """Read a release tarball (gzip or plain) without unpacking it, and check that root can
    unpack it safely (see :class:`_MemberCheck`; ``max_bytes``/``max_members`` cap it).

    The release root is the top of the archive or its one leading directory (``app/``, as
    ``docker cp`` writes it): the one holding ``releases/start_erl.data``.

    Example::

        release = inspect_tarball(Path("app-0.1.0.tar.gz"))
        (release.name, release.version, release.kind)   # ("app", "0.1.0", "elixir")

    Raises:
        NotAReleaseError, CorruptTarballError, AmbiguousStartScriptError,
        UnknownErtsError, UnsafeReleaseError, HostReleaseError (a start script of an
        unknown shape).
    """
    if not path.is_file():
        raise NotAReleaseError(f"the release tarball {path} does not exist (or is no file)")
    compressed = _is_compressed(path)
    check = _MemberCheck(path, max_members, max_bytes)
    roots = _read_archive(path, check)
    prefix, root = _release_root(path, roots)
    check.finish(prefix)
    erts_version, version = _start_erl(path, prefix, root)
    name = _start_script(path, root, version)
    _check_word(path, name, START_SCRIPT_NAME, "its start script's name (bin/<name>)")
    erts = root.erts.get(f"erts-{erts_version}")
    edited = [f"bin/{name}", *sorted(root.vm_args)]
    if erts is not None:
        edited.append(f"erts-{erts_version}/bin/epmd")  # copied by root to a stable path
    for relative in edited:
        if relative not in root.regular:
            raise check.refuse(
                f"{prefix}/{relative}" if prefix else relative,
                "is missing or not a regular file (root edits or copies it)",
            )
    text = root.bin.get(name)
    kind = release_kind(text or "")
    if text is None or kind is None:
        raise NotAReleaseError(
            f"{path}: bin/{name} is not a release start script (neither an Elixir release's, "
            f"with RELEASE_COOKIE, nor a rebar3/relx one's, with RELX_). {HOST_ADVICE}"
        )
    release = HostRelease(
        name=name,
        version=version,
        erts_version=erts_version,
        kind=kind,
        otp_major=otp_major(erts_version),
        bundled_erts=erts is not None,
        digest=_sha256(path),
        glibc_required=erts.glibc if erts else None,
        erts_arch=ELF_MACHINES.get(erts.machine or 0) if erts else None,
        prefix=prefix,
        vm_args=tuple(sorted(root.vm_args)),
        script_text=text,
        unpacked_bytes=check.size,
        compressed=compressed,
    )
    # A start script of an unknown shape is refused now, not on a host (named in the archive).
    cookie_edits(release, f"{path}:{prefix or '.'}")
    return release


def _check_word(path: Path, value: str, pattern: re.Pattern[str], what: str) -> None:
    if not pattern.fullmatch(value):
        raise UnsafeReleaseError(
            f"{path}: {what} is {value!r}, which is not allowed (it must match "
            f"{pattern.pattern}): a release's names and versions become paths, shell words "
            "and unit lines on the hosts; rebuild it with a plain name and version"
        )


def otp_major(erts_version: str) -> int:
    """The OTP major release shipping ERTS ``erts_version`` (see :data:`ERTS_TO_OTP`).

    Example::

        otp_major("15.2.7")  # 27
    """
    major = erts_version.split(".", 1)[0]
    if major.isdigit() and int(major) in ERTS_TO_OTP:
        return ERTS_TO_OTP[int(major)]
    known = ", ".join(f"ERTS {e} = OTP {o}" for e, o in ERTS_TO_OTP.items())
    raise UnknownErtsError(
        f"the release is built with ERTS {erts_version}, which beamfleet cannot map to an "
        f"OTP release (known: {known}): build it with one of those OTP releases"
    )


def _read_archive(path: Path, check: _MemberCheck) -> dict[str, _Root]:
    """Every candidate root's findings, by prefix ("" and each leading directory), each
    member passed to ``check`` (finished by the caller once the root is known)."""
    roots: dict[str, _Root] = {}
    try:
        with tarfile.open(path, mode="r|*") as archive:
            for member in archive:
                check.member(member)
                _read_member(archive, member, roots)
    except (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, OSError) as exc:
        raise CorruptTarballError(
            f"{path} cannot be read as a tar archive ({type(exc).__name__}: {exc}): give the "
            "release tarball itself (mix release's or rebar3 tar's .tar.gz), complete"
        ) from exc
    return roots


def _is_compressed(path: Path) -> bool:
    """True for gzip, False for a plain tar; any other compression is refused (the hosts'
    ``tar`` is given ``-z`` or nothing, and a failed unpack must not wait for a host)."""
    with path.open("rb") as stream:
        head = stream.read(6)
    if head.startswith(GZIP_MAGIC):
        return True
    for magic, name in OTHER_COMPRESSIONS.items():
        if head.startswith(magic):
            raise CorruptTarballError(
                f"{path} is compressed with {name}: host mode takes a gzip-compressed tarball "
                "(what mix release and rebar3 tar write) or a plain tar; recompress it, e.g. "
                f"`{name.replace('zip2', 'zip')} -dc {path.name} | gzip > "
                f"{path.stem.removesuffix('.tar')}.tar.gz`"
            )
    return False


@dataclass
class _MemberCheck:
    """The members root may unpack: checked one by one as the archive streams past, then
    as a whole once the release root is known (:meth:`finish`).

    Refused, naming the member: an absolute name or one with a ``..`` component; a type
    other than a regular file, a directory, a symbolic link or a hard link (devices, FIFOs);
    the setuid or setgid bit; a member below a symbolic link (unpacking it would write
    where the link points); a link whose target leaves the release or passes through
    another symbolic link; more than :data:`MAX_MEMBERS` members or
    :data:`MAX_UNPACKED_BYTES` of files.
    """

    path: Path
    max_members: int = MAX_MEMBERS
    max_bytes: int = MAX_UNPACKED_BYTES
    count: int = 0
    size: int = 0
    tops: set[str] = field(default_factory=set)
    symlinks: dict[str, str] = field(default_factory=dict)  # clean name -> raw target
    hardlinks: dict[str, str] = field(default_factory=dict)  # clean name -> clean target

    def refuse(self, name: str, why: str) -> UnsafeReleaseError:
        return UnsafeReleaseError(
            f"{self.path}: the member {name!r} {why}; host mode unpacks a release as root, "
            "so it takes only regular files, directories and links that stay inside the "
            "release: rebuild the release without it"
        )

    def member(self, member: tarfile.TarInfo) -> None:
        self.count += 1
        if self.count > self.max_members:
            raise UnsafeReleaseError(
                f"{self.path} holds more than {self.max_members} members: a release holds a "
                "few thousand; is it the release tarball?"
            )
        name = self.clean(member.name)
        if member.mode & 0o6000:
            raise self.refuse(member.name, f"has the setuid or setgid bit (mode {member.mode:o})")
        if not (member.isreg() or member.isdir() or member.issym() or member.islnk()):
            raise self.refuse(member.name, "is a device, FIFO or another special file")
        if member.isreg():
            self.size += member.size
            if self.size > self.max_bytes:
                raise UnsafeReleaseError(
                    f"{self.path} unpacks to more than {self.max_bytes >> 20} MiB (at "
                    f"{member.name!r}): a release is tens of MB; is it the release tarball?"
                )
        if not name:
            return
        self.tops.add(name.split("/", 1)[0])
        parents = name.split("/")[:-1]
        for depth in range(1, len(parents) + 1):
            if "/".join(parents[:depth]) in self.symlinks:
                link = "/".join(parents[:depth])
                raise self.refuse(member.name, f"is below the link {link!r}")
        if member.issym():
            if member.linkname.startswith("/"):
                absolute = f"is a link to the absolute path {member.linkname!r}"
                raise self.refuse(member.name, absolute)
            self.symlinks[name] = member.linkname
        elif member.islnk():
            self.hardlinks[name] = self.clean(member.linkname)

    def clean(self, raw: str) -> str:
        """The member's name without ``./`` and trailing ``/`` ("" for the top itself)."""
        if raw.startswith("/"):
            raise self.refuse(raw, "has an absolute name")
        parts = [p for p in raw.split("/") if p not in ("", ".")]
        if ".." in parts:
            raise self.refuse(raw, "has a `..` in its name")
        if any(ord(c) < 32 or ord(c) == 127 for c in raw):
            raise self.refuse(raw, "has a control character in its name")
        return "/".join(parts)

    def finish(self, prefix: str) -> None:
        """Checks that need the whole archive and its release root (``prefix``)."""
        if prefix and self.tops - {prefix}:
            # --strip-components=1 would merge the other top directories into the release
            others = ", ".join(sorted(self.tops - {prefix}))
            raise UnsafeReleaseError(
                f"{self.path}: the release is under {prefix}/, and the archive also holds "
                f"{others} beside it: give a tarball of the release alone"
            )
        inside = f"{prefix}/" if prefix else ""
        for name, target in self.hardlinks.items():
            if inside and not target.startswith(inside):
                raise self.refuse(name, f"is a hard link to {target!r}, outside the release")
        for name, target in self.symlinks.items():
            self._symlink_stays_inside(name, target, prefix)

    def _symlink_stays_inside(self, name: str, target: str, prefix: str) -> None:
        # Walked component by component: a textual normpath would let `a/../b` pass where
        # `a` is itself a link that points elsewhere.
        where = name.split("/")[:-1]
        floor = 1 if prefix else 0
        parts = [p for p in target.split("/") if p not in ("", ".")]
        for i, part in enumerate(parts):
            if part == "..":
                if len(where) <= floor:
                    raise self.refuse(name, f"is a link to {target!r}, outside the release")
                where.pop()
                continue
            where.append(part)
            if i < len(parts) - 1 and "/".join(where) in self.symlinks:
                raise self.refuse(
                    name, f"is a link to {target!r}, through the link {'/'.join(where)!r}"
                )


def _placements(name: str) -> list[tuple[str, str]]:
    """Where a member may sit: (prefix, path below the root), at the top or below one dir.

    Example::

        _placements("./app/bin/app")  # [("", "app/bin/app"), ("app", "bin/app")]
    """
    clean = posixpath.normpath(name.lstrip("/"))
    if clean in (".", ".."):
        return []
    first, _, rest = clean.partition("/")
    return [("", clean), (first, rest)] if rest else [("", clean)]


def _read_member(
    archive: tarfile.TarFile, member: tarfile.TarInfo, roots: dict[str, _Root]
) -> None:
    """Record what ``member`` tells about each root it may belong to (its data read once)."""
    wanted = [(p, r) for p, r in _placements(member.name) if _wanted(r)]
    if not wanted:
        return
    cached: dict[Callable[[IO[bytes]], object], object] = {}
    small: list[bytes] = []  # a small member's bytes, kept for every reader

    def data() -> IO[bytes] | None:
        # An archive stream is read once: a large member (an ERTS binary) by one reader.
        if not member.isreg() or (member.size > SCRIPT_LIMIT and cached):
            return None
        if member.size > SCRIPT_LIMIT:
            return archive.extractfile(member)
        if not small:
            stream = archive.extractfile(member)
            small.append(stream.read() if stream else b"")
        return io.BytesIO(small[0])

    def content(reader: Callable[[IO[bytes]], object]) -> object:
        if reader not in cached:
            stream = data()
            cached[reader] = reader(stream) if stream else None
        return cached[reader]

    links = dict(_placements(member.linkname)) if member.islnk() else {}
    for prefix, relative in wanted:
        root = roots.setdefault(prefix, _Root())
        # root edits the start script and vm.args in place: they must not be links
        if member.isreg() or (member.islnk() and links.get(prefix) in root.regular):
            root.regular.add(relative)
        linked = _bin_name(links.get(prefix, ""))
        if linked is not None and _bin_name(relative) is not None:
            # A hard link in bin/ (a start script and its versioned copy): the same text.
            root.bin[_bin_name(relative) or ""] = root.bin.get(linked)
        else:
            _record(root, relative, member, content)


def _wanted(relative: str) -> bool:
    return (
        relative == START_ERL_DATA
        or _bin_name(relative) is not None
        or REL_FILE.fullmatch(relative) is not None
        or is_vm_args(relative)
        or relative.startswith("erts-")
    )


def _bin_name(relative: str) -> str | None:
    directory, _, name = relative.partition("/")
    return name if directory == "bin" and name and "/" not in name else None


def _record(
    root: _Root,
    relative: str,
    member: tarfile.TarInfo,
    content: Callable[[Callable[[IO[bytes]], object]], object],
) -> None:
    bin_name = _bin_name(relative)
    rel = REL_FILE.fullmatch(relative)
    erts = ERTS_FILE.fullmatch(relative)
    if relative == START_ERL_DATA:
        root.start_erl = _as_text(content(_read_text))
    elif bin_name is not None and not member.isdir():
        small = member.size <= SCRIPT_LIMIT
        root.bin[bin_name] = _as_text(content(_read_text)) if small else None
    elif rel is not None:
        root.rel_files.add((rel[1], rel[2]))
    elif is_vm_args(relative):
        root.vm_args.add(relative)
    elif relative.startswith("erts-"):
        found = root.erts.setdefault(relative.split("/", 1)[0], _Erts())
        if erts is not None and erts[2] in ERTS_BINARIES:
            scanned = content(_scan_binary)
            if isinstance(scanned, _Erts):
                found.glibc = max(filter(None, (found.glibc, scanned.glibc)), default=None)
                found.machine = found.machine if erts[2] != "beam.smp" else scanned.machine


def _read_text(stream: IO[bytes]) -> str | None:
    try:
        return stream.read(SCRIPT_LIMIT).decode()
    except UnicodeDecodeError:
        return None


def _as_text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _scan_binary(stream: IO[bytes]) -> _Erts:
    """The ELF machine and the newest ``GLIBC_2.N`` symbol version of a binary, streamed.

    Example::

        _scan_binary(io.BytesIO(elf_header + b"GLIBC_2.34\\0GLIBC_2.36\\0"))
        # _Erts(glibc=(2, 36), machine=62)
    """
    chunk = stream.read(CHUNK)
    found = _Erts(machine=elf_machine(chunk))
    tail = b""
    while chunk:
        window = tail + chunk
        for match in GLIBC_VERSION.finditer(window):
            found.glibc = max(found.glibc or (0, 0), (2, int(match[1])))
        # A version string cut by the chunk boundary is whole in the next window.
        tail = window[-32:]
        chunk = stream.read(CHUNK)
    return found


def elf_machine(header: bytes) -> int | None:
    """The ``e_machine`` field of an ELF header (None for a file that is not ELF).

    Example::

        elf_machine(Path("/usr/bin/true").read_bytes()[:64])  # 62 on x86_64
    """
    if len(header) < 20 or not header.startswith(ELF_MAGIC):
        return None
    order: Literal["little", "big"] = "big" if header[5] == 2 else "little"
    return int.from_bytes(header[18:20], order)


def _release_root(path: Path, roots: Mapping[str, _Root]) -> tuple[str, _Root]:
    found = {prefix: root for prefix, root in roots.items() if root.start_erl is not None}
    if len(found) == 1:
        return next(iter(found.items()))
    if not found:
        raise NotAReleaseError(
            f"{path} holds no release: beamfleet looked for {START_ERL_DATA} at the top of "
            f"the archive and below one leading directory (e.g. app/{START_ERL_DATA}). Give "
            "the tarball of a release (mix release, rebar3 tar)"
        )
    places = ", ".join(f"{p}/{START_ERL_DATA}" if p else START_ERL_DATA for p in sorted(found))
    raise NotAReleaseError(
        f"{path} holds more than one release ({places}): give a tarball of one release"
    )


def _start_erl(path: Path, prefix: str, root: _Root) -> tuple[str, str]:
    """(ERTS version, release version) from ``releases/start_erl.data``."""
    words = (root.start_erl or "").split()
    where = f"{prefix}/{START_ERL_DATA}" if prefix else START_ERL_DATA
    if len(words) != 2:
        raise NotAReleaseError(
            f"{path}: {where} holds {root.start_erl!r}, not 'ERTS_VERSION RELEASE_VERSION' "
            "as mix release and rebar3 write it"
        )
    _check_word(path, words[0], ERTS_VERSION_TEXT, f"the ERTS version in {where}")
    _check_word(path, words[1], RELEASE_VERSION, f"the release version in {where}")
    return words[0], words[1]


def _start_script(path: Path, root: _Root, version: str) -> str:
    """The name of the release's start script among the files in its ``bin/``.

    Helpers are set aside (relx's nodetool, escripts, boot files, Windows scripts) and
    relx's versioned copy ``<name>-<version>``; a tie is broken by the release's
    ``releases/<version>/<name>.rel``, then by which candidates read as start scripts.
    """
    names = sorted(n for n in root.bin if n not in HELPER_NAMES and not n.endswith(HELPER_SUFFIXES))
    names = [n for n in names if not _versioned_copy(n, version, root.bin)]
    released = {name for vsn, name in root.rel_files if vsn == version}
    for narrowed in (
        names,
        [n for n in names if n in released],
        [n for n in names if release_kind(root.bin[n] or "")],
    ):
        if len(narrowed) == 1:
            return narrowed[0]
    listed = ", ".join(f"bin/{n}" for n in sorted(root.bin)) or "nothing"
    if not names:
        raise NotAReleaseError(
            f"{path}: the release's bin/ holds no start script (found: {listed}); a release "
            "has bin/<name>, its start script"
        )
    raise AmbiguousStartScriptError(
        f"{path}: more than one file in the release's bin/ could be its start script "
        f"({', '.join(f'bin/{n}' for n in names)}; no releases/{version}/<name>.rel tells "
        "them apart): give a tarball whose bin/ holds one start script"
    )


def _versioned_copy(name: str, version: str, names: Mapping[str, object]) -> bool:
    """Whether ``name`` is relx's ``<script>-<version>``, a copy of ``<script>``."""
    script = name.removesuffix(f"-{version}")
    return script != name and script in names


def _sha256(path: Path) -> str:
    with path.open("rb") as stream:
        return hashlib.file_digest(stream, "sha256").hexdigest()


def cookie_edits(release: HostRelease, root: str) -> tuple[str, ...]:
    """Shell commands that adapt the release unpacked at ``root`` on a host, so that its
    cookie never reaches a command line (the edits a release image gets).

    Elixir: the start script passes ``--cookie`` only when RELEASE_COOKIE is set and never
    reads ``releases/COOKIE``, which is removed. rebar3 (relx): ``-setcookie`` is dropped
    from vm.args and ``-name``/``-sname`` replaced by an ``-args_file``.

    Example::

        cookie_edits(release, "/opt/app/0.1.0-3f2a9c81d0e4")
        # ("sed -i ... /opt/app/0.1.0-3f2a9c81d0e4/bin/app", ..., "rm -f .../releases/COOKIE")

    Raises:
        HostReleaseError: the start script has a shape beamfleet does not know.
    """
    base = root.rstrip("/")
    script = f"{base}/bin/{release.name}"
    try:
        if release.kind == "elixir":
            return elixir_edits(script, release.script_text, base, HOST_ADVICE)
        vm_args = [f"{base}/{relative}" for relative in release.vm_args]
        return relx_edits(script, release.script_text, base, vm_args, HOST_ADVICE)
    except ReleaseImageError as exc:
        raise HostReleaseError(str(exc)) from exc


def needs_erlang_base(release: HostRelease) -> bool:
    """Whether the host must provide the Erlang runtime (the release bundles no ERTS).

    Example::

        needs_erlang_base(release)  # True for a release built with include_erts: false
    """
    return not release.bundled_erts


@dataclass(frozen=True)
class HostRuntime:
    """What a host offers a release: what :data:`PROBE` printed there, parsed.

    ``glibc``: None when unknown; ``erlang_otp_major``: the OTP of the ``erl`` on PATH;
    ``erlang_candidate``: the erlang-base version ``apt-get install`` would give (as
    apt-cache policy prints it, "" when none) and ``erlang_candidate_otp_major`` its OTP.
    """

    debian_version: str = ""
    glibc: tuple[int, int] | None = None
    erlang_otp_major: int | None = None
    erlang_candidate_otp_major: int | None = None
    arch: str = ""
    erlang_candidate: str = ""

    @classmethod
    def parse(cls, text: str) -> HostRuntime:
        """From :data:`PROBE`'s output; a missing or unreadable line leaves its default.

        Example::

            HostRuntime.parse("glibc 2.36\\ndebian 12.11\\narch amd64\\n"
                              "erlang-candidate 1:25.2.3+dfsg-1+deb12u1\\n")
            # HostRuntime("12.11", (2, 36), None, 25, "amd64", "1:25.2.3+dfsg-1+deb12u1")
        """
        facts: dict[str, str] = {}
        for line in text.splitlines():
            tag, _, value = line.strip().partition(" ")
            if value.strip():
                facts[tag] = value.strip()
        candidate = facts.get("erlang-candidate", "")
        candidate = "" if candidate == "(none)" else candidate
        otp = facts.get("erl-otp", "")
        return cls(
            debian_version=facts.get("debian", ""),
            glibc=_version_pair(facts.get("glibc", "")),
            erlang_otp_major=int(otp) if otp.isdigit() else None,
            erlang_candidate_otp_major=debian_erlang_major(candidate),
            arch=facts.get("arch", ""),
            erlang_candidate=candidate,
        )


def _version_pair(text: str) -> tuple[int, int] | None:
    match = re.fullmatch(r"(\d+)\.(\d+)(?:\.\d+)*", text)
    return (int(match[1]), int(match[2])) if match else None


def debian_erlang_major(version: str) -> int | None:
    """The OTP major of a Debian erlang package version (epoch and revision ignored).

    Example::

        debian_erlang_major("1:25.2.3+dfsg-1+deb12u1")  # 25
    """
    match = re.match(r"(?:\d+:)?(\d+)[.+~-]", version)
    return int(match[1]) if match else None


def compatibility_problems(release: HostRelease, runtime: HostRuntime, host: str) -> list[str]:
    """Why ``host`` cannot run ``release`` (empty when it can), each naming what was found
    and what is needed.

    With bundled ERTS, the host's glibc must be at least the newest one the ERTS binaries
    use, and its architecture the binaries'. Without, the OTP the host runs (its ``erl``,
    else the erlang-base apt would install) must be the release's OTP major.

    Example::

        compatibility_problems(release, HostRuntime.parse(output), "host1")
        # ["the release's ERTS needs glibc 2.41, host1 has 2.36 (Debian 12.11): ..."]
    """
    if release.bundled_erts:
        return [
            p
            for p in (_glibc_problem(release, runtime, host), _arch_problem(release, runtime, host))
            if p
        ]
    problem = _otp_problem(release, runtime, host)
    return [problem] if problem else []


def _on_debian(runtime: HostRuntime) -> str:
    return f" (Debian {runtime.debian_version})" if runtime.debian_version else ""


def _glibc_problem(release: HostRelease, runtime: HostRuntime, host: str) -> str | None:
    needed = release.glibc_required
    if needed is None:
        return None
    need = f"{needed[0]}.{needed[1]}"
    if runtime.glibc is None:
        return (
            f"the release's ERTS needs glibc {need}, and {host}'s glibc version is unknown "
            "(`getconf GNU_LIBC_VERSION` printed nothing): host mode needs a Debian host"
        )
    if runtime.glibc >= needed:
        return None
    have = f"{runtime.glibc[0]}.{runtime.glibc[1]}"
    return (
        f"the release's ERTS needs glibc {need}, {host} has {have}{_on_debian(runtime)}: "
        f"build the release on a system with glibc {have} or older (the host's Debian "
        "release or an older one), or build it without ERTS (include_erts: false) to run "
        "on the host's erlang-base"
    )


def _arch_problem(release: HostRelease, runtime: HostRuntime, host: str) -> str | None:
    if release.erts_arch is None or not runtime.arch or release.erts_arch == runtime.arch:
        return None
    return (
        f"the release's ERTS is built for {release.erts_arch}, {host} is {runtime.arch}: "
        f"build the release on {runtime.arch}, or without ERTS (include_erts: false)"
    )


def _otp_problem(release: HostRelease, runtime: HostRuntime, host: str) -> str | None:
    built = (
        f"the release {release.name} {release.version} is built with OTP {release.otp_major} "
        f"(ERTS {release.erts_version}) and bundles no ERTS"
    )
    installed, candidate = runtime.erlang_otp_major, runtime.erlang_candidate_otp_major
    if installed is not None:
        if installed == release.otp_major:
            return None
        return (
            f"{built}; {host} has OTP {installed} installed (the erl on its PATH): bundle "
            f"ERTS (include_erts) or build with OTP {installed}"
        )
    if candidate is None:
        return (
            f"{built}; {host} has no erl and apt offers no erlang-base{_on_debian(runtime)}: "
            f"bundle ERTS (include_erts), or make erlang-base of OTP {release.otp_major} "
            "installable on the host"
        )
    if candidate == release.otp_major:
        return None
    return (
        f"{built}; {host} would install OTP {candidate} (erlang-base "
        f"{runtime.erlang_candidate}): bundle ERTS (include_erts) or build with OTP {candidate}"
    )


def export_from_image(image_id: str, root: str, cache: Path) -> Path:
    """The release at ``root`` in a built image, as a .tar.gz under ``cache`` (per image ID).

    ``root`` is the release root found by inspecting the image (``/app`` when its start
    script is ``/app/bin/<name>``). The archive holds the release at its top. A cached
    archive is returned as it is (no docker call); the container made to copy from is
    always removed.

    Example::

        export_from_image("sha256:946b22fd...", "/app", Path(".beamfleet/releases"))
        # Path(".beamfleet/releases/946b22fd....tar.gz")

    Raises:
        ReleaseExportError: docker failed (its message is included).
    """
    target = cache / f"{image_id.removeprefix('sha256:')}.tar.gz"
    if target.is_file():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
    try:
        # A container is never started: `true` only makes create accept an image without CMD.
        created = run_docker("create", "--network", "none", "--entrypoint", "true", image_id)
        container = created.stdout.decode().strip()
    except DockerCliError as exc:
        raise ReleaseExportError(f"cannot create a container of image {image_id}: {exc}") from exc
    try:
        # "<root>/." copies the directory's content (following a root that is a symlink).
        with docker_stdout("cp", f"{container}:{root.rstrip('/')}/.", "-") as stream:
            _repack(stream, partial)
        partial.replace(target)
    except (DockerCliError, tarfile.TarError) as exc:
        raise ReleaseExportError(
            f"cannot export {root} from image {image_id}: {exc} (is {root} the release root?)"
        ) from exc
    finally:
        partial.unlink(missing_ok=True)
        with contextlib.suppress(DockerCliError):
            run_docker("rm", "--force", container, check=False)
    return target


def _repack(stream: IO[bytes], target: Path) -> None:
    """Write the tar read from ``stream`` to ``target``, gzipped, its names made relative
    (``docker cp`` names them ``./bin/app``...)."""
    with tarfile.open(fileobj=stream, mode="r|") as source, tarfile.open(target, "w:gz") as out:
        for member in source:
            name = posixpath.normpath(member.name.lstrip("/"))
            if name in (".", ".."):
                continue
            member.name = name
            if member.islnk():
                member.linkname = posixpath.normpath(member.linkname.lstrip("/"))
            out.addfile(member, source.extractfile(member) if member.isreg() else None)

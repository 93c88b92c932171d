"""Release tarballs for host mode: inspected from fixture archives built here, the cookie
edits run on an unpacked fixture, a host's probe parsed, the compatibility refusals, and
the export of an image's release through a stand-in ``docker``."""

from __future__ import annotations

import gzip
import hashlib
import io
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from beamfleet.controller.host_release import (
    CHUNK,
    PROBE,
    AmbiguousStartScriptError,
    CorruptTarballError,
    HostRelease,
    HostReleaseError,
    HostRuntime,
    NotAReleaseError,
    ReleaseExportError,
    UnknownErtsError,
    compatibility_problems,
    cookie_edits,
    debian_erlang_major,
    elf_machine,
    export_from_image,
    inspect_tarball,
    needs_erlang_base,
    otp_major,
)
from tests.unit.test_release_image import ELIXIR_SCRIPT, RELX_SCRIPT, VM_ARGS


def elf(machine: int = 62, big_endian: bool = False) -> bytes:
    """An ELF header (64-bit) with ``e_machine`` set, padded to 64 bytes."""
    order = "big" if big_endian else "little"
    ident = b"\x7fELF\x02" + (b"\x02" if big_endian else b"\x01") + b"\x01" + bytes(9)
    return ident + (2).to_bytes(2, order) + machine.to_bytes(2, order) + bytes(44)


BEAM = elf() + b"\0libc.so.6\0GLIBC_2.34\0GLIBC_2.2.5\0GLIBC_2.36\0GLIBC_PRIVATE\0"
EPMD = elf() + b"\0GLIBC_2.17\0"


def elixir_files(erts: bool = True) -> dict[str, bytes | str]:
    files: dict[str, bytes | str] = {
        "bin/app": ELIXIR_SCRIPT,
        "bin/app.bat": "@echo off\r\n",
        "releases/start_erl.data": "15.2.7 0.1.0",
        "releases/COOKIE": "build-time-cookie",
        "releases/0.1.0/app.rel": "{release, ...}.",
        "releases/0.1.0/vm.args": "## Elixir's own vm.args\n",
        "lib/app-0.1.0/ebin/app.beam": b"FOR1\0\0BEAM",
    }
    if erts:
        files["erts-15.2.7/bin/beam.smp"] = BEAM
        files["erts-15.2.7/bin/epmd"] = EPMD
        files["erts-15.2.7/bin/erl"] = "#!/bin/sh\n"
    return files


def relx_files() -> dict[str, bytes | str]:
    return {
        "bin/app": RELX_SCRIPT,
        "bin/app-2.3.0": RELX_SCRIPT,
        "bin/nodetool": "#!/usr/bin/env escript\n",
        "bin/install_upgrade.escript": "#!/usr/bin/env escript\n",
        "bin/no_dot_erlang.boot": b"\x83h\x02",
        "releases/start_erl.data": "14.2.5 2.3.0\n",
        "releases/2.3.0/app.rel": "{release, ...}.",
        "releases/2.3.0/vm.args": VM_ARGS,
        "releases/2.3.0/start.boot": b"\x83",
        "erts-14.2.5/bin/beam.smp": elf(183) + b"GLIBC_2.28\0",
        "erts-14.2.5/bin/erl_child_setup": elf(183) + b"GLIBC_2.31\0",
        "erts-14.2.5/bin/epmd": elf(183) + b"GLIBC_2.17\0",
    }


def tarball(
    tmp_path: Path, files: dict[str, bytes | str], prefix: str = "", name: str = "r.tar.gz"
) -> Path:
    """A tar of ``files`` (directories included, as real archives have them), gzipped
    when ``name`` says so."""
    path = tmp_path / name
    with tarfile.open(path, "w:gz" if name.endswith("gz") else "w") as archive:
        dirs = sorted({str(Path(f).parent) for f in files} - {"."})
        for directory in ([prefix] if prefix else []) + [f"{prefix}{d}" for d in dirs]:
            info = tarfile.TarInfo(directory.rstrip("/"))
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            archive.addfile(info)
        for rel, content in files.items():
            data = content.encode() if isinstance(content, str) else content
            info = tarfile.TarInfo(prefix + rel)
            info.size, info.mode = len(data), 0o755
            archive.addfile(info, io.BytesIO(data))
    return path


# -- inspection -------------------------------------------------------------------------------


def test_elixir_release_with_erts(tmp_path: Path) -> None:
    path = tarball(tmp_path, elixir_files())
    release = inspect_tarball(path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert release == HostRelease(
        name="app",
        version="0.1.0",
        erts_version="15.2.7",
        kind="elixir",
        otp_major=27,
        bundled_erts=True,
        digest=digest,
        glibc_required=(2, 36),
        erts_arch="amd64",
        prefix="",
        vm_args=("releases/0.1.0/vm.args",),
        unpacked_bytes=sum(len(c) for c in elixir_files().values()),
    )
    assert release.install_name == f"0.1.0-{digest[:12]}"
    assert release.tar_options == "-z"
    assert not needs_erlang_base(release)


def test_elixir_release_without_erts(tmp_path: Path) -> None:
    release = inspect_tarball(tarball(tmp_path, elixir_files(erts=False)))
    assert (release.kind, release.otp_major, release.bundled_erts) == ("elixir", 27, False)
    assert release.glibc_required is None and release.erts_arch is None
    assert needs_erlang_base(release)


def test_relx_release_picks_the_start_script_among_helpers(tmp_path: Path) -> None:
    release = inspect_tarball(tarball(tmp_path, relx_files(), name="r.tar"))
    assert (release.name, release.version, release.kind) == ("app", "2.3.0", "rebar3")
    assert (release.erts_version, release.otp_major) == ("14.2.5", 26)
    # The newest version over every ERTS binary; the machine is beam.smp's.
    assert release.glibc_required == (2, 31)
    assert release.erts_arch == "arm64"
    assert release.vm_args == ("releases/2.3.0/vm.args",)


def test_a_start_script_hard_linked_to_its_versioned_copy(tmp_path: Path) -> None:
    files = {k: v for k, v in relx_files().items() if k != "bin/app"}
    path = tarball(tmp_path, files, prefix="rel/", name="r.tar")
    with tarfile.open(path, "a") as archive:
        link = tarfile.TarInfo("rel/bin/app")
        link.type, link.linkname = tarfile.LNKTYPE, "rel/bin/app-2.3.0"
        archive.addfile(link)
    release = inspect_tarball(path)
    assert (release.name, release.kind, release.prefix) == ("app", "rebar3", "rel")


def test_relx_start_script_without_a_release_file(tmp_path: Path) -> None:
    # bin/app-2.3.0 is set aside as the versioned copy, not by the .rel file.
    files = {k: v for k, v in relx_files().items() if not k.endswith(".rel")}
    assert inspect_tarball(tarball(tmp_path, files)).name == "app"


@pytest.mark.parametrize("prefix", ["app/", "./app/", "./"])
def test_release_below_one_leading_directory(tmp_path: Path, prefix: str) -> None:
    release = inspect_tarball(tarball(tmp_path, elixir_files(), prefix=prefix))
    assert release.prefix == prefix.strip("./").rstrip("/")
    assert (release.name, release.bundled_erts, release.glibc_required) == ("app", True, (2, 36))


def test_a_glibc_version_across_a_read_boundary_is_found(tmp_path: Path) -> None:
    marker = b"GLIBC_2.39\0"
    beam = elf() + bytes(CHUNK - 64 - 5) + marker + b"GLIBC_2.3\0"
    assert beam.index(marker) < CHUNK < beam.index(marker) + len(marker)
    files = {**elixir_files(), "erts-15.2.7/bin/beam.smp": beam}
    assert inspect_tarball(tarball(tmp_path, files)).glibc_required == (2, 39)


def test_an_erts_binary_that_is_not_elf_has_no_architecture(tmp_path: Path) -> None:
    files = {**elixir_files(), "erts-15.2.7/bin/beam.smp": b"GLIBC_2.30\0"}
    release = inspect_tarball(tarball(tmp_path, files))
    assert release.erts_arch is None and release.glibc_required == (2, 30)


def test_elf_machine() -> None:
    assert elf_machine(elf(62)) == 62
    assert elf_machine(elf(22, big_endian=True)) == 22
    assert elf_machine(b"#!/bin/sh\n" + bytes(30)) is None
    assert elf_machine(b"\x7fELF") is None


@pytest.mark.parametrize(
    ("erts", "otp"), [("13.2.2.5", 25), ("14.2", 26), ("15.2.7", 27), ("16.0.1", 28)]
)
def test_otp_major_of_an_erts_version(erts: str, otp: int) -> None:
    assert otp_major(erts) == otp


@pytest.mark.parametrize("erts", ["17.0", "10.7"])
def test_an_unknown_erts_version_is_refused(tmp_path: Path, erts: str) -> None:
    files = {**elixir_files(erts=False), "releases/start_erl.data": f"{erts} 0.1.0"}
    with pytest.raises(UnknownErtsError, match=rf"ERTS {erts}.*known: .*ERTS 15 = OTP 27"):
        inspect_tarball(tarball(tmp_path, files))


# -- refusals ---------------------------------------------------------------------------------


def test_an_archive_without_a_release_names_what_was_looked_for(tmp_path: Path) -> None:
    files = {"deep/er/releases/start_erl.data": "15.2.7 0.1.0", "bin/app": ELIXIR_SCRIPT}
    with pytest.raises(NotAReleaseError, match=r"releases/start_erl\.data at the top"):
        inspect_tarball(tarball(tmp_path, files))


def test_two_releases_in_one_archive_are_refused(tmp_path: Path) -> None:
    files = {**elixir_files(), **{f"other/{k}": v for k, v in elixir_files().items()}}
    with pytest.raises(NotAReleaseError, match=r"more than one release.*other/releases"):
        inspect_tarball(tarball(tmp_path, files))


def test_a_malformed_start_erl_data_is_refused(tmp_path: Path) -> None:
    files = {**elixir_files(), "releases/start_erl.data": "15.2.7\n"}
    with pytest.raises(NotAReleaseError, match=r"'15.2.7\\n', not 'ERTS_VERSION RELEASE"):
        inspect_tarball(tarball(tmp_path, files))


def test_a_release_without_a_start_script_lists_its_bin(tmp_path: Path) -> None:
    files = {k: v for k, v in relx_files().items() if k not in ("bin/app", "bin/app-2.3.0")}
    with pytest.raises(NotAReleaseError, match=r"no start script \(found: .*bin/nodetool"):
        inspect_tarball(tarball(tmp_path, files))


def test_two_start_scripts_are_ambiguous(tmp_path: Path) -> None:
    files = {**elixir_files(), "bin/worker": ELIXIR_SCRIPT}
    del files["releases/0.1.0/app.rel"]
    with pytest.raises(AmbiguousStartScriptError, match=r"bin/app, bin/worker"):
        inspect_tarball(tarball(tmp_path, files))


def test_the_release_file_then_the_content_tell_start_scripts_apart(tmp_path: Path) -> None:
    files = {**elixir_files(), "bin/worker": ELIXIR_SCRIPT}
    assert inspect_tarball(tarball(tmp_path, files, name="a.tgz")).name == "app"
    files = {**elixir_files(), "bin/worker": "#!/bin/sh\nexec true\n"}
    del files["releases/0.1.0/app.rel"]
    assert inspect_tarball(tarball(tmp_path, files, name="b.tgz")).name == "app"


def test_a_script_of_no_known_kind_is_refused(tmp_path: Path) -> None:
    files = {**elixir_files(), "bin/app": "#!/bin/sh\nexec erl\n"}
    with pytest.raises(NotAReleaseError, match="bin/app is not a release start script"):
        inspect_tarball(tarball(tmp_path, files))


def test_an_elixir_script_of_another_shape_is_refused_when_inspected(tmp_path: Path) -> None:
    files = {**elixir_files(), "bin/app": "#!/bin/sh\n# elixir\nRELEASE_COOKIE=x\n"}
    with pytest.raises(HostReleaseError, match=r"unknown shape.*Deploy it as an image"):
        inspect_tarball(tarball(tmp_path, files))


def test_a_relx_release_without_vm_args_is_refused_when_inspected(tmp_path: Path) -> None:
    files = {k: v for k, v in relx_files().items() if not k.endswith("vm.args")}
    with pytest.raises(
        HostReleaseError, match=r"script .*r\.tar\.gz:\./bin/app .*vm\.args under .*r\.tar\.gz:\. "
    ):
        inspect_tarball(tarball(tmp_path, files))


def test_corrupt_archives_are_refused(tmp_path: Path) -> None:
    whole = tarball(tmp_path, elixir_files()).read_bytes()
    truncated = tmp_path / "cut.tar.gz"
    truncated.write_bytes(whole[: len(whole) // 2])
    garbage = tmp_path / "garbage.tar"
    garbage.write_bytes(b"this is no tar archive at all" * 40)
    bad_gzip = tmp_path / "bad.tar.gz"
    bad_gzip.write_bytes(gzip.compress(b"x" * 100)[:12] + b"\xff" * 50)
    for path in (truncated, garbage, bad_gzip):
        with pytest.raises(CorruptTarballError, match=f"{path.name} cannot be read as a tar"):
            inspect_tarball(path)
    with pytest.raises(NotAReleaseError, match="does not exist"):
        inspect_tarball(tmp_path / "missing.tar.gz")


# -- cookie edits -----------------------------------------------------------------------------


def unpack(path: Path, into: Path) -> Path:
    with tarfile.open(path) as archive:
        archive.extractall(into, filter="data")
    return into


def test_elixir_cookie_edits_run_on_the_unpacked_release(tmp_path: Path) -> None:
    release = inspect_tarball(tarball(tmp_path, elixir_files()))
    root = unpack(tmp_path / "r.tar.gz", tmp_path / "opt" / release.install_name)
    edits = cookie_edits(release, f"{root}/")
    assert any(str(root / "bin/app") in e for e in edits)
    subprocess.run(["sh", "-ec", " && ".join(edits)], check=True, timeout=30)
    script = (root / "bin/app").read_text()
    assert "releases/COOKIE" not in script and "${RELEASE_COOKIE:+--cookie" in script
    assert not (root / "releases/COOKIE").exists()


def test_relx_cookie_edits_run_on_the_unpacked_release(tmp_path: Path) -> None:
    release = inspect_tarball(tarball(tmp_path, relx_files()))
    root = unpack(tmp_path / "r.tar.gz", tmp_path / "rel")
    subprocess.run(["sh", "-ec", " && ".join(cookie_edits(release, str(root)))], check=True)
    vm_args = (root / "releases/2.3.0/vm.args").read_text()
    assert "-setcookie" not in vm_args and "-sname app" not in vm_args
    assert "-args_file /tmp/beamfleet-name.args" in vm_args and "+C multi_time_warp" in vm_args


# -- the host's runtime -----------------------------------------------------------------------

FULL_PROBE = """glibc 2.36
debian 12.11
arch amd64
erlang-candidate 1:25.2.3+dfsg-1+deb12u1
erl-otp 25
"""


def test_parse_the_probe_output() -> None:
    assert HostRuntime.parse(FULL_PROBE) == HostRuntime(
        debian_version="12.11",
        glibc=(2, 36),
        erlang_otp_major=25,
        erlang_candidate_otp_major=25,
        arch="amd64",
        erlang_candidate="1:25.2.3+dfsg-1+deb12u1",
    )


def test_parse_missing_and_unreadable_lines() -> None:
    assert HostRuntime.parse("") == HostRuntime()
    runtime = HostRuntime.parse("glibc\ndebian trixie/sid\nerlang-candidate (none)\nerl-otp R16\n")
    assert runtime == HostRuntime(debian_version="trixie/sid")


@pytest.mark.parametrize(
    ("version", "major"),
    [
        ("1:25.2.3+dfsg-1+deb12u1", 25),
        ("1:27.3.4.1+dfsg-1", 27),
        ("26.2.5-1", 26),
        ("(none)", None),
        ("", None),
    ],
)
def test_otp_major_of_a_debian_erlang_version(version: str, major: int | None) -> None:
    assert debian_erlang_major(version) == major


def fake_tools(tmp_path: Path, with_erl: bool) -> dict[str, str]:
    """A PATH of stand-ins for the probed tools (and the few the probe needs to run)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    scripts = {
        "getconf": 'echo "glibc 2.41"',
        "dpkg": "echo arm64",
        "apt-cache": 'printf "erlang-base:\\n  Installed: (none)\\n'
        '  Candidate: 1:27.3.4.1+dfsg-1\\n  Version table:\\n"',
    }
    if with_erl:
        scripts["erl"] = 'echo "$@" > "$(dirname "$0")/erl-args"; printf 27'
    for name, body in scripts.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    for tool in ("sed", "cat", "dirname", "timeout"):
        (bin_dir / tool).symlink_to(
            subprocess.check_output(["sh", "-c", f"command -v {tool}"], text=True).strip()
        )
    return {"PATH": str(bin_dir)}


@pytest.mark.parametrize("with_erl", [True, False])
def test_the_probe_runs_under_sh(tmp_path: Path, with_erl: bool) -> None:
    env = fake_tools(tmp_path, with_erl)
    out = subprocess.run(
        ["/bin/sh", "-c", PROBE], env=env, capture_output=True, text=True, check=True, timeout=30
    ).stdout
    runtime = HostRuntime.parse(out)
    debian = Path("/etc/debian_version")
    assert runtime.debian_version == (debian.read_text().strip() if debian.exists() else "")
    assert (runtime.glibc, runtime.arch) == ((2, 41), "arm64")
    assert runtime.erlang_candidate == "1:27.3.4.1+dfsg-1"
    assert runtime.erlang_candidate_otp_major == 27
    assert runtime.erlang_otp_major == (27 if with_erl else None)
    if with_erl:
        assert "otp_release" in (tmp_path / "bin/erl-args").read_text()


# -- compatibility ----------------------------------------------------------------------------


def release_of(tmp_path: Path, files: dict[str, bytes | str]) -> HostRelease:
    return inspect_tarball(tarball(tmp_path, files))


def test_a_matching_host_has_no_problem(tmp_path: Path) -> None:
    runtime = HostRuntime.parse(FULL_PROBE)
    assert compatibility_problems(release_of(tmp_path, elixir_files()), runtime, "h1") == []


def test_bundled_erts_needing_a_newer_glibc_is_refused(tmp_path: Path) -> None:
    release = release_of(tmp_path, elixir_files())  # glibc 2.36
    runtime = HostRuntime(debian_version="11.9", glibc=(2, 31), arch="amd64")
    assert compatibility_problems(release, runtime, "host1") == [
        "the release's ERTS needs glibc 2.36, host1 has 2.31 (Debian 11.9): build the "
        "release on a system with glibc 2.31 or older (the host's Debian release or an older "
        "one), or build it without ERTS (include_erts: false) to run on the host's erlang-base"
    ]
    unknown = compatibility_problems(release, HostRuntime(arch="amd64"), "host1")
    assert len(unknown) == 1 and "host1's glibc version is unknown" in unknown[0]


def test_bundled_erts_of_another_architecture_is_refused(tmp_path: Path) -> None:
    release = release_of(tmp_path, relx_files())  # arm64, glibc 2.31
    problems = compatibility_problems(release, HostRuntime.parse(FULL_PROBE), "host2")
    assert problems == [
        "the release's ERTS is built for arm64, host2 is amd64: build the release on amd64, "
        "or without ERTS (include_erts: false)"
    ]


def test_bundled_erts_ignores_the_hosts_erlang(tmp_path: Path) -> None:
    runtime = HostRuntime(glibc=(2, 36), arch="amd64", erlang_otp_major=24)
    assert compatibility_problems(release_of(tmp_path, elixir_files()), runtime, "h") == []


def test_otp_mismatch_with_the_candidate_is_refused(tmp_path: Path) -> None:
    release = release_of(tmp_path, elixir_files(erts=False))  # OTP 27
    runtime = HostRuntime.parse(FULL_PROBE.replace("erl-otp 25\n", ""))
    assert compatibility_problems(release, runtime, "host1") == [
        "the release app 0.1.0 is built with OTP 27 (ERTS 15.2.7) and bundles no ERTS; "
        "host1 would install OTP 25 (erlang-base 1:25.2.3+dfsg-1+deb12u1): bundle ERTS "
        "(include_erts) or build with OTP 25"
    ]


def test_the_installed_erl_decides_over_the_candidate(tmp_path: Path) -> None:
    release = release_of(tmp_path, elixir_files(erts=False))  # OTP 27
    matching = HostRuntime(erlang_otp_major=27, erlang_candidate_otp_major=25)
    assert compatibility_problems(release, matching, "h") == []
    other = HostRuntime(erlang_otp_major=26, erlang_candidate_otp_major=27)
    (problem,) = compatibility_problems(release, other, "h")
    assert "h has OTP 26 installed" in problem and "build with OTP 26" in problem


def test_no_erl_and_no_candidate_is_refused(tmp_path: Path) -> None:
    release = release_of(tmp_path, elixir_files(erts=False))
    runtime = HostRuntime.parse("debian 13.1\nerlang-candidate (none)\n")
    (problem,) = compatibility_problems(release, runtime, "h")
    assert "h has no erl and apt offers no erlang-base (Debian 13.1)" in problem
    assert "erlang-base of OTP 27 installable" in problem
    candidate = HostRuntime(erlang_candidate_otp_major=27, erlang_candidate="1:27.3-1")
    assert compatibility_problems(release, candidate, "h") == []


# -- export from an image, through a stand-in docker ------------------------------------------

FAKE_DOCKER = """#!/bin/sh
echo "$*" >> "$FAKE_DOCKER_LOG"
case $1 in
  create) [ -n "$FAKE_CREATE_FAILS" ] && { echo "Error: No such image" >&2; exit 1; }
          echo cid123 ;;
  cp) [ -n "$FAKE_CP_FAILS" ] && { echo "Error: Could not find the file" >&2; exit 1; }
      cat "$FAKE_DOCKER_TAR" ;;
esac
"""


@pytest.fixture
def docker_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir()
    exe = bin_dir / "docker"
    exe.write_text(FAKE_DOCKER)
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    # As `docker cp CONTAINER:/app/. -` writes it: names under "./".
    stream = tmp_path / "stream.tar"
    source = tarball(tmp_path, elixir_files(), prefix="./")
    with tarfile.open(source) as src, tarfile.open(stream, "w") as out:
        for member in src:
            out.addfile(member, src.extractfile(member) if member.isreg() else None)
    log = tmp_path / "docker.log"
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setenv("FAKE_DOCKER_LOG", str(log))
    monkeypatch.setenv("FAKE_DOCKER_TAR", str(stream))
    return log


def test_export_repacks_caches_and_removes_the_container(tmp_path: Path, docker_log: Path) -> None:
    cache = tmp_path / "cache"
    path = export_from_image("sha256:abc123", "/app/", cache)
    assert path == cache / "abc123.tar.gz"
    assert docker_log.read_text().splitlines() == [
        "create --network none --entrypoint true sha256:abc123",
        "cp cid123:/app/. -",
        "rm --force cid123",
    ]
    with tarfile.open(path) as archive:
        names = archive.getnames()
    assert "bin/app" in names and "releases/start_erl.data" in names
    assert not any(n.startswith(".") for n in names)
    assert inspect_tarball(path).name == "app"
    assert list(cache.iterdir()) == [path]
    docker_log.unlink()
    assert export_from_image("sha256:abc123", "/app", cache) == path
    assert not docker_log.exists()  # cached: no docker call


def test_export_failures(tmp_path: Path, docker_log: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("FAKE_CP_FAILS", "1")
    with pytest.raises(ReleaseExportError, match=r"cannot export /srv/x .*Could not find"):
        export_from_image("sha256:abc", "/srv/x", cache)
    assert docker_log.read_text().splitlines()[-1] == "rm --force cid123"
    assert list(cache.iterdir()) == []  # no partial archive left
    monkeypatch.setenv("FAKE_CREATE_FAILS", "1")
    with pytest.raises(ReleaseExportError, match=r"cannot create a container.*No such image"):
        export_from_image("sha256:abc", "/app", cache)

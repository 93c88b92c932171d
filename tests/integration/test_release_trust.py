"""What a release tarball may make root do in host mode: nothing but unpack it.

Each hostile tarball is built here and given to :func:`inspect_tarball` (the controller
refuses it, naming the member or value, before any host is touched); the host side's own
shell (the unpack, the mode fix, the port mapper's copy) is run for real, as root, in a
scratch directory standing for a host's ``/opt/beamfleet``, on what the inspection lets
through and on what it would have refused, so that the host is safe on its own too.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import stat
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from beamfleet.controller.deploys.host_runners import RELEASE_MODES, epmd_copy, release_unpack
from beamfleet.controller.host_release import (
    CorruptTarballError,
    HostRelease,
    UnsafeReleaseError,
    inspect_tarball,
)
from beamfleet.controller.operations.hosts import space_check, unpack_script
from tests.support.releases import Member, elixir_release, replaced, write_release

ERTS_EPMD = "erts-15.2.7/bin/epmd"


def sh(script: str, **options: object) -> subprocess.CompletedProcess[str]:
    """``script`` run by ``sh`` as this test's user (root), its output captured."""
    return subprocess.run(  # type: ignore[call-overload, no-any-return]
        ["sh", "-c", script], check=False, capture_output=True, text=True, timeout=60, **options
    )


def release(tmp_path: Path, members: list[Member], name: str = "r.tar.gz") -> Path:
    return write_release(tmp_path / name, members, mode="w:gz" if name.endswith("gz") else "w")


def unpack_as_root(
    archive: Path, rel: HostRelease, directory: Path
) -> subprocess.CompletedProcess[str]:
    """The host's unpack of ``archive`` into ``directory`` (the upload copied first), as the
    deploy sends it: tar, then the modes fixed, then the move into place."""
    upload = Path(f"{directory}.upload")
    upload.parent.mkdir(parents=True, exist_ok=True)
    upload.write_bytes(archive.read_bytes())
    script = unpack_script(str(upload), str(directory), release_unpack(rel), (RELEASE_MODES,))
    return sh(script)


# -- names and versions ------------------------------------------------------------------------


def test_a_version_that_climbs_out_of_releases_is_refused(tmp_path: Path) -> None:
    hostile = replaced(
        elixir_release(), "releases/start_erl.data", data=b"15.2.7 ../../../../../victim/x\n"
    )
    with pytest.raises(UnsafeReleaseError, match=r"release version in releases/start_erl\.data"):
        inspect_tarball(release(tmp_path, hostile))


@pytest.mark.parametrize(
    "start_erl",
    ["15.2.7 0.1.0$(touch${IFS}PWNED)", "15.2;touch${IFS}PWNED 0.1.0", "15.2.7 0.1.0`id`"],
)
def test_a_version_carrying_shell_is_refused(tmp_path: Path, start_erl: str) -> None:
    hostile = replaced(elixir_release(), "releases/start_erl.data", data=start_erl.encode())
    with pytest.raises(UnsafeReleaseError, match=r"version in releases/start_erl\.data is"):
        inspect_tarball(release(tmp_path, hostile))


def test_the_port_mapper_copy_quotes_what_it_is_given(tmp_path: Path) -> None:
    """Even a version the inspection would refuse reaches the host's shell as one word."""
    rel = inspect_tarball(release(tmp_path, elixir_release()))
    hostile = dataclasses.replace(rel, erts_version="15.2;touch${IFS}PWNED")
    run = sh(epmd_copy(hostile, str(tmp_path / "target")), cwd=tmp_path)
    assert run.returncode == 1 and "not a regular file" in run.stderr
    assert not (tmp_path / "PWNED").exists()


def test_a_start_script_name_with_a_unit_line_in_it_is_refused(tmp_path: Path) -> None:
    name = "app\nExecStartPre=+sh -c id"
    members = elixir_release(name="app")
    hostile = replaced(members, "bin/app", name=f"bin/{name}")
    with pytest.raises(UnsafeReleaseError, match=r"control character"):
        inspect_tarball(release(tmp_path, hostile))


def test_a_start_script_name_outside_the_pattern_is_refused(tmp_path: Path) -> None:
    hostile = replaced(elixir_release(), "bin/app", name="bin/app;id")
    with pytest.raises(UnsafeReleaseError, match=r"start script's name \(bin/<name>\) is 'app;id'"):
        inspect_tarball(release(tmp_path, hostile))


# -- members ------------------------------------------------------------------------------------


def test_a_port_mapper_that_is_a_link_is_refused_and_never_copied(tmp_path: Path) -> None:
    secret = tmp_path / "root-only"
    secret.write_text("root's secret\n")
    secret.chmod(0o600)
    hostile = replaced(
        elixir_release(), ERTS_EPMD, kind=tarfile.SYMTYPE, data=b"", link="../../bin/app"
    )
    with pytest.raises(UnsafeReleaseError, match=r"erts-15\.2\.7/bin/epmd.*not a regular file"):
        inspect_tarball(release(tmp_path, hostile))
    # The host's copy refuses a link on its own (here, one to a root-only file).
    target = tmp_path / "target"
    (target / "erts-15.2.7/bin").mkdir(parents=True)
    (target / ERTS_EPMD).symlink_to(secret)
    rel = inspect_tarball(release(tmp_path, elixir_release(), name="ok.tar.gz"))
    bin_dir = tmp_path / "bin"
    script = epmd_copy(rel, str(target)).replace("/opt/beamfleet/bin", str(bin_dir))
    bin_dir.mkdir()
    run = sh(script)
    assert run.returncode == 1 and "not a regular file" in run.stderr
    assert list(bin_dir.iterdir()) == []


def test_a_setuid_member_is_refused_and_stripped_on_the_host(tmp_path: Path) -> None:
    hostile = [*elixir_release(), Member("bin/helper", b"#!/bin/sh\n", mode=0o4755)]
    path = release(tmp_path, hostile)
    with pytest.raises(UnsafeReleaseError, match=r"'bin/helper' has the setuid or setgid bit"):
        inspect_tarball(path)
    rel = inspect_tarball(release(tmp_path, elixir_release(), name="ok.tar.gz"))
    directory = tmp_path / "releases" / rel.install_name
    run = unpack_as_root(path, rel, directory)
    assert run.returncode == 0, run.stderr
    modes = {p.name: p.stat().st_mode for p in directory.rglob("*") if not p.is_symlink()}
    assert modes["helper"] & (stat.S_ISUID | stat.S_ISGID) == 0
    assert all(m & (stat.S_IWGRP | stat.S_IWOTH) == 0 for m in modes.values())
    assert all(p.stat().st_uid == 0 for p in directory.rglob("*"))


@pytest.mark.parametrize(
    ("extra", "why"),
    [
        (Member("lib/x", kind=tarfile.SYMTYPE, link="../../../etc"), "outside the release"),
        (Member("lib/x", kind=tarfile.SYMTYPE, link="/etc/shadow"), "absolute path"),
        (Member("lib/x", kind=tarfile.LNKTYPE, link="../etc/shadow"), r"`\.\.` in its name"),
        (Member("../x", b"x"), r"`\.\.` in its name"),
        (Member("/etc/cron.d/x", b"x"), "absolute name"),
        (Member("dev/null", kind=tarfile.CHRTYPE), "device, FIFO"),
        (Member("lib/fifo", kind=tarfile.FIFOTYPE), "device, FIFO"),
    ],
)
def test_members_root_must_not_unpack_are_refused(tmp_path: Path, extra: Member, why: str) -> None:
    with pytest.raises(UnsafeReleaseError, match=why):
        inspect_tarball(release(tmp_path, [*elixir_release(), extra]))


def test_a_link_through_another_link_is_refused(tmp_path: Path) -> None:
    """``deep/up -> ..`` points at the release root, so ``lib/esc -> ../deep/up/..`` would
    leave it, although the text ``lib/../deep/up/..`` stays inside."""
    links = [
        Member("deep", kind=tarfile.DIRTYPE, mode=0o755),
        Member("deep/up", kind=tarfile.SYMTYPE, link=".."),
        Member("lib", kind=tarfile.DIRTYPE, mode=0o755),
        Member("lib/esc", kind=tarfile.SYMTYPE, link="../deep/up/.."),
    ]
    with pytest.raises(UnsafeReleaseError, match=r"'lib/esc' .*through the link 'deep/up'"):
        inspect_tarball(release(tmp_path, [*elixir_release(), *links]))


def test_a_member_below_a_link_is_refused(tmp_path: Path) -> None:
    members = [
        Member("lib", kind=tarfile.SYMTYPE, link="bin"),
        Member("lib/app-0.1.0.app", b"x"),
    ]
    with pytest.raises(UnsafeReleaseError, match=r"'lib/app-0.1.0.app' is below the link 'lib'"):
        inspect_tarball(release(tmp_path, [*elixir_release(), *members]))


def test_links_inside_the_release_are_kept(tmp_path: Path) -> None:
    members = [
        Member("lib", kind=tarfile.DIRTYPE, mode=0o755),
        Member("lib/current", kind=tarfile.SYMTYPE, link="../releases"),
        Member("bin/app-0.1.0", kind=tarfile.LNKTYPE, link="bin/app"),
    ]
    path = release(tmp_path, [*elixir_release(), *members])
    rel = inspect_tarball(path)
    directory = tmp_path / "releases" / rel.install_name
    assert unpack_as_root(path, rel, directory).returncode == 0
    assert os.readlink(directory / "lib/current") == "../releases"


def test_the_start_script_must_be_a_regular_file(tmp_path: Path) -> None:
    """root's ``sed -i`` on a link would copy the file it points at into the release."""
    hostile = replaced(
        elixir_release(), "bin/app", kind=tarfile.SYMTYPE, data=b"", link="../releases/COOKIE"
    )
    with pytest.raises(UnsafeReleaseError, match=r"'bin/app' is missing or not a regular file"):
        inspect_tarball(release(tmp_path, hostile))


def test_other_directories_beside_the_release_root_are_refused(tmp_path: Path) -> None:
    """Unpacked with --strip-components=1, ``other/bin/app`` would replace the start script."""
    members = [dataclasses.replace(m, name=f"app/{m.name}") for m in elixir_release()]
    members.append(Member("other/bin/app", b"#!/bin/sh\nexec id\n"))
    with pytest.raises(UnsafeReleaseError, match=r"under app/, and the archive also holds other"):
        inspect_tarball(release(tmp_path, [Member("app", kind=tarfile.DIRTYPE), *members]))


# -- limits -------------------------------------------------------------------------------------


def test_more_members_than_the_cap_are_refused_early(tmp_path: Path) -> None:
    many = [Member(f"lib/f{i}", b"") for i in range(50_001)]
    path = release(tmp_path, [*elixir_release(), Member("lib", kind=tarfile.DIRTYPE), *many])
    started = time.monotonic()
    with pytest.raises(UnsafeReleaseError, match=r"more than 50000 members"):
        inspect_tarball(path)
    assert inspect_tarball(path, max_members=60_000).name == "app"  # the cap is a setting
    # reported for the record: the refusal reads no further than the cap
    print(f"refused in {time.monotonic() - started:.2f} s")


def test_a_release_larger_than_the_cap_is_refused(tmp_path: Path) -> None:
    big = Member("lib/big", bytes(3 << 20))
    path = release(tmp_path, [*elixir_release(), Member("lib", kind=tarfile.DIRTYPE), big])
    with pytest.raises(UnsafeReleaseError, match=r"unpacks to more than 2 MiB \(at 'lib/big'\)"):
        inspect_tarball(path, max_bytes=2 << 20)
    assert inspect_tarball(path).unpacked_bytes > 3 << 20


def test_the_free_space_check_says_what_is_needed_and_free(tmp_path: Path) -> None:
    directory = tmp_path / "releases" / "0.1.0-abc"
    ok = sh(space_check(str(directory), 1 << 20))
    assert ok.returncode == 0, ok.stderr
    too_much = sh(space_check(str(directory), 1 << 60))
    assert too_much.returncode == 1
    assert "KiB needed" in too_much.stderr and "KiB free" in too_much.stderr


# -- compression and the unpack's cleanup ---------------------------------------------------------


def test_compressions_the_hosts_do_not_unpack_are_refused(tmp_path: Path) -> None:
    path = release(tmp_path, elixir_release(), name="r.tar.xz")
    path = write_release(path, elixir_release(), mode="w:xz")
    with pytest.raises(CorruptTarballError, match=r"compressed with xz.*\| gzip > r\.tar\.gz"):
        inspect_tarball(path)


def test_a_plain_tar_is_unpacked_without_gzip(tmp_path: Path) -> None:
    path = release(tmp_path, elixir_release(), name="r.tar")
    rel = inspect_tarball(path)
    assert (rel.compressed, rel.tar_options) == (False, "")
    directory = tmp_path / "releases" / rel.install_name
    run = unpack_as_root(path, rel, directory)
    assert run.returncode == 0, run.stderr
    assert (directory / "bin/app").is_file()


def test_a_failed_unpack_leaves_neither_the_upload_nor_a_half_tree(tmp_path: Path) -> None:
    good = release(tmp_path, elixir_release())
    rel = inspect_tarball(good)
    truncated = tmp_path / "cut.tar.gz"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    directory = tmp_path / "releases" / rel.install_name
    run = unpack_as_root(truncated, rel, directory)
    assert run.returncode != 0
    assert sorted(p.name for p in directory.parent.iterdir()) == []


def test_an_interrupted_unpack_leaves_nothing_behind(tmp_path: Path) -> None:
    """A lost SSH connection hangs the session up: the trap still cleans up."""
    directory = tmp_path / "releases" / "0.1.0-abc"
    upload = Path(f"{directory}.upload")
    upload.parent.mkdir(parents=True)
    upload.write_bytes(b"holds releases/COOKIE")
    started = tmp_path / "started"
    # the "unpack" marks that it runs, then blocks until it is hung up
    script = unpack_script(str(upload), str(directory), f'touch {started}; cat > /dev/null')
    proc = subprocess.Popen(
        ["sh", "-c", script], stdin=subprocess.PIPE, start_new_session=True
    )
    deadline = time.monotonic() + 30
    while not started.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    assert started.exists() and Path(f"{directory}.tmp").is_dir()
    os.killpg(proc.pid, signal.SIGHUP)
    assert proc.wait(timeout=30) != 0
    assert sorted(p.name for p in directory.parent.iterdir()) == []

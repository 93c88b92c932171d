"""Node names inside a network namespace this test creates, then real nodes started with them.

Namespace: veth pair ``bf0``/``bf1`` (both ends inside), addresses 10.230.1.2/24 and
10.230.2.2/24 and fd00:230::2/64 on bf0, 10.230.3.2/24 on bf1. Every form (Python CLI,
dash, busybox) and both address readers (``ip``, ``/proc``) must agree. Then real use:

- plain ``erl`` (Debian OTP 25) started with the ``erl-flags`` output: ``node()`` is the
  name (IPv4, and IPv6 with ``-proto_dist inet6_tcp``);
- a real Elixir release (``mix release`` of an empty project, built here) started by the
  shim's ``--exec`` mode (``bin/demo daemon``), then queried with ``bin/demo rpc`` in a
  shell that loaded the ``--format env`` output (``set -a; eval ...``) — the release
  script turns ``RELEASE_DISTRIBUTION``/``RELEASE_NODE`` into ``--name``/``--sname``.

A private EPMD runs in the namespace; everything started in it is killed and the
namespace deleted at the end, also on failure.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_naming_cli import FORMS, command

NS = f"bfnm230-{os.getpid()}"
EPMD_PORT = 14369
ERL = shutil.which("erl") or "/usr/bin/erl"
EPMD = shutil.which("epmd") or "/usr/bin/epmd"
IP = shutil.which("ip") or "/usr/sbin/ip"  # absolute: tests may pass a PATH without it


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=60, check=check)


def in_ns(args: list[str], env: dict[str, str] | None = None,
          timeout: float = 60) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("BEAMFLEET_", "RELEASE_", "ERL_"))}
    base["ERL_EPMD_PORT"] = str(EPMD_PORT)
    base.update(env or {})
    return subprocess.run([IP, "netns", "exec", NS, *args], env=base, capture_output=True,
                          text=True, timeout=timeout, check=False)


def wait_for(predicate, what: str, deadline_s: float = 30.0, every: float = 0.2):
    end = time.monotonic() + deadline_s
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {deadline_s} s waiting for {what}")
        time.sleep(every)


def namespace_pids() -> list[int]:
    return [int(p) for p in sh("ip", "netns", "pids", NS, check=False).stdout.split()]


def kill_namespace_processes() -> None:
    """Stop what this test started in its own namespace (by pid): TERM, then KILL."""
    for signal_number in (15, 9):
        for pid in namespace_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal_number)
        try:
            wait_for(lambda: not namespace_pids(), "namespace processes to exit", 10)
            return
        except AssertionError:
            continue


@pytest.fixture(scope="module")
def netns() -> Iterator[str]:
    sh("ip", "netns", "add", NS)
    epmd: subprocess.Popen[bytes] | None = None
    try:
        for args in (
            ["link", "set", "lo", "up"],
            ["link", "add", "bf0", "type", "veth", "peer", "name", "bf1"],
            ["link", "set", "bf0", "up"],
            ["link", "set", "bf1", "up"],
            ["addr", "add", "10.230.1.2/24", "dev", "bf0"],
            ["addr", "add", "10.230.2.2/24", "dev", "bf0"],
            ["addr", "add", "fd00:230::2/64", "dev", "bf0", "nodad"],
            ["addr", "add", "10.230.3.2/24", "dev", "bf1"],
        ):
            sh("ip", "-n", NS, *args)
        epmd = subprocess.Popen(["ip", "netns", "exec", NS, EPMD, "-port", str(EPMD_PORT)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: in_ns([EPMD, "-port", str(EPMD_PORT), "-names"]).returncode == 0,
                 "the namespace's EPMD")
        yield NS
    finally:
        kill_namespace_processes()
        if epmd is not None:
            epmd.wait(timeout=10)
        sh("ip", "netns", "del", NS, check=False)


AMBIGUOUS = (
    "nodename: ambiguous: 4 candidate addresses with no filter: 10.230.1.2/24 on bf0, "
    "10.230.2.2/24 on bf0, 10.230.3.2/24 on bf1, fd00:230::2/64 on bf0; add --cidr "
    "10.230.1.0/24 or --cidr 10.230.2.0/24 or --cidr 10.230.3.0/24 or --cidr fd00:230::/64 "
    "(or --interface) to choose one\n"
)
SELECTIONS = [
    ([], 3, "", AMBIGUOUS),
    (["--cidr", "10.230.2.0/24"], 0, "app@10.230.2.2\n", ""),
    (["--cidr", "10.230.9.0/24", "--cidr", "10.230.1.0/24"], 0, "app@10.230.1.2\n", ""),
    (["--interface", "bf1"], 0, "app@10.230.3.2\n", ""),
    (["--cidr", "fd00:230::/64", "--format", "erl-flags"], 0,
     "-name app@fd00:230::2 -proto_dist inet6_tcp\n", ""),
    (["--cidr", "10.230.0.0/16"], 3, "",
     "nodename: ambiguous: 3 candidate addresses with --cidr 10.230.0.0/16: 10.230.1.2/24 on "
     "bf0, 10.230.2.2/24 on bf0, 10.230.3.2/24 on bf1; add --cidr 10.230.1.0/24 or --cidr "
     "10.230.2.0/24 or --cidr 10.230.3.0/24 (or --interface) to choose one\n"),
    (["--cidr", "10.230.9.0/24", "--interface", "bf0"], 3, "",
     "nodename: no address matches --cidr 10.230.9.0/24 --interface bf0; addresses here: "
     "10.230.1.2/24 on bf0, 10.230.2.2/24 on bf0, 10.230.3.2/24 on bf1, fd00:230::2/64 on "
     "bf0\n"),
]


@pytest.mark.parametrize("method", ["ip", "proc"])
@pytest.mark.parametrize("form", FORMS)
def test_selection_in_namespace(netns: str, form: str, method: str) -> None:
    for flags, code, out, err in SELECTIONS:
        r = in_ns([*command(form), "--basename", "app", *flags], {"BEAMFLEET_ADDRESSES": method})
        assert (r.returncode, r.stdout, r.stderr) == (code, out, err), flags


@pytest.mark.parametrize(("form", "cidr", "expected"), [
    ("dash", "10.230.1.0/24", "app@10.230.1.2"),
    ("python", "fd00:230::/64", "app@fd00:230::2"),
    ("busybox", "fd00:230::/64", "app@fd00:230::2"),
])
def test_real_erl_started_with_erl_flags(netns: str, tmp_path: Path, form: str, cidr: str,
                                         expected: str) -> None:
    flags = in_ns([*command(form), "--basename", "app", "--cidr", cidr, "--format", "erl-flags"])
    assert flags.returncode == 0, flags.stderr
    # HOME holds the cookie erl creates (0400), never a command-line argument
    r = in_ns([ERL, "-noshell", *shlex.split(flags.stdout),
               "-eval", 'io:format("~s", [node()]), halt().'], {"HOME": str(tmp_path)},
              timeout=90)
    assert (r.returncode, r.stdout) == (0, expected), r.stderr


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real, empty Elixir release (mix release; no dependencies, works offline)."""
    root = tmp_path_factory.mktemp("release")
    env = {**os.environ, "MIX_HOME": str(root / ".mix"), "HEX_OFFLINE": "1", "MIX_ENV": "prod"}
    subprocess.run(["mix", "new", "demo"], cwd=root, env=env, check=True, capture_output=True,
                   timeout=120)
    subprocess.run(["mix", "release", "--quiet"], cwd=root / "demo", env=env, check=True,
                   capture_output=True, timeout=300)
    return root / "demo" / "_build" / "prod" / "rel" / "demo"


@pytest.mark.parametrize(("cidr", "expected"), [
    ("10.230.2.0/24", "demo@10.230.2.2"),
    ("fd00:230::/64", "demo@fd00:230::2"),
])
def test_real_elixir_release_with_exec_and_env(netns: str, release: Path, tmp_path: Path,
                                               cidr: str, expected: str) -> None:
    home = {"HOME": str(tmp_path)}
    bin_demo = str(release / "bin" / "demo")
    # the entrypoint way: the shim computes, exports RELEASE_* (and ERL_AFLAGS), execs
    started = in_ns(["dash", *command("dash")[1:], "--basename", "demo", "--cidr", cidr,
                     "--exec", "--", bin_demo, "daemon"], home)
    assert started.returncode == 0, started.stderr
    py = " ".join(shlex.quote(a) for a in command("python"))
    script = (f'set -a; eval "$({py} --basename demo --cidr {cidr} --format env)"; set +a; '
              f"exec {shlex.quote(bin_demo)} \"$@\"")

    def rpc(expr: str) -> subprocess.CompletedProcess[str]:
        return in_ns(["sh", "-c", script, "sh", "rpc", expr], home, timeout=60)

    answer = wait_for(lambda: (r := rpc("IO.write(node())")).returncode == 0 and r,
                      "the release to answer rpc", 90, 0.5)
    assert answer.stdout == expected
    assert in_ns(["sh", "-c", script, "sh", "stop"], home).returncode == 0
    wait_for(lambda: rpc("IO.write(node())").returncode != 0, "the release to stop", 60, 0.5)


SLIM_DEBIAN_TOOLS = {  # what debian:*-slim has that the shim uses (no iproute2, curl, wget)
    "dash": "dash", "awk": "mawk", "sed": "sed", "sort": "sort", "tr": "tr", "cat": "cat",
    "mktemp": "mktemp", "rm": "rm", "hostname": "hostname", "uname": "uname",
}
BUSYBOX_APPLETS = ("sh", "awk", "sed", "sort", "tr", "cat", "mktemp", "rm", "hostname", "uname",
                   "timeout", "wget")


def toolbox(root: Path, kind: str) -> tuple[str, str]:
    """A PATH holding only a slim image's tools; returns (PATH, shell)."""
    root.mkdir()
    if kind == "busybox":
        for applet in BUSYBOX_APPLETS:
            (root / applet).symlink_to(shutil.which("busybox") or "/bin/busybox")
        return str(root), str(root / "sh")
    for name, real in SLIM_DEBIAN_TOOLS.items():
        found = shutil.which(real)
        assert found, f"{real} is needed on the test machine"
        (root / name).symlink_to(found)
    return str(root), str(root / "dash")


@pytest.mark.parametrize("kind", ["slim-debian", "busybox-only"])
def test_shim_needs_only_a_slim_image_toolset(netns: str, tmp_path: Path, kind: str) -> None:
    path, shell = toolbox(tmp_path / "bin", "busybox" if kind == "busybox-only" else "debian")
    shim = command("dash")[1]
    # no `ip` on PATH: the /proc reader is chosen on its own
    r = in_ns([shell, shim, "--basename", "app"], {"PATH": path})
    assert (r.returncode, r.stderr) == (3, AMBIGUOUS)
    r = in_ns([shell, shim, "--basename", "app", "--cidr", "fd00:230::/64", "--format", "env"],
              {"PATH": path})
    assert (r.returncode, r.stdout) == (0, "RELEASE_DISTRIBUTION=name\nRELEASE_NODE="
                                           "app@fd00:230::2\nERL_AFLAGS='-proto_dist inet6_tcp'\n")
    if kind == "slim-debian":
        # a metadata provider without any HTTP client: a clear error, not a crash
        r = in_ns([shell, shim, "--basename", "app", "--provider", "gcp"], {"PATH": path})
        assert (r.returncode, r.stderr) == (4, "nodename: gcp metadata: neither curl nor wget is "
                                               "installed (one is needed for --provider gcp)\n")

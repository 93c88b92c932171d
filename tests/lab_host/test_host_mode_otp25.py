"""Host mode on Debian 12 hosts: Debian's Erlang/OTP 25, short node names, no DNS.

A release built for OTP 27 (the demo as it ships, built on Debian 13) is refused while
pyinfra plans, naming what each host has, and nothing is changed. The same demo built on
Debian 12 (tests/lab_host/demo-bookworm, from a directory, as ``app_build``) then runs on
the hosts' erlang-base, its nodes named ``demo@<hostname>`` (``-sname``), the agents
reading their peers from the inventory's hosts (a file).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.lab.conftest import ROOT, LabHandle, PyinfraRun, lab_fixture

pytestmark = pytest.mark.lab

lab = lab_fixture("thost25", hosts=3, managers=1, suite="bookworm")

SHORT = ("--data", "cluster_mode=host", "--data", "node_names=short", "--data", "discovery_dns=")


@pytest.fixture(scope="module")
def bookworm_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A build directory: the demo's sources with the Debian 12 Dockerfile."""
    build = tmp_path_factory.mktemp("demo-bookworm")
    shutil.copy(ROOT / "examples" / "demo" / "mix.exs", build)
    shutil.copytree(ROOT / "examples" / "demo" / "lib", build / "lib")
    shutil.copy(Path(__file__).parent / "demo-bookworm" / "Dockerfile", build)
    return build


def deploy(lab: LabHandle, *args: str) -> PyinfraRun:
    return lab.pyinfra("deploys/cluster.py", *SHORT, *args)


def test_a_release_for_another_otp_is_refused_before_anything_changes(lab: LabHandle) -> None:
    run = deploy(lab)  # app_build: examples/demo, built on Debian 13 (OTP 27), no ERTS
    assert not run.ok
    assert "host mode needs fixing before anything is changed" in run.output
    for host in ("host1", "host2", "host3"):
        assert f"{host}" in run.output
    assert "OTP 27" in run.output and "25" in run.output, run.output
    for h in lab.hosts():
        assert lab.ssh_run(h.name, "test -e /opt/beamfleet").returncode == 1


def test_short_names_on_the_distributions_erlang(lab: LabHandle, bookworm_demo: Path) -> None:
    run = deploy(lab, "--data", f"app_build={bookworm_demo}")
    assert run.ok, run.output
    report = lab.pyinfra("deploys/check.py", *SHORT, "--data", "check_timeout=60")
    assert report.ok, report.output
    assert "3 desired, 3 running" in report.output
    for h in lab.hosts():
        assert f"demo@{h.name} " in report.output
        assert lab.ssh(h.name, "dpkg-query -W -f '${Version}' erlang-base").startswith("1:25.")
        # the node runs on Debian's ERTS, named by its short host name
        args = lab.ssh(h.name, "ps -o args= -u bf-demo")
        assert "/usr/lib/erlang/erts-13." in args and f"-sname demo@{h.name}" in args, args
        # Debian's own port mapper (every interface) is masked; ours listens on the lab address
        assert lab.ssh(h.name, "systemctl is-enabled epmd.socket || true").strip() == "masked"
        listening = lab.ssh(h.name, "ss -ltnH | awk '{print $4}'").split()
        assert sorted(a for a in listening if a.endswith(":4369")) == sorted(
            [f"{h.ip}:4369", "127.0.0.1:4369"]
        )


def test_unchanged_rerun_changes_nothing(lab: LabHandle, bookworm_demo: Path) -> None:
    run = deploy(lab, "--data", f"app_build={bookworm_demo}")
    assert run.ok, run.output
    assert run.changed_ops == {}


def test_the_image_on_the_host_network_replaces_the_release(lab: LabHandle) -> None:
    """`host_runner: docker`: the demo's image (Debian 13, OTP 27) run by Docker on each
    host's network; the release nodes (OTP 25) are replaced one host at a time."""
    run = deploy(lab, "--data", "host_runner=docker")
    assert run.ok, run.output
    report = lab.pyinfra("deploys/check.py", *SHORT, "--data", "check_timeout=60")
    assert report.ok, report.output
    assert "3 desired, 3 running" in report.output
    for h in lab.hosts():
        mode = lab.ssh(h.name, "docker inspect -f '{{.HostConfig.NetworkMode}}' beamfleet-demo")
        assert mode.strip() == "host"
        # the image's own runtime, as the node's user, named by the host's name
        args = lab.ssh(h.name, "ps -o args= -u bf-demo")
        assert "erts-15." in args and f"-sname demo@{h.name}" in args, args
    again = deploy(lab, "--data", "host_runner=docker")
    assert again.ok, again.output
    assert again.changed_ops == {}

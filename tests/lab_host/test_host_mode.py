"""Host mode end to end on Debian 13 lab hosts: the release under systemd, no Docker.

One lab, in order: a cold deploy on 3 hosts of a standard ERTS-bundled `mix release`
(the image tests/lab/images/mix, its release exported), check, a 4th host added, an
unchanged re-run, a roll to a new version watched from outside, a release that cannot
boot rolled back, a host removed, a maintenance reboot, the same release built without ERTS
(its port mapper becomes Debian's) rolled watched from outside, the firewall (back to the
bundled ERTS), TLS distribution. The lab's inventory serves both modes; this module
runs with ``--data cluster_mode=host``. Peers come from the lab's DNS server.
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import json
import re
import socket
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from beamfleet.controller.deploys import images
from beamfleet.controller.host_files import EPMD_UNIT
from beamfleet.controller.host_release import export_from_image, inspect_tarball
from beamfleet.runtime.erlang_dist.tls import TlsConfig
from beamfleet.runtime.mesh import look
from tests.lab.conftest import ROOT, LabHandle, PyinfraRun, lab_fixture, wait_until
from tests.lab.test_release_images import build_image
from tests.support.releases import release_variant

pytestmark = pytest.mark.lab

lab = lab_fixture("thost", hosts=3, managers=1, suite="trixie")

APP = "demo"
COOKIE = f"/etc/beamfleet/{APP}/cookie"
CURRENT = f"/opt/beamfleet/apps/{APP}/current"
NODE_UNIT = f"beamfleet-{APP}.service"
HOST_MODE = ("--data", "cluster_mode=host")


@pytest.fixture(scope="module")
def releases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """v1: the ERTS-bundled release of the standard `mix release` image; v2: the same
    with one file changed; crash: one that exits at boot."""
    tag = build_image("mix")
    image_id = _docker_id(tag)
    out = tmp_path_factory.mktemp("releases")
    v1 = export_from_image(image_id, "/app", out)
    return {
        "v1": v1,
        "v2": release_variant(v1, out / "v2.tar.gz", "export DEMO_RELEASE_MARK=2"),
        "crash": release_variant(v1, out / "crash.tar.gz", "echo cannot boot >&2; exit 3"),
    }


@pytest.fixture(scope="module")
def noerts_release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same `mix release` built with include_erts: false (tests/lab/images/mix-noerts):
    it runs on the hosts' Erlang, Debian 13's erlang-base, whose OTP (27, ERTS 15.2.7) is
    the one the bundled release was built with."""
    tag = build_image("mix-noerts")
    return export_from_image(_docker_id(tag), "/srv/imgmix", tmp_path_factory.mktemp("noerts"))


def _docker_id(tag: str) -> str:
    return subprocess.run(
        ["docker", "image", "inspect", "-f", "{{.Id}}", tag],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip


def deploy(lab: LabHandle, release: Path, *args: str) -> PyinfraRun:
    return lab.pyinfra("deploys/cluster.py", *HOST_MODE, "--data", f"app_release={release}", *args)


def check(lab: LabHandle) -> PyinfraRun:
    return lab.pyinfra("deploys/check.py", *HOST_MODE, "--data", "check_timeout=60")


def host_names(lab: LabHandle) -> list[str]:
    return [h.name for h in lab.hosts()]


def nodes(lab: LabHandle) -> list[str]:
    return [f"{APP}@{h.ip}" for h in lab.hosts()]


def node_pid(lab: LabHandle, host: str) -> str:
    return lab.ssh(host, f"systemctl show -p MainPID --value {NODE_UNIT}").strip()


def current(lab: LabHandle, host: str) -> str:
    return lab.ssh(host, f"readlink {CURRENT}").strip().rsplit("/", 1)[-1]


def assert_mesh_table(run: PyinfraRun, count: int) -> None:
    assert run.ok, run.output
    assert f"{count} desired, {count} running" in run.output
    assert "complete mesh" in run.output


def test_cold_deploy_meshes_three_hosts(lab: LabHandle, releases: dict[str, Path]) -> None:
    run = deploy(lab, releases["v1"])
    assert run.ok, run.output
    assert_mesh_table(check(lab), 3)
    release = inspect_tarball(releases["v1"])
    for host in host_names(lab):
        assert current(lab, host) == release.install_name
        # no Erlang from Debian: the release brings its ERTS (and the port mapper's copy)
        assert lab.ssh_run(host, "dpkg -s erlang-base").returncode != 0
        assert lab.ssh(host, f"systemctl is-active {NODE_UNIT} beamfleet-epmd.service").split() == [
            "active",
            "active",
        ]


def test_the_cookie_is_private_and_never_shown(lab: LabHandle) -> None:
    cookie = lab.ssh("host1", f"cat {COOKIE}").strip()
    assert len(cookie) == 48
    for host in host_names(lab):
        # one cookie for the cluster, a file only the node's user reads
        assert lab.ssh(host, f"cat {COOKIE}").strip() == cookie
        assert lab.ssh(host, f"stat -c '%a %U' {COOKIE}").strip() == "400 bf-demo"
        shown = lab.ssh(
            host,
            "ps -eo args; journalctl --no-pager -o cat; cat /etc/systemd/system/beamfleet-*; "
            f"cat /etc/beamfleet/{APP}/node.env /etc/beamfleet/{APP}/agent.toml; "
            "cat /proc/*/environ 2>/dev/null | tr '\\0' '\\n'",
        )
        assert cookie not in shown, f"the cookie shows on {host}"
    for run in lab.runs:
        assert cookie not in run.output


def test_port_mapper_and_distribution_listen_on_the_cluster_address_only(lab: LabHandle) -> None:
    for h in lab.hosts():
        listening = lab.ssh(h.name, "ss -ltnH | awk '{print $4}'").split()
        epmd = sorted(a for a in listening if a.endswith(":4369"))
        assert epmd == sorted([f"{h.ip}:4369", "127.0.0.1:4369"]), epmd
        dist = [a for a in listening if re.fullmatch(r".*:91(0\d)", a)]
        assert dist == [f"{h.ip}:{dist[0].rsplit(':', 1)[1]}"], listening


def test_an_added_host_joins(lab: LabHandle, releases: dict[str, Path]) -> None:
    lab.add_host("workers")
    start = time.monotonic()
    run = deploy(lab, releases["v1"])
    assert run.ok, run.output
    assert_mesh_table(check(lab), 4)
    print(f"host added to a complete mesh in {time.monotonic() - start:.1f} s")


def test_unchanged_rerun_changes_nothing_and_restarts_no_node(
    lab: LabHandle, releases: dict[str, Path]
) -> None:
    pids = {h: node_pid(lab, h) for h in host_names(lab)}
    run = deploy(lab, releases["v1"])
    assert run.ok, run.output
    assert run.changed_ops == {}
    assert {h: node_pid(lab, h) for h in host_names(lab)} == pids
    print(f"unchanged re-run: {run.seconds:.1f} s")


@dataclass
class MeshWatcher:
    """Samples every node's nodes() each second from outside (this machine reaches the
    lab network), as a hidden node, until stopped."""

    nodes: list[str]
    cookie: str
    tls: ssl.SSLContext | None = None
    samples: list[dict[str, list[str]]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> MeshWatcher:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(timeout=30)
        self._sample()  # one more, after what was watched has ended

    def _sample(self) -> None:
        view = asyncio.run(look(self.nodes, self.cookie, timeout=2.0, tls=self.tls))
        self.samples.append(view.missing())

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(1.0)

    def offenders(self) -> list[dict[str, list[str]]]:
        """Samples where the missing pairs do not all involve one node (the restarting
        one): then a node other than the one being replaced lost a peer."""
        bad = []
        for missing in self.samples:
            pairs = {(a, b) for a, unseen in missing.items() for b in unseen}
            pairs |= {(a, a) for a, unseen in missing.items() if not unseen}  # unreachable
            if pairs and not any(all(n in pair for pair in pairs) for n in self.nodes):
                bad.append(missing)
        return bad


def test_a_new_version_rolls_one_host_at_a_time_keeping_the_mesh(
    lab: LabHandle, releases: dict[str, Path]
) -> None:
    cookie = lab.ssh("host1", f"cat {COOKIE}").strip()
    target = inspect_tarball(releases["v2"]).install_name
    with MeshWatcher(nodes(lab), cookie) as watcher:
        run = deploy(lab, releases["v2"])
    assert run.ok, run.output
    assert all(current(lab, h) == target for h in host_names(lab))
    assert len(watcher.samples) >= 4, "the watcher took too few samples"
    assert watcher.offenders() == [], watcher.offenders()
    assert watcher.samples[-1] == {}, "the mesh is not complete after the roll"
    print(
        f"roll of {len(host_names(lab))} hosts: {run.seconds:.1f} s, {len(watcher.samples)} samples"
    )
    assert_mesh_table(check(lab), len(host_names(lab)))


def test_a_release_that_cannot_boot_is_rolled_back_and_the_run_fails(
    lab: LabHandle, releases: dict[str, Path]
) -> None:
    good = inspect_tarball(releases["v2"]).install_name
    run = deploy(lab, releases["crash"], "--data", "roll_timeout=20")
    assert not run.ok
    failed = re.findall(r"(demo@[\d.]+): release \S+ did not join the complete mesh", run.output)
    assert len(failed) == 1, run.output
    rolled_back = f"{failed[0]}: rolled back to {good}, back in the complete mesh"
    assert rolled_back in run.output, run.output[-4000:]
    assert "cannot boot" in run.output, run.output[-4000:]  # the node's own last words
    assert "not started: it failed on" in run.output  # the other hosts were not touched
    assert all(current(lab, h) == good for h in host_names(lab))
    assert_mesh_table(check(lab), len(host_names(lab)))


def test_a_removed_host_leaves_a_complete_mesh(lab: LabHandle, releases: dict[str, Path]) -> None:
    run = lab.pyinfra(
        "deploys/remove_host.py", *HOST_MODE, "--data", "remove=host4",
        "--data", f"app_release={releases['v2']}",
    )  # fmt: skip
    assert run.ok, run.output
    assert lab.ssh("host4", f"systemctl is-active {NODE_UNIT} || true").strip() == "inactive"
    # the other hosts no longer expect it
    assert f"{APP}@{lab.ip('host4')}" not in lab.ssh("host1", f"cat /etc/beamfleet/{APP}/nodes")
    lab.forget_host("host4")  # the lab's DNS record drops it too
    assert_mesh_table(check(lab), 3)


def boot_mark(lab: LabHandle, host: str) -> str:
    return lab.ssh(host, "cut -d' ' -f22 /proc/1/stat").strip()


def test_maintenance_reboots_one_host_at_a_time_keeping_the_rest_meshed(
    lab: LabHandle, releases: dict[str, Path]
) -> None:
    cookie = lab.ssh("host1", f"cat {COOKIE}").strip()
    marks = {h: boot_mark(lab, h) for h in host_names(lab)}
    with MeshWatcher(nodes(lab), cookie) as watcher:
        run = lab.pyinfra(
            "deploys/maintenance.py", *HOST_MODE, "--data", "maintenance=reboot",
            "--data", "maintain=host2,host3",
        )  # fmt: skip
    assert run.ok, run.output
    after = {h: boot_mark(lab, h) for h in host_names(lab)}
    assert after["host1"] == marks["host1"]
    assert after["host2"] != marks["host2"] and after["host3"] != marks["host3"]
    assert watcher.offenders() == [], watcher.offenders()
    assert any(watcher.samples[:-1]), "no sample saw a host away: was anything rebooted?"
    assert watcher.samples[-1] == {}
    print(f"maintenance (reboot) of 2 hosts: {run.seconds:.1f} s")
    assert_mesh_table(check(lab), 3)


def started_at(lab: LabHandle, host: str, unit: str) -> int:
    """When ``unit`` last became active, in µs of CLOCK_MONOTONIC: the lab's hosts are
    containers on one kernel, so the hosts' figures compare."""
    value = lab.ssh(host, f"systemctl show -p ActiveEnterTimestampMonotonic --value {unit}")
    return int(value.strip())


def port_mapper_binary(lab: LabHandle, host: str) -> str:
    line = lab.ssh(host, f"grep '^ExecStart=' /etc/systemd/system/{EPMD_UNIT}").strip()
    return line.removeprefix("ExecStart=").split()[0]


def test_a_release_switching_to_the_hosts_erlang_rolls_its_port_mapper_one_host_at_a_time(
    lab: LabHandle, releases: dict[str, Path], noerts_release: Path
) -> None:
    """From the ERTS-bundled release to the same built without ERTS: every host's port
    mapper unit changes (the copy of the release's epmd -> Debian's) and restarts with its
    node, in that node's gated roll, one host after the other; a watcher from outside never
    sees more than the rolled node missing."""
    release = inspect_tarball(noerts_release)
    assert not release.bundled_erts and inspect_tarball(releases["v2"]).bundled_erts
    hosts = host_names(lab)
    assert {port_mapper_binary(lab, h) for h in hosts} == {"/opt/beamfleet/bin/epmd"}
    before = {h: started_at(lab, h, EPMD_UNIT) for h in hosts}
    cookie = lab.ssh("host1", f"cat {COOKIE}").strip()
    with MeshWatcher(nodes(lab), cookie) as watcher:
        run = deploy(lab, noerts_release)
    assert run.ok, run.output
    rolled = re.findall(rf"Roll node ({APP}@[\d.]+) to \S+ with its new port mapper", run.stderr)
    assert sorted(set(rolled)) == sorted(nodes(lab)), run.stderr[-3000:]
    for h in hosts:
        assert current(lab, h) == release.install_name
        assert port_mapper_binary(lab, h) == "/usr/bin/epmd"
        assert lab.ssh(h, f"systemctl is-active {EPMD_UNIT} {NODE_UNIT}").split() == ["active"] * 2
    # each host's port mapper restarted just before its node, and only once the previous
    # host's node was back (the hosts' restarts never overlap)
    spans = sorted((started_at(lab, h, EPMD_UNIT), started_at(lab, h, NODE_UNIT), h) for h in hosts)
    for (_, node_up, h), (epmd_up, _, later) in itertools.pairwise(spans):
        assert node_up < epmd_up, f"{later}'s port mapper restarted before {h}'s node was back"
    assert all(epmd_up > before[h] and node_up >= epmd_up for epmd_up, node_up, h in spans)
    assert watcher.offenders() == [], watcher.offenders()
    assert any(watcher.samples[:-1]), "no sample saw a node away: did anything restart?"
    assert watcher.samples[-1] == {}, "the mesh is not complete after the roll"
    print(
        f"bundled -> system ERTS roll of {len(hosts)} hosts: {run.seconds:.1f} s, "
        f"{len(watcher.samples)} samples"
    )
    assert_mesh_table(check(lab), len(hosts))


def _reachable(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=2):
            return True
    except OSError:
        return False


def test_the_firewall_admits_the_cluster_network_only(
    lab: LabHandle, releases: dict[str, Path]
) -> None:
    """`host_firewall` with a cluster_cidr that holds the hosts (.11-.15) but not this
    machine's address on the lab network (.1): the nodes still mesh, this machine's
    connections to the port mapper are dropped."""
    host1 = lab.ip("host1")
    assert _reachable(host1, 4369)
    narrow = str(ipaddress.ip_network(f"{host1}/29", strict=False))
    args = ("--data", "host_firewall=true", "--data", f"cluster_cidr={narrow}")
    run = deploy(lab, releases["v2"], *args)
    assert run.ok, run.output
    report = lab.pyinfra(
        "deploys/check.py", *HOST_MODE, "--data", "check_timeout=60",
        "--data", f"cluster_cidr={narrow}",
    )  # fmt: skip
    assert_mesh_table(report, 3)
    assert not _reachable(host1, 4369)
    assert (
        lab.ssh("host2", f"timeout 3 bash -c 'echo > /dev/tcp/{host1}/4369' && echo open").strip()
        == "open"
    )
    again = deploy(lab, releases["v2"], *args)
    assert again.ok, again.output
    assert again.changed_ops == {}


# -- TLS distribution (app_dist_tls) -----------------------------------------------------
TLS = ("--data", "app_dist_tls=true")
TLS_DIR = f"/etc/beamfleet/{APP}/tls"
CAPTURE = Path(__file__).parents[1] / "lab" / "capture_names.py"


@pytest.fixture(scope="module")
def demo_release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo's release (no ERTS: it runs on the hosts' Erlang; it includes ssl)."""
    built = images.build(
        images.APP_REPO_DEFAULT, images.app_context(ROOT / "examples" / "demo"), archive=False
    )
    assert built.image_id is not None, "the demo's image was built without an ID"
    return export_from_image(built.image_id, "/app", tmp_path_factory.mktemp("demo"))


def names_on_the_wire(lab: LabHandle, host: str, restart: str) -> dict[str, int]:
    """Node names seen in distribution traffic reaching ``host`` while the node of
    ``restart`` restarts (new handshakes with every node)."""
    lab.ssh(host, f"cat > /root/capture.py <<'EOF'\n{CAPTURE.read_text()}\nEOF")
    lab.ssh(
        host,
        f"rm -f /root/capture.json; nohup python3 /root/capture.py 15 dist {APP}@10.232. "
        "> /root/capture.json 2>&1 < /dev/null &",
    )
    lab.ssh(restart, f"systemctl restart {NODE_UNIT}")
    wait_until(
        lambda: lab.ssh(host, "cat /root/capture.json").strip().startswith("{"),
        60,
        "the capture to end",
    )
    seen: dict[str, Any] = json.loads(lab.ssh(host, "cat /root/capture.json"))
    return {"packets": seen["packets"], "names": seen["counts"][f"{APP}@10.232."]}


def test_tls_distribution_switched_on(lab: LabHandle, demo_release: Path) -> None:
    """The demo release (TCP), then the same with app_dist_tls: every node restarts on
    TLS at once, and the mesh is complete; node names are on the wire before, never
    after."""
    run = deploy(lab, demo_release)
    assert run.ok, run.output
    assert_mesh_table(check(lab), 3)
    plain = names_on_the_wire(lab, "host2", "host3")
    assert plain["names"] > 0, plain  # the capture sees cleartext distribution

    switched = deploy(lab, demo_release, *TLS)
    assert switched.ok, switched.output
    assert "TLS certificates v1 (no certificates yet)" in switched.output
    restarted = set(
        re.findall(rf"Restart node ({APP}@[\d.]+) on TLS distribution", switched.stderr)
    )
    assert restarted == set(nodes(lab)), switched.stderr[-3000:]
    report = lab.pyinfra("deploys/check.py", *HOST_MODE, *TLS, "--data", "check_timeout=60")
    assert_mesh_table(report, 3)
    tls = names_on_the_wire(lab, "host2", "host3")
    assert tls["packets"] > 0 and tls["names"] == 0, tls
    assert_mesh_table(
        lab.pyinfra("deploys/check.py", *HOST_MODE, *TLS, "--data", "check_timeout=60"), 3
    )
    again = deploy(lab, demo_release, *TLS)
    assert again.ok and again.changed_ops == {}, again.changed_ops


def test_tls_keys_are_private_and_the_ca_stays_on_the_first_host(lab: LabHandle) -> None:
    for host in host_names(lab):
        modes = lab.ssh(host, f"stat -c '%n %a %U' {TLS_DIR}/node.pem {TLS_DIR}/agent.pem")
        assert [line.split()[1:] for line in modes.splitlines()] == [["400", "bf-demo"]] * 2
        names = lab.ssh(host, f"openssl x509 -in {TLS_DIR}/node.pem -noout -ext subjectAltName")
        assert f"IP Address:{lab.ip(host)}" in names, names  # its own address only
        has_ca = lab.ssh_run(host, f"test -e /etc/beamfleet/{APP}/ca/ca.key").returncode == 0
        assert has_ca == (host == "host1")
    assert lab.ssh("host1", f"stat -c '%a %U' /etc/beamfleet/{APP}/ca/ca.key").split() == [
        "400", "root",
    ]  # fmt: skip
    for run in lab.runs:
        assert "PRIVATE KEY" not in run.output


def tls_watcher(lab: LabHandle, tmp_path: Path) -> MeshWatcher:
    """A watcher over TLS distribution with host1's agent certificate and CA certificate
    as they are now (copied into ``tmp_path``)."""
    cookie = lab.ssh("host1", f"cat {COOKIE}").strip()
    bundle, ca = tmp_path / "agent.pem", tmp_path / "ca.pem"
    bundle.write_text(lab.ssh("host1", f"cat {TLS_DIR}/agent.pem"))
    bundle.chmod(0o400)
    ca.write_text(lab.ssh("host1", f"cat {TLS_DIR}/ca.pem"))
    client = TlsConfig.from_paths(bundle, bundle, ca).client_context()
    return MeshWatcher(nodes(lab), cookie, tls=client)


def test_new_certificates_roll_one_host_at_a_time_keeping_the_mesh(
    lab: LabHandle, demo_release: Path, tmp_path: Path
) -> None:
    with tls_watcher(lab, tmp_path) as watcher:
        run = deploy(lab, demo_release, *TLS, "--data", "rotate_dist_tls=true")
    assert run.ok, run.output
    assert "TLS certificates v2 (rotate_dist_tls)" in run.output
    rolled = set(re.findall(rf"Roll node ({APP}@[\d.]+) to ", run.stderr))
    assert rolled == set(nodes(lab)), run.stderr[-3000:]
    assert len(watcher.samples) >= 4, "the watcher took too few samples"
    assert watcher.offenders() == [], watcher.offenders()
    assert watcher.samples[-1] == {}
    for host in host_names(lab):
        assert lab.ssh(host, f"cat {TLS_DIR}/version").strip() == "2"
    print(f"certificate rotation on {len(host_names(lab))} hosts: {run.seconds:.1f} s")


def test_a_renewed_ca_rolls_one_host_at_a_time_keeping_the_mesh(
    lab: LabHandle, demo_release: Path, tmp_path: Path
) -> None:
    """`renew_dist_ca`: the CA's new certificate (same key) and new certificates reach every
    host, whose node rolls to them one at a time; the watcher, still trusting the old CA
    certificate, sees the mesh complete throughout."""
    with tls_watcher(lab, tmp_path) as watcher:
        run = deploy(lab, demo_release, *TLS, "--data", "renew_dist_ca=true")
    assert run.ok, run.output
    assert "TLS certificates v3 (renew_dist_ca: the CA's certificate renewed" in run.output
    rolled = set(re.findall(rf"Roll node ({APP}@[\d.]+) to ", run.stderr))
    assert rolled == set(nodes(lab)), run.stderr[-3000:]
    assert watcher.offenders() == [], watcher.offenders()
    assert watcher.samples[-1] == {}
    for host in host_names(lab):
        assert lab.ssh(host, f"cat {TLS_DIR}/ca.pem") != (tmp_path / "ca.pem").read_text()
    print(f"CA renewal on {len(host_names(lab))} hosts: {run.seconds:.1f} s")

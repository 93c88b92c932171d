"""TLS distribution on Swarm, end to end on a lab of its own (2 hosts).

Two applications of the demo image in one inventory: ``demo`` and ``plain``. Both start
on plain TCP distribution; then ``demo`` is switched to TLS (``dist_tls``) -> both meshes
complete (check.py asks demo's nodes over TLS) -> the keys are owner-only files, the CA
key stays on the manager and no certificate material shows in the deploy's output -> on
the wire between the hosts, plain's node names are seen, demo's never -> a client without
a certificate is told the node expects TLS -> new certificates roll the nodes one at a
time while a watcher sees the mesh stay complete.

The tests run in file order and share the lab.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from tests.lab.conftest import LabHandle, lab_fixture, run_pyinfra, wait_until
from tests.lab.swarm_watch import SwarmWatcher
from tests.support.mesh_watch import lasting_gaps, offending_samples

pytestmark = pytest.mark.lab

lab = lab_fixture("ttls", hosts=2, managers=1)

MANAGER, WORKER = "host1", "host2"
REPLICAS = 3
CAPTURE = Path(__file__).with_name("capture_names.py")


def inventory(lab: LabHandle, *, tls: bool) -> Path:
    apps = {
        "demo": {"replicas": REPLICAS, "subnet": "10.234.0.0/24", "dist_tls": tls},
        "plain": {"replicas": REPLICAS, "subnet": "10.234.1.0/24"},
    }
    return lab.inventory_with(f"tls-{tls}.py", {"apps": apps})


def deploy(lab: LabHandle, *data: str, tls: bool, name: str = "deploys/cluster.py"):
    """Run ``name`` (with ``--data`` for each of ``data``) on the two applications."""
    args = [arg for item in data for arg in ("--data", item)]
    run = run_pyinfra(inventory(lab, tls=tls), name, *args)
    lab.runs.append(run)
    return run


def assert_complete(lab: LabHandle, *, tls: bool) -> None:
    run = deploy(lab, tls=tls, name="deploys/check.py")
    assert run.ok, run.output
    for app in ("demo", "plain"):
        assert f"{app}: {REPLICAS} desired, {REPLICAS} running, {REPLICAS} in DNS, complete" in (
            run.stderr
        ), run.stderr
    if tls:  # the certificates' expiry, in days
        assert re.search(
            r"demo: TLS distribution certificates v\d+: the nodes' expire "
            r"\d{4}-\d\d-\d\d \((29|30) days\)",
            run.stderr,
        ), run.stderr


def agent_container(lab: LabHandle, app: str, host: str = MANAGER) -> str:
    out = lab.ssh(host, f"docker ps -q --filter label=com.docker.swarm.service.name={app}-agent")
    return out.split()[0]


def task_ips(lab: LabHandle, app: str, subnet_prefix: str) -> list[str]:
    out = lab.ssh(
        MANAGER,
        f"docker service ps -q --filter desired-state=running {app} | xargs docker inspect "
        "--format '{{range .NetworksAttachments}}{{range .Addresses}}{{.}} {{end}}{{end}}'",
    )
    return sorted({a.split("/")[0] for a in out.split() if a.startswith(subnet_prefix)})


def test_plain_clusters_then_demo_switched_to_tls(lab: LabHandle) -> None:
    run = deploy(lab, tls=False)
    assert run.ok, run.output
    assert_complete(lab, tls=False)

    switched = deploy(lab, tls=True)
    assert switched.ok, switched.output
    assert "Certificates demo_dist_node.v1, demo_dist_agent.v1 (no certificates yet)" in (
        switched.output
    )
    assert "rolls without the mesh gate: distribution switches between TCP and TLS" in (
        switched.output
    )
    assert_complete(lab, tls=True)
    rerun = deploy(lab, tls=True)
    assert rerun.ok and rerun.changed_ops == {}, rerun.changed_ops


def test_keys_are_owner_only_and_never_printed(lab: LabHandle) -> None:
    cid = lab.ssh(
        MANAGER, "docker ps -q --filter label=com.docker.swarm.service.name=demo | head -n1"
    ).strip()
    stat = lab.ssh(MANAGER, f"docker exec {cid} stat -L -c '%a %u' /run/secrets/dist_node.pem")
    assert stat.split() == ["400", "10001"], stat
    ca = lab.ssh(
        MANAGER, "stat -c '%a %U' /var/lib/beamfleet/tls/demo /var/lib/beamfleet/tls/demo/ca.key"
    )
    assert ca.split() == ["700", "root", "400", "root"], ca
    assert "PRIVATE KEY" in lab.ssh(MANAGER, "head -c 40 /var/lib/beamfleet/tls/demo/ca.key")
    for run in lab.runs:
        assert "BEGIN" not in run.output, "certificate material in a deploy's output"
    spec = lab.ssh(MANAGER, "docker service inspect demo demo-agent")
    assert "BEGIN" not in spec


def test_no_cleartext_distribution_between_hosts(lab: LabHandle) -> None:
    """While a task of each application restarts on the worker (new handshakes with
    every node), the VXLAN traffic reaching the manager carries plain's node names, and
    never demo's."""
    lab.ssh(MANAGER, f"cat > /root/capture.py <<'EOF'\n{CAPTURE.read_text()}\nEOF")
    needles = ["plain@10.234.1.", "demo@10.234.0."]
    lab.ssh(
        MANAGER,
        "nohup python3 /root/capture.py 25 vxlan " + " ".join(map(shlex.quote, needles))
        + " > /root/capture.json 2>&1 < /dev/null &",
    )  # fmt: skip
    for app in ("plain", "demo"):
        lab.ssh(
            WORKER,
            f"docker ps -q --filter label=com.docker.swarm.service.name={app} | head -n1 | "
            "xargs -r docker rm -f",
        )
    wait_until(
        lambda: lab.ssh(MANAGER, "cat /root/capture.json").strip().startswith("{"),
        60,
        "the capture to end",
    )
    seen = json.loads(lab.ssh(MANAGER, "cat /root/capture.json"))
    print(f"capture: {seen}")
    assert seen["packets"] > 0, seen
    assert seen["counts"]["plain@10.234.1."] > 0, seen  # the capture sees distribution
    assert seen["counts"]["demo@10.234.0."] == 0, seen
    assert_complete(lab, tls=True)


def test_a_client_without_a_certificate_is_told_the_node_expects_tls(lab: LabHandle) -> None:
    agent = agent_container(lab, "demo")
    node = f"demo@{task_ips(lab, 'demo', '10.234.0.')[0]}"
    base = f"docker exec {agent} python3 -m beamfleet node nodes {node} --json " + (
        "--cookie-file /run/secrets/erlang_cookie"
    )
    plain = lab.ssh_run(MANAGER, base)
    assert plain.returncode != 0
    assert "expects TLS distribution" in plain.stderr, plain.stderr
    tls = lab.ssh(
        MANAGER,
        base + " --tls-cert /run/secrets/dist_agent.pem --tls-key /run/secrets/dist_agent.pem "
        "--tls-ca /run/secrets/dist_ca.pem",
    )
    assert len(json.loads(tls)["nodes"]) == REPLICAS - 1


def test_new_certificates_roll_one_node_at_a_time_keeping_the_mesh(lab: LabHandle) -> None:
    with SwarmWatcher(lab, MANAGER, "demo", "beamfleet-demo", tls=True) as watcher:
        run = deploy(lab, "rotate_dist_tls=true", tls=True)
    assert run.ok, run.output
    assert "Certificates demo_dist_node.v2, demo_dist_agent.v2 (rotate_dist_tls)" in run.output
    assert f"demo: rolled {REPLICAS} tasks, each gated on the mesh" in run.output, run.output
    mounted = lab.ssh(
        MANAGER,
        "docker service inspect demo --format "
        "'{{range .Spec.TaskTemplate.ContainerSpec.Secrets}}{{.SecretName}} {{end}}'",
    )
    assert re.search(r"\bdemo_dist_node\.v2\b", mounted), mounted
    assert len(watcher.samples) >= 5, (watcher.samples, watcher.errors)
    assert offending_samples(watcher.samples) == [], watcher.samples
    assert lasting_gaps(watcher.samples) == [], watcher.samples
    assert_complete(lab, tls=True)
    print(f"certificate rotation: {run.seconds:.1f} s, {len(watcher.samples)} samples")


def test_a_renewed_ca_rolls_one_node_at_a_time_keeping_the_mesh(lab: LabHandle) -> None:
    """`renew_dist_ca`: the CA gets a new certificate for its same key, every certificate a
    new version, and the nodes roll to them gated: nodes trusting the old CA certificate
    and those trusting the new one connect throughout."""
    ca = "/var/lib/beamfleet/tls/demo/ca.pem"
    serial = lab.ssh(MANAGER, f"openssl x509 -in {ca} -noout -serial")
    with SwarmWatcher(lab, MANAGER, "demo", "beamfleet-demo", tls=True) as watcher:
        run = deploy(lab, "renew_dist_ca=true", tls=True)
    assert run.ok, run.output
    assert "Certificates demo_dist_node.v3, demo_dist_agent.v3 (renew_dist_ca: the CA's " in (
        run.output
    )
    assert f"demo: rolled {REPLICAS} tasks, each gated on the mesh" in run.output, run.output
    assert lab.ssh(MANAGER, f"openssl x509 -in {ca} -noout -serial") != serial
    assert len(watcher.samples) >= 5, (watcher.samples, watcher.errors)
    assert offending_samples(watcher.samples) == [], watcher.samples
    assert lasting_gaps(watcher.samples) == [], watcher.samples
    assert_complete(lab, tls=True)
    print(f"CA renewal: {run.seconds:.1f} s, {len(watcher.samples)} samples")


def test_the_agent_reports_when_each_nodes_certificate_expires(lab: LabHandle) -> None:
    """Each agent reports the nodes it drives (rendezvous): together, every node."""
    fetch = (
        "import urllib.request; "
        "print(urllib.request.urlopen('http://127.0.0.1:9568/metrics').read().decode())"
    )
    expiries: dict[str, int] = {}
    for host in (MANAGER, WORKER):
        agent = agent_container(lab, "demo", host)
        metrics = lab.ssh(host, f"docker exec {agent} python3 -c {shlex.quote(fetch)}")
        found = re.findall(
            r'^beamfleet_agent_node_cert_expiry_seconds\{node="(demo@[\d.]+)"\} (\d+)$',
            metrics,
            re.M,
        )
        expiries.update((node, int(stamp)) for node, stamp in found)
    assert sorted(expiries) == sorted(f"demo@{ip}" for ip in task_ips(lab, "demo", "10.234.0."))
    now = float(lab.ssh(MANAGER, "date +%s"))
    assert all(29 * 86400 < e - now <= 30 * 86400 + 60 for e in expiries.values()), expiries

"""End to end on a real lab: swarm formation, idempotence, growth, removal, secrets.

One lab (3 bare hosts: 1 manager, 2 workers) goes through the whole story in order (form,
re-run, grow, remove);
each test is a step and relies on the previous ones (pytest runs them in file order).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.lab.conftest import LabHandle, lab_fixture, run_pyinfra, wait_until

# Generous: a cold lab (debootstrap + image build) on a busy 2-core CI machine is slow.
pytestmark = [pytest.mark.lab, pytest.mark.timeout(900)]

lab = lab_fixture("tswarm", hosts=3, managers=1)

SWARM = "deploys/swarm.py"
REMOVE = "deploys/remove_host.py"
# Samples every process's arguments on a host while a deploy runs (bounded: <= ~3 min).
PS_SAMPLER = (
    "nohup sh -c 'for i in $(seq 3600); do ps -eo args >> /root/ps-samples.log; "
    "[ -e /root/ps-stop ] && break; sleep 0.05; done' >/dev/null 2>&1 &"
)


def nodes(lab: LabHandle, manager: str = "host1") -> dict[str, tuple[str, str]]:
    """{hostname: (status, manager status)} from `docker node ls` on a manager."""
    out = lab.ssh(manager, "docker node ls --format '{{.Hostname}}|{{.Status}}|{{.ManagerStatus}}'")
    rows = [line.split("|") for line in out.splitlines() if line.strip()]
    return {name: (status, mgr) for name, status, mgr in rows}


def no_docker_anywhere(lab: LabHandle) -> bool:
    return all(lab.ssh_run(h.name, "command -v docker").returncode != 0 for h in lab.hosts())


def derived_inventory(lab: LabHandle, tmp_path: Path, body: str) -> Path:
    """An inventory built from the lab's: ``managers``/``workers`` come from it, then
    ``body`` changes them (it sees the lab's lists as ``_m`` and ``_w``)."""
    path = tmp_path / "inventory.py"
    path.write_text(
        textwrap.dedent(
            f"""
            import runpy
            _lab = runpy.run_path({str(lab.inventory)!r})
            _m, _w = list(_lab["managers"]), list(_lab["workers"])
            """
        )
        + textwrap.dedent(body)
    )
    return path


BAD_INVENTORIES = {
    "no-manager": (
        "managers = []\nworkers = _m + _w\n",
        "no host in group `managers`",
    ),
    "even-managers": (
        "managers = _m + _w[:1]\nworkers = _w[1:]\n",
        "odd number of managers",
    ),
    "mistyped-key": (
        "managers = [(_m[0][0], {**_m[0][1], 'swarm_advertise_adr': '10.232.1.11'})]\n"
        "workers = _w\n",
        "unknown data key `swarm_advertise_adr` (did you mean `swarm_advertise_addr`?)",
    ),
    "wrong-type": (
        "managers = [(_m[0][0], {**_m[0][1], 'swarm_node_labels': 'zone=a'})]\nworkers = _w\n",
        "`swarm_node_labels` must be a dict",
    ),
    # A lab host's address on a port where nothing listens: refused at once.
    "unreachable-host": (
        "managers = _m\nworkers = _w + [('ghost', {**_w[0][1], 'ssh_port': 1})]\n",
        "cannot connect to ghost",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_INVENTORIES))
def test_bad_inventory_fails_before_any_change(lab: LabHandle, tmp_path: Path, case: str):
    body, message = BAD_INVENTORIES[case]
    run = run_pyinfra(derived_inventory(lab, tmp_path, body), SWARM)
    assert run.returncode != 0, run.output
    assert message in run.output
    # Nothing ran: the hosts are still bare (the first operation installs Docker).
    assert run.json is None or not run.changed_ops
    assert no_docker_anywhere(lab)


def test_cold_deploy_forms_the_swarm_without_leaking_tokens(lab: LabHandle):
    hosts = [h.name for h in lab.hosts()]
    for name in hosts:
        lab.ssh(name, "rm -f /root/ps-samples.log /root/ps-stop; " + PS_SAMPLER)
    # -vvv: even with every command, its output and every fact's output printed.
    run = lab.pyinfra(SWARM, "-vvv")
    for name in hosts:
        lab.ssh(name, "touch /root/ps-stop")
    assert run.ok, run.output
    assert ">>> sh -c" in run.output  # -vvv took effect: commands and outputs were printed
    assert "Swarm formation | Initialise the swarm" in run.changed_ops
    assert sorted(run.changed_ops["Swarm formation | Join the swarm as a worker"]) == [
        "host2",
        "host3",
    ]

    wait_until(
        lambda: (
            sorted(nodes(lab)) == ["host1", "host2", "host3"]
            and all(status == "Ready" for status, _ in nodes(lab).values())
        ),
        timeout=60,
        what="3 Ready nodes",
    )
    assert nodes(lab)["host1"][1] == "Leader"
    assert lab.ssh("host1", "docker network inspect -f '{{.Attachable}}' lab").strip() == "true"

    tokens = [
        lab.ssh("host1", f"docker swarm join-token -q {role}").strip()
        for role in ("worker", "manager")
    ]
    assert all(t.startswith("SWMTKN-") for t in tokens)
    for token in tokens:
        assert token not in run.output, "a join token was printed by pyinfra"
        secret = token.split("-")[-1]  # the secret half alone must not show either
        assert secret not in run.output
    for name in hosts:
        samples = lab.ssh(name, "cat /root/ps-samples.log")
        assert "ps -eo args" in samples  # the sampler really ran during the deploy
        for token in tokens:
            assert token.split("-")[-1] not in samples, f"join token in `ps` on {name}"
        # and nothing written to the host's logs either
        journal = lab.ssh(name, "journalctl --no-pager -q 2>/dev/null || true")
        for token in tokens:
            assert token.split("-")[-1] not in journal, f"join token in {name}'s journal"


def test_unchanged_rerun_reports_no_change(lab: LabHandle):
    run = lab.pyinfra(SWARM)
    assert run.ok, run.output
    assert run.changed_ops == {}
    assert run.json is not None
    assert run.json["results"]["totals"]["success"] == 0


def test_new_host_joins_and_swarm_grows_to_three_managers(lab: LabHandle):
    lab.add_host("managers")  # host4, a manager from the start
    lab.move_host("host2", "managers")  # a worker promoted
    run = lab.pyinfra(SWARM)
    assert run.ok, run.output
    assert run.changed_ops["Swarm formation | Join the swarm as a manager"] == ["host4"]
    nodes_op = "Swarm formation | Nodes: roles, labels and availability from the inventory"
    assert run.changed_ops[nodes_op] == ["host1"]  # host2 promoted by the acting manager

    def four_nodes_three_managers() -> bool:
        current = nodes(lab)
        managers = [n for n, (_, mgr) in current.items() if mgr in ("Leader", "Reachable")]
        return (
            len(current) == 4
            and all(status == "Ready" for status, _ in current.values())
            and sorted(managers) == ["host1", "host2", "host4"]
        )

    wait_until(four_nodes_three_managers, timeout=60, what="4 Ready nodes, 3 managers")

    again = lab.pyinfra(SWARM)
    assert again.ok, again.output
    assert again.changed_ops == {}


def test_remove_a_worker(lab: LabHandle):
    run = lab.pyinfra(REMOVE, "--data", "remove=host3")
    assert run.ok, run.output
    assert run.changed_ops["Remove hosts from the swarm | Leave the swarm"] == ["host3"]
    assert sorted(nodes(lab)) == ["host1", "host2", "host4"]
    state = lab.ssh("host3", "docker info --format '{{.Swarm.LocalNodeState}}'").strip()
    assert state == "inactive"
    lab.forget_host("host3")
    after = lab.pyinfra(SWARM)
    assert after.ok, after.output
    assert after.changed_ops == {}


def test_removing_managers_below_quorum_is_refused(lab: LabHandle):
    run = lab.pyinfra(REMOVE, "--data", "remove=host2,host4")
    assert run.returncode != 0
    assert "below the raft quorum of 2" in run.output
    assert run.json is None or not run.changed_ops
    current = nodes(lab)
    assert sorted(n for n, (_, mgr) in current.items() if mgr) == ["host1", "host2", "host4"]
    assert all(status == "Ready" for status, _ in current.values())

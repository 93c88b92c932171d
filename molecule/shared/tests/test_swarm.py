"""The swarm, seen from the acting manager, is exactly the lab's hosts in their roles."""

from __future__ import annotations

import lab_state
from testinfra.host import Host

testinfra_hosts = [lab_state.manager()]

NODE_FORMAT = "'{{.Hostname}}|{{.Status}}|{{.Availability}}|{{.ManagerStatus}}'"


def node_rows(host: Host) -> list[list[str]]:
    out = host.check_output(f"docker node ls --format {NODE_FORMAT}")
    return sorted(line.split("|") for line in out.splitlines())


def test_nodes_are_the_lab_hosts_all_ready(host: Host) -> None:
    want = sorted(lab_state.hosts())
    rows = lab_state.poll(
        lambda: node_rows(host),
        lambda rows: (
            [r[0] for r in rows] == want and all(r[1:3] == ["Ready", "Active"] for r in rows)
        ),
        60,
        f"nodes {want} Ready and Active",
    )
    assert [r[0] for r in rows] == want


def test_managers_are_the_managers_group_with_one_leader(host: Host) -> None:
    rows = node_rows(host)
    managers = sorted(r[0] for r in rows if r[3])
    assert managers == sorted(lab_state.hosts("managers"))
    assert [r[3] for r in rows].count("Leader") == 1
    assert all(r[3] in ("", "Leader", "Reachable") for r in rows), rows

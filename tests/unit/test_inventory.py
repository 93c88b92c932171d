"""Inventory validation, removal quorum rule, and the pure parsers behind the swarm facts."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

import beamfleet.controller.deploys.cluster  # noqa: F401 (registers every key table)
from beamfleet.controller.deploys.swarm import RemovalRefusedError, check_quorum
from beamfleet.controller.facts.swarm import parse_join_tokens, pick_private_address
from beamfleet.controller.inventory import (
    KNOWN_KEYS,
    HostSpec,
    InventoryValidationError,
    KeySpec,
    find_problems,
    register_keys,
)
from beamfleet_lab.inventory_file import render_inventory

CONNECTOR_KEYS = {"ssh_hostname", "ssh_user", "ssh_key", "ssh_port"}


def spec(name: str, group: str, **data: object) -> HostSpec:
    return HostSpec(name=name, groups=[group], data={"ssh_hostname": name, **data})


def good() -> list[HostSpec]:
    return [
        spec("m1", "managers", swarm_advertise_addr="10.0.0.1"),
        spec("w1", "workers", swarm_advertise_addr="10.0.0.2", swarm_node_labels={"zone": "a"}),
        spec("w2", "workers"),
    ]


def problems(hosts: list[HostSpec]) -> list[str]:
    return find_problems(hosts, CONNECTOR_KEYS)


def test_a_good_inventory_has_no_problem():
    assert problems(good()) == []


def test_no_manager():
    hosts = [spec("w1", "workers"), spec("w2", "workers")]
    assert problems(hosts) == [
        "no host in group `managers`: put at least one host in `managers = [...]`"
    ]


def test_even_number_of_managers_is_refused():
    hosts = [*good(), spec("m2", "managers")]
    (problem,) = problems(hosts)
    assert problem.startswith("2 managers (m1, m2)")
    assert "odd number of managers" in problem


def test_each_host_in_exactly_one_group():
    both = HostSpec("x", ["managers", "workers"], {})
    neither = HostSpec("y", ["db"], {})
    found = problems([*good(), both, neither])
    assert "x is in both `managers` and `workers`: keep it in one" in found
    assert "y is in neither `managers` nor `workers`: add it to one" in found


def test_mistyped_key_suggests_the_known_one():
    hosts = [*good(), spec("w3", "workers", swarm_advertise_adr="10.0.0.3")]
    assert problems(hosts) == [
        "w3: unknown data key `swarm_advertise_adr` (did you mean `swarm_advertise_addr`?)"
    ]


def test_mistyped_connector_key_suggests_the_connector_key():
    hosts = [*good(), spec("w3", "workers", ssh_hostnme="10.0.0.3")]
    assert problems(hosts) == ["w3: unknown data key `ssh_hostnme` (did you mean `ssh_hostname`?)"]


def test_unknown_key_without_a_close_match():
    hosts = [*good(), spec("w3", "workers", colour="blue")]
    assert problems(hosts) == ["w3: unknown data key `colour`"]


def test_pyinfra_global_arguments_and_connector_keys_are_accepted():
    hosts = [*good(), spec("w3", "workers", _sudo=True, ssh_user="admin", ssh_port=2222)]
    assert problems(hosts) == []


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("swarm_node_labels", "zone=a", "`swarm_node_labels` must be a dict"),
        ("swarm_node_labels", {"zone": 1}, "keys and values must be strings"),
        ("swarm_advertise_addr", "10.0.0.300", "'10.0.0.300' is not an IP address"),
        ("swarm_advertise_addr", True, "`swarm_advertise_addr` must be a str"),
        ("swarm_default_addr_pool", "10.233.0.0/33", "is not a network in CIDR form"),
        ("swarm_availability", "drained", "use active, pause or drain"),
        ("swarm_networks", {"app": {"subnett": "10.233.9.0/24"}}, "unknown settings ['subnett']"),
        ("swarm_networks", {"app": {"subnet": "nope"}}, "network 'app': 'nope' is not a network"),
        ("docker_daemon", ["cgroup-parent"], "`docker_daemon` must be a dict"),
        # what reaches a unit, an environment file or a node name
        ("app_env", {"A\nExecStartPre": "x"}, "'A\\nExecStartPre' is not a variable name"),
        ("app_env", {"LANG-X": "x"}, "is not a variable name"),
        ("app_env", {"MOTD": "one\ntwo"}, "the value of MOTD has a control character"),
        ("app_basename", "my.app", "a node's basename (the part before `@`)"),
        ("app_name", "my.app", "`app_name` 'my.app' is also the nodes' basename"),
    ],
)
def test_value_types_and_formats(key: str, value: object, expected: str):
    (problem,) = problems([*good(), spec("w3", "workers", **{key: value})])
    assert problem.startswith("w3: ")
    assert expected in problem


def test_a_dotted_app_name_is_fine_with_a_basename_of_its_own():
    named = spec("w3", "workers", app_name="my.app", app_basename="my_app")
    assert problems([*good(), named]) == []
    (problem,) = problems([*good(), spec("w3", "workers", app_name="my.app")])
    assert "set `app_basename` (e.g. 'my_app')" in problem


def test_unreachable_hosts_are_named():
    hosts = good()
    hosts[1].reachable = False
    hosts[2].reachable = False
    (problem,) = problems(hosts)
    assert problem.startswith("cannot connect to w1, w2: check ssh_hostname")


def test_duplicate_advertise_addresses_and_hostnames():
    hosts = good()
    hosts[2].data["swarm_advertise_addr"] = "10.0.0.2"
    hosts[0].hostname = hosts[1].hostname = "node"
    found = problems(hosts)
    assert "w2 and w1 both advertise 10.0.0.2: each needs its own" in found
    assert any(p.startswith("w1 and m1 have the same hostname 'node'") for p in found)


def test_every_problem_is_reported_at_once():
    hosts = [spec("m1", "managers", colour="x"), spec("m2", "managers", swarm_node_labels=1)]
    assert len(problems(hosts)) == 3
    error = InventoryValidationError(problems(hosts))
    assert str(error).count("\n  - ") == 3


def test_registered_keys_become_known():
    # A key no beamfleet deploy declares (the cluster deploy registers `app_*` on import).
    hosts = [*good(), spec("w3", "workers", tenant_quota=3)]
    assert problems(hosts) == ["w3: unknown data key `tenant_quota`"]
    register_keys([KeySpec("tenant_quota", (int,), "quota of the tenant")])
    try:
        assert problems(hosts) == []
        hosts[3].data["tenant_quota"] = "3"
        assert "`tenant_quota` must be a int" in problems(hosts)[0]
    finally:
        del KNOWN_KEYS["tenant_quota"]


def test_the_lab_inventory_is_valid(tmp_path: Path):
    text = render_inventory(
        lab="default",
        hosts=[("host1", "10.232.0.11", "managers"), ("host2", "10.232.0.12", "workers")],
        key_path=tmp_path / "id",
        known_hosts_path=tmp_path / "known_hosts",
        subnet="10.232.0.0/24",
        dns_name="hosts.default.beamfleet.test",
    )
    path = tmp_path / "lab.py"
    path.write_text(text)
    module = runpy.run_path(str(path))
    hosts = [
        HostSpec(name, [group], data)
        for group in ("managers", "workers")
        for name, data in module[group]
    ]
    keys = CONNECTOR_KEYS | {"ssh_known_hosts_file", "ssh_strict_host_key_checking"}
    assert find_problems(hosts, keys) == []
    assert hosts[0].data["docker_daemon"] == {"cgroup-parent": "/lab-default-host1"}
    assert hosts[1].data["swarm_advertise_addr"] == "10.232.0.12"
    # host mode (`--data cluster_mode=host`) finds what it needs in the same inventory
    assert hosts[1].data["cluster_cidr"] == "10.232.0.0/24"
    assert hosts[1].data["discovery_dns"] == "hosts.default.beamfleet.test"
    for h in hosts:
        h.data["cluster_mode"] = "host"
    assert find_problems(hosts, keys) == []


@pytest.mark.parametrize(
    ("managers", "removing", "refused"),
    [
        (["a", "b", "c"], ["c"], False),
        (["a", "b", "c"], ["b", "c"], True),
        (["a"], ["a"], True),
        (["a"], ["w"], False),  # a worker
        (["a", "b", "c", "d", "e"], ["d", "e"], False),
        (["a", "b", "c", "d", "e"], ["c", "d", "e"], True),
    ],
)
def test_removal_keeps_a_quorum_of_managers(managers, removing, refused):
    if refused:
        with pytest.raises(RemovalRefusedError, match="below the raft quorum"):
            check_quorum(managers, removing)
    else:
        check_quorum(managers, removing)


def test_join_tokens_are_masked():
    worker = "SWMTKN-1-abc-workersecret"
    manager = "SWMTKN-1-abc-managersecret"
    tokens = parse_join_tokens([worker + "\n", manager + "\n"])
    assert tokens is not None
    assert tokens["worker"].unmask() == worker
    assert tokens["manager"].unmask() == manager
    shown = f"{tokens} {tokens['worker']} {tokens['manager']!r}"
    assert "secret" not in shown
    assert "*SWARM-WORKER-TOKEN*" in shown
    assert parse_join_tokens(["Error response from daemon: This node is not a manager"]) is None


def test_private_address_prefers_the_default_route_interface():
    output = [
        "default via 10.1.0.1 dev ens4 proto dhcp",
        "---",
        "2: docker0    inet 172.17.0.1/16 brd 172.17.255.255 scope global docker0",
        "3: ens3    inet 192.168.5.10/24 scope global ens3",
        "4: ens4    inet 10.1.0.7/24 scope global ens4",
    ]
    assert pick_private_address(output) == "10.1.0.7"


def test_private_address_skips_docker_and_public_addresses():
    output = [
        "---",
        "2: docker_gwbridge    inet 172.18.0.1/16 scope global docker_gwbridge",
        "3: eth0    inet 203.0.113.5/24 scope global eth0",
        "4: eth1    inet 100.64.3.4/10 scope global eth1",
    ]
    assert pick_private_address(output) == "100.64.3.4"
    assert pick_private_address(["---", "3: eth0    inet 203.0.113.5/24 scope global"]) is None

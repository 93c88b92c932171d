"""Pure naming functions: parsing address tables, selection, validation, formats."""

from __future__ import annotations

import ipaddress
import json

import pytest
from click.testing import CliRunner

from beamfleet.runtime.cli.nodename import nodename
from beamfleet.runtime.naming import (
    Address,
    AmbiguousAddressError,
    InvalidInputError,
    NoAddressError,
    from_network_devices,
    make_node_name,
    node_name_from_addresses,
    select_address,
)
from beamfleet.runtime.naming.addresses import (
    candidates,
    parse_if_inet6,
    parse_ip_json,
    parse_proc_ipv4,
)
from beamfleet.runtime.naming.nodename import shell_quote
from beamfleet.runtime.naming.providers import check_provider
from beamfleet.runtime.naming.select import parse_cidr

A = Address.parse

FIB_TRIE = """\
Main:
  +-- 0.0.0.0/0 3 0 5
     +-- 10.230.1.0/24 2 0 2
        +-- 10.230.1.0/30 2 0 2
           |-- 10.230.1.0
              /24 link UNICAST
           |-- 10.230.1.2
              /32 host LOCAL
        |-- 10.230.1.255
           /32 link BROADCAST
     |-- 127.0.0.1
        /32 host LOCAL
     |-- 10.230.2.7
        /32 host LOCAL
Local:
  +-- 0.0.0.0/0 3 0 5
     |-- 10.230.1.2
        /32 host LOCAL
"""
ROUTE = """\
Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t00000000\t0101E60A\t0003\t0\t0\t0\t00000000\t0\t0\t0
eth0\t0001E60A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
eth1\t0000E60A\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0
"""
IF_INET6 = """\
00000000000000000000000000000001 01 80 10 80       lo
fd000230000000000000000000000002 05 40 00 80   veth0
fe800000000000000000000000000001 05 40 20 80   veth0
"""


def test_proc_ipv4_places_local_addresses_on_the_longest_connected_route() -> None:
    found = parse_proc_ipv4(FIB_TRIE, ROUTE)
    assert [str(a) for a in found] == ["10.230.1.2/24 on eth0", "10.230.2.7/16 on eth1"]
    # 127.0.0.1 has no connected route in this table: it is not listed at all


def test_if_inet6_keeps_global_scope_only() -> None:
    assert [str(a) for a in parse_if_inet6(IF_INET6)] == ["fd00:230::2/64 on veth0"]


def test_ip_json_drops_host_and_link_scope() -> None:
    text = json.dumps([
        {"ifname": "lo", "addr_info": [
            {"family": "inet", "local": "127.0.0.1", "prefixlen": 8, "scope": "host"}]},
        {"ifname": "eth0", "addr_info": [
            {"family": "inet", "local": "10.230.1.2", "prefixlen": 24, "scope": "global"},
            {"family": "inet6", "local": "fe80::1", "prefixlen": 64, "scope": "link"},
            {"family": "inet6", "local": "fd00:230::2", "prefixlen": 64, "scope": "global"}]},
    ])
    assert [str(a) for a in parse_ip_json(text)] == [
        "10.230.1.2/24 on eth0", "fd00:230::2/64 on eth0"]


def test_candidates_are_sorted_and_exclude_undialable() -> None:
    got = candidates([A("fd00:230::2/64", "e"), A("127.0.0.1/8", "lo"), A("10.230.2.1/24", "e"),
                      A("169.254.1.1/16", "e"), A("10.230.1.9/24", "e"), A("fe80::1/64", "e"),
                      A("10.230.1.9/24", "e")])
    assert [str(a.ip) for a in got] == ["10.230.1.9", "10.230.2.1", "fd00:230::2"]


POOL = [A("10.230.1.2/24", "veth0"), A("10.230.2.2/24", "veth0"), A("fd00:230::2/64", "veth0"),
        A("10.230.3.2/24", "eth9")]


def test_ambiguous_lists_candidates_and_the_cidr_to_add() -> None:
    with pytest.raises(AmbiguousAddressError) as err:
        select_address(POOL)
    message = str(err.value)
    assert message.startswith("ambiguous: 4 candidate addresses with no filter: ")
    for hint in ("--cidr 10.230.1.0/24", "--cidr 10.230.2.0/24", "--cidr fd00:230::/64"):
        assert hint in message
    assert "10.230.3.2/24 on eth9" in message


def test_filters_pick_exactly_one() -> None:
    assert select_address(POOL, [parse_cidr("10.230.2.0/24")]).ip == ipaddress.ip_address(
        "10.230.2.2")
    assert str(select_address(POOL, interface="eth9").ip) == "10.230.3.2"
    assert str(select_address(POOL, [parse_cidr("fd00:230::/64")]).ip) == "fd00:230::2"
    assert str(select_address(POOL, [parse_cidr("10.230.0.0/16")], "eth9").ip) == "10.230.3.2"


def test_no_match_says_what_exists() -> None:
    with pytest.raises(NoAddressError, match=r"no address matches --cidr 10\.9\.0\.0/24; "
                       r"addresses here: 10\.230\.1\.2/24 on veth0"):
        select_address(POOL, [parse_cidr("10.9.0.0/24")])


@pytest.mark.parametrize("bad", ["10.230.1.1/24", "10.230.1.0/33", "banana", "fd00::/129"])
def test_bad_cidr_is_refused(bad: str) -> None:
    with pytest.raises(InvalidInputError, match="invalid --cidr"):
        parse_cidr(bad)


@pytest.mark.parametrize(
    ("host", "name", "dist", "ipv6"),
    [
        ("10.230.1.2", "app@10.230.1.2", "name", False),
        ("FD00:230:0::2", "app@fd00:230::2", "name", True),
        ("app-1.svc.example.", "app@app-1.svc.example", "name", False),
        ("app-1", "app@app-1", "sname", False),
    ],
)
def test_host_kinds_decide_long_or_short_names(host: str, name: str, dist: str,
                                               ipv6: bool) -> None:
    node = make_node_name("app", host)
    assert (node.name, node.distribution, node.ipv6) == (name, dist, ipv6)


@pytest.mark.parametrize("host", ["0.0.0.0", "224.0.0.1", "fe80::1%eth0", "bad_host", "a..b", ""])
def test_bad_hosts_are_refused(host: str) -> None:
    with pytest.raises(InvalidInputError):
        make_node_name("app", host)


@pytest.mark.parametrize("basename", ["", "a b", "app@x", "é", "x" * 201])
def test_bad_basenames_are_refused(basename: str) -> None:
    with pytest.raises(InvalidInputError, match="invalid --basename"):
        make_node_name(basename, "10.0.0.1")


def test_formats_ipv4_and_ipv6() -> None:
    v4 = make_node_name("app", "10.230.1.2")
    assert v4.render("name") == "app@10.230.1.2\n"
    assert v4.render("env") == "RELEASE_DISTRIBUTION=name\nRELEASE_NODE=app@10.230.1.2\n"
    assert v4.render("vm.args") == "-name app@10.230.1.2\n"
    assert v4.render("erl-flags") == "-name app@10.230.1.2\n"
    v6 = make_node_name("app", "fd00:230::2")
    assert v6.render("vm.args") == "-name app@fd00:230::2\n-proto_dist inet6_tcp\n"
    assert v6.render("erl-flags") == "-name app@fd00:230::2 -proto_dist inet6_tcp\n"
    assert v6.render("env", {"ERL_AFLAGS": "+S 2"}).splitlines()[-1] == (
        "ERL_AFLAGS='+S 2 -proto_dist inet6_tcp'")
    assert v6.env({"ERL_AFLAGS": "-proto_dist inet6_tcp"})["ERL_AFLAGS"] == (
        "-proto_dist inet6_tcp")
    with pytest.raises(InvalidInputError, match="unknown --format"):
        v4.render("json")


def test_shell_quote() -> None:
    assert shell_quote("app@10.0.0.1") == "app@10.0.0.1"
    assert shell_quote("a b") == "'a b'"
    assert shell_quote("it's") == "'it'\\''s'"
    assert shell_quote("") == "''"


def test_providers_are_checked_before_use() -> None:
    assert check_provider("env:MY_IP") == "env:MY_IP"
    for bad in ("env:", "env:1X", "env:A-B", "consul"):
        with pytest.raises(InvalidInputError):
            check_provider(bad)


@pytest.mark.parametrize(
    ("args", "code", "out", "warned"),
    [
        (["--provider", "env:MY_IP"], 0, "app@10.230.20.5\n", False),
        (["--provider=env:MY_IP"], 0, "app@10.230.20.5\n", False),
        (["--source", "env:MY_IP"], 0, "app@10.230.20.5\n", True),
        (["--source=env:MY_IP"], 0, "app@10.230.20.5\n", True),
        (["--source", "env:MY_IP", "--provider", "env:MY_IP"], 2, "", True),
    ],
)
def test_provider_flag_and_its_deprecated_alias(
    args: list[str], code: int, out: str, warned: bool
) -> None:
    runner = CliRunner()
    result = runner.invoke(nodename, ["--basename", "app", *args], env={"MY_IP": "10.230.20.5"})
    assert (result.exit_code, result.stdout) == (code, out)
    assert ("--source is deprecated, use --provider" in result.stderr) is warned
    assert "--source" not in runner.invoke(nodename, ["--help"]).stdout


def test_deploy_time_from_pyinfra_network_devices_fact() -> None:
    devices = {
        "lo": {"state": "UP", "ipv4": {"address": "127.0.0.1", "mask_bits": 8}},
        "eth0": {"state": "UP", "ipv4": {"address": "10.230.5.4", "mask_bits": 24},
                 "ipv6": {"address": "fe80::1", "mask_bits": 64,
                          "additional_ips": [{"address": "fd00:230::4", "mask_bits": 64}]}},
        "docker0": {"state": "UP", "ipv4": {"address": "172.17.0.1", "mask_bits": 16}},
    }
    addresses = from_network_devices(devices)
    assert [str(a) for a in addresses] == [
        "10.230.5.4/24 on eth0", "172.17.0.1/16 on docker0", "fd00:230::4/64 on eth0"]
    node = node_name_from_addresses("app", addresses, cidrs=["10.230.5.0/24"])
    assert node.env() == {"RELEASE_DISTRIBUTION": "name", "RELEASE_NODE": "app@10.230.5.4"}
    with pytest.raises(AmbiguousAddressError):
        node_name_from_addresses("app", addresses)

"""The lab's DNS server: record names, the hosts file, dnsmasq's command line, lab state."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

import beamfleet_lab.cli as cli_module
import beamfleet_lab.lab as lab_module
from beamfleet_lab.dns import (
    DnsServer,
    dnsmasq_argv,
    lab_domain,
    record_name,
    render_hosts,
    running_pid,
)
from beamfleet_lab.errors import LabTooOldError
from beamfleet_lab.lab import Lab, LabHost, LabState


def test_names_are_under_the_reserved_test_domain() -> None:
    assert lab_domain("demo") == "demo.beamfleet.test"
    assert record_name("demo") == "hosts.demo.beamfleet.test"
    assert Lab("demo", root=Path("/nonexistent")).dns_name == "hosts.demo.beamfleet.test"


def test_each_host_line_has_its_full_name_first_its_short_name_and_the_record() -> None:
    text = render_hosts("demo", [("host1", "10.232.1.11"), ("host3", "10.232.1.13")])
    entries = [line.split() for line in text.splitlines() if not line.startswith("#")]
    assert entries == [
        ["10.232.1.11", "host1.demo.beamfleet.test", "host1", "hosts.demo.beamfleet.test"],
        ["10.232.1.13", "host3.demo.beamfleet.test", "host3", "hosts.demo.beamfleet.test"],
    ]


def test_a_lab_without_hosts_has_no_records() -> None:
    text = render_hosts("demo", [])
    assert [line for line in text.splitlines() if not line.startswith("#")] == []


def argv(**overrides: object) -> list[str]:
    settings: dict[str, object] = {
        "binary": "/usr/sbin/dnsmasq",
        "listen": "10.232.1.1",
        "port": 53,
        "domain": "demo.beamfleet.test",
        "hosts_dir": Path("/s/dns/hosts"),
        "pid_file": Path("/s/dns/dnsmasq.pid"),
        "log_file": Path("/s/dns/dnsmasq.log"),
    }
    settings.update(overrides)
    return dnsmasq_argv(**settings)  # type: ignore[arg-type]


def test_dnsmasq_answers_on_the_gateway_only_with_a_short_ttl() -> None:
    args = argv()
    assert "--listen-address=10.232.1.1" in args and "--bind-interfaces" in args
    assert [a for a in args if a.startswith(("--listen-address", "--interface"))] == [
        "--listen-address=10.232.1.1"
    ]
    assert "--local-ttl=1" in args
    assert "--hostsdir=/s/dns/hosts" in args and "--pid-file=/s/dns/dnsmasq.pid" in args
    assert "--local=/demo.beamfleet.test/" in args
    assert "--keep-in-foreground" not in args  # it must outlive the `lab up` that starts it


def test_other_names_go_to_this_machines_resolvers_unless_upstreams_are_given() -> None:
    assert "--no-resolv" not in argv()
    given = argv(upstream=["127.0.0.9#5353"])
    assert "--no-resolv" in given and "--server=127.0.0.9#5353" in given


def test_a_pid_file_naming_another_process_or_nothing_is_no_server(tmp_path: Path) -> None:
    pid_file = tmp_path / "dnsmasq.pid"
    assert running_pid(pid_file) is None
    pid_file.write_text(f"{os.getpid()}\n")  # this python, not a dnsmasq
    assert running_pid(pid_file) is None
    pid_file.write_text("garbage\n")
    assert running_pid(pid_file) is None
    server = DnsServer(tmp_path, listen="10.232.1.1", domain="x.beamfleet.test")
    assert server.pid() is None and server.stop() is False and not pid_file.exists()


def test_only_a_dnsmasq_started_with_this_pid_file_is_ours(tmp_path: Path) -> None:
    theirs, ours = tmp_path / "theirs.pid", tmp_path / "ours.pid"
    # A process whose argv is dnsmasq's for another lab's pid file (sh runs with $0 renamed;
    # the trailing `:` keeps sh from exec-ing sleep, which would replace the command line).
    proc = subprocess.Popen(
        ["dnsmasq", "-c", "sleep 30; :", f"--pid-file={theirs}"],
        executable="/bin/sh",
        stdin=subprocess.DEVNULL,
    )
    try:
        theirs.write_text(f"{proc.pid}\n")
        ours.write_text(f"{proc.pid}\n")
        deadline = time.monotonic() + 5
        while running_pid(theirs) is None and time.monotonic() < deadline:
            time.sleep(0.01)  # until the child has exec'd sh
        assert running_pid(theirs) == proc.pid
        assert running_pid(ours) is None
    finally:
        proc.kill()
        proc.wait()


def test_hosts_file_is_replaced_whole(tmp_path: Path) -> None:
    server = DnsServer(tmp_path / "dns", listen="10.232.1.1", domain="x.beamfleet.test")
    server.write_hosts("a\n")
    server.write_hosts("b\n")
    assert [p.name for p in server.hosts_dir.iterdir()] == ["lab.hosts"]
    assert (server.hosts_dir / "lab.hosts").read_text() == "b\n"


def old_lab(tmp_path: Path) -> Lab:
    """A lab whose lab.json was written before the lab had a DNS server."""
    lab = Lab("old", root=tmp_path)
    lab.state_dir.mkdir(parents=True)
    host = {"name": "host1", "ip": "10.232.1.11", "group": "managers", "container": "c1"}
    lab.state_path.write_text(
        json.dumps({"name": "old", "subnet": "10.232.1.0/24", "image": "i", "hosts": [host]})
    )
    return lab


def test_an_older_lab_still_loads_and_says_how_to_get_a_dns_server(tmp_path: Path) -> None:
    lab = old_lab(tmp_path)
    state = lab.load()
    assert state.dns_server == "" and state.hosts[0].name == "host1"
    with pytest.raises(LabTooOldError, match="lab down --name old"):
        _ = lab.dns_server
    with pytest.raises(LabTooOldError, match="before the lab had a DNS server"):
        lab.up(hosts=1, managers=1)


def test_saving_the_state_rewrites_the_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Lab, "_write_inventory", lambda self, state: None)
    lab = Lab("demo", root=tmp_path)
    lab.state_dir.mkdir(parents=True)
    state = LabState(
        name="demo",
        subnet="10.232.1.0/24",
        image="i",
        hosts=[LabHost("host1", "10.232.1.11", "managers", "c1")],
        dns_name=lab.dns_name,
        dns_server="10.232.1.1",
    )
    lab._save(state)
    state.hosts.append(LabHost("host2", "10.232.1.12", "workers", "c2"))
    lab._save(state)
    records = (lab.dns_dir / "hosts" / "lab.hosts").read_text()
    assert records == render_hosts("demo", [("host1", "10.232.1.11"), ("host2", "10.232.1.12")])
    saved = json.loads(lab.state_path.read_text())
    assert (saved["dns_name"], saved["dns_server"]) == ("hosts.demo.beamfleet.test", "10.232.1.1")
    assert lab.dns_server == "10.232.1.1"


def test_hosts_are_created_resolving_with_the_lab_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, ...]] = []

    def docker(*args: str, **_: object) -> subprocess.CompletedProcess[bytes]:
        calls.append(args)
        return subprocess.CompletedProcess(args, 0, b"", b"")

    monkeypatch.setattr(lab_module, "docker", docker)
    lab = Lab("demo", root=tmp_path)
    lab.state_dir.mkdir(parents=True)
    lab._ensure_client_key()
    state = LabState("demo", "10.232.1.0/24", "img", dns_name=lab.dns_name, dns_server="10.232.1.1")
    lab._create_host(state, LabHost("host1", "10.232.1.11", "managers", "c1"))
    create = next(c for c in calls if c[0] == "create")
    assert create[create.index("--dns") + 1] == "10.232.1.1"
    assert create[create.index("--dns-search") + 1] == "demo.beamfleet.test"


def test_status_of_an_older_lab_lists_its_hosts_and_says_it_has_no_dns_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lab = old_lab(tmp_path)
    monkeypatch.setattr(lab_module, "inspect_json", lambda kind, names: [])
    monkeypatch.setattr(lab_module, "_ssh_banner", lambda ip, timeout: False)
    result = CliRunner().invoke(
        cli_module.lab, ["status", "--name", "old", "--root", str(lab.root)]
    )
    assert result.exit_code == 1, result.output
    assert "host1" in result.output and "dns: none (lab created before" in result.output

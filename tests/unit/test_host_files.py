"""What host mode writes on a host: units, the node's environment, the agent's settings,
and the fact that reads a host back."""

from __future__ import annotations

import hashlib
import ipaddress
import subprocess
import tomllib
from importlib import resources
from pathlib import Path

import pytest

from beamfleet.controller import host_files
from beamfleet.controller.facts.hosts import parse_host_state
from beamfleet.controller.host_files import HostPaths, NodeUnit
from beamfleet.controller.operations.hosts import unpack_script
from beamfleet.controller.safe_text import UnsafeTextError
from beamfleet.runtime.discovery.config import load_config

PATHS = HostPaths("demo")
UNIT = NodeUnit(
    name="demo", kind="elixir", version="0.1.0", user="bf-demo", basename="demo",
    cidr="10.232.1.0/24", short_names=False, dist_ports=(9100, 9109),
    env={"GREETING": 'say "hi" \\ bye', "PORT": "4000"},
)  # fmt: skip


def _systemd_env(text: str) -> dict[str, str]:
    """Read an EnvironmentFile the way systemd does for the values we write (quoted)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition("=")
        assert value.startswith('"') and value.endswith('"'), line
        body, result, i = value[1:-1], "", 0
        while i < len(body):
            if body[i] == "\\":
                i += 1
            result += body[i]
            i += 1
        out[key] = result
    return out


def test_node_env_names_from_the_cidr_and_pins_distribution() -> None:
    env = _systemd_env(host_files.node_env(PATHS, UNIT))
    assert env["BEAMFLEET_CIDR"] == "10.232.1.0/24"
    assert env["BEAMFLEET_DIST_INTERFACE"] == "1"
    assert env["ERL_AFLAGS"] == (
        "-kernel inet_dist_listen_min 9100 inet_dist_listen_max 9109 -start_epmd false"
    )
    assert env["HOME"] == "/var/lib/beamfleet/demo"
    assert env["BEAMFLEET_COOKIE_FILE"] == "/etc/beamfleet/demo/cookie"
    assert env["GREETING"] == 'say "hi" \\ bye'
    assert "BEAMFLEET_PROVIDER" not in env


def test_short_names_come_from_the_hostname() -> None:
    unit = NodeUnit(**{**UNIT.__dict__, "short_names": True, "cidr": ""})
    env = _systemd_env(host_files.node_env(PATHS, unit))
    assert env["BEAMFLEET_PROVIDER"] == "hostname"
    assert "BEAMFLEET_CIDR" not in env and "BEAMFLEET_DIST_INTERFACE" not in env


def test_a_metadata_provider_names_the_node_within_the_cidr() -> None:
    unit = NodeUnit(**{**UNIT.__dict__, "provider": "aws"})
    env = _systemd_env(host_files.node_env(PATHS, unit))
    assert (env["BEAMFLEET_PROVIDER"], env["BEAMFLEET_CIDR"]) == ("aws", "10.232.1.0/24")


def test_node_unit_runs_the_current_release_behind_the_entrypoint() -> None:
    text = host_files.node_unit(PATHS, UNIT)
    assert (
        "ExecStart=/opt/beamfleet/bin/beamfleet-entrypoint elixir "
        "/opt/beamfleet/apps/demo/current/bin/demo start\n"
    ) in text
    assert "User=bf-demo\n" in text and "NoNewPrivileges=yes\n" in text
    assert "Requires=beamfleet-epmd.service\n" in text
    rebar = host_files.node_unit(PATHS, NodeUnit(**{**UNIT.__dict__, "kind": "rebar3"}))
    assert rebar.split("ExecStart=")[1].split("\n")[0].endswith("/bin/demo foreground")


def test_the_node_restarts_with_its_port_mapper() -> None:
    """What host_roll.sh relies on: the port mapper's unit file is named after its unit (so
    the roll restarts it with the node when its staged file is put in place); the node
    Requires= it (a restart or crash of the port mapper restarts the node), ordered After=
    it (the node stops first, starts last); the port mapper comes back by itself."""
    unit_file = PATHS.unit_path(host_files.EPMD_UNIT)
    assert unit_file.rsplit("/", 1)[1] == host_files.EPMD_UNIT
    assert host_files.EPMD_UNIT.endswith(".service")
    node = host_files.node_unit(PATHS, UNIT).split("[Service]")[0].splitlines()
    assert f"Requires={host_files.EPMD_UNIT}" in node
    after = next(line for line in node if line.startswith("After=")).split("=", 1)[1].split()
    assert host_files.EPMD_UNIT in after
    assert "Restart=always" in host_files.epmd_unit("/usr/bin/epmd", "").splitlines()


def test_epmd_listens_on_loopback_and_the_cluster_address_only() -> None:
    text = host_files.epmd_unit("/usr/bin/epmd", "10.232.1.11")
    assert "ExecStart=/usr/bin/epmd -address 127.0.0.1,10.232.1.11 -port 4369\n" in text
    assert "ExecStart=/usr/bin/epmd -port 4369\n" in host_files.epmd_unit("/usr/bin/epmd", "")


@pytest.mark.parametrize("dns", ["hosts.lab.beamfleet.test", ""])
def test_agent_config_is_valid_for_the_agent(dns: str, tmp_path: Path) -> None:
    text = host_files.agent_config(
        PATHS, basename="demo", discovery_dns=dns, cidr="10.232.1.0/24", port=9568, interval=1
    )
    parsed = tomllib.loads(text)
    assert parsed["ownership"] == "local-epmd"
    assert parsed["source"] == [
        {"kind": "dns", "arg": dns, "basename": "demo"}
        if dns
        else {"kind": "file", "arg": "/etc/beamfleet/demo/nodes", "basename": "demo"}
    ]
    # the agent itself accepts it (with the cookie file somewhere it exists)
    cookie = tmp_path / "cookie"
    cookie.write_text("c" * 32)
    cookie.chmod(0o400)
    config_file = tmp_path / "agent.toml"
    config_file.write_text(text.replace(PATHS.cookie, str(cookie)))
    config = load_config({}, [], env={}, config_file=str(config_file))
    assert config.ownership == "local-epmd"


def test_nodes_file_lists_every_node() -> None:
    text = host_files.nodes_file(["demo@10.0.0.1", "demo@10.0.0.2"])
    assert [ln for ln in text.splitlines() if not ln.startswith("#")] == [
        "demo@10.0.0.1",
        "demo@10.0.0.2",
    ]


def test_host_state_script_reads_a_host(tmp_path: Path) -> None:
    """The fact's script, run here on a made-up layout, and its parser."""
    app_dir = tmp_path / "apps" / "demo"
    (app_dir / "releases" / "0.1.0-aaaa").mkdir(parents=True)
    (app_dir / "releases" / "0.2.0-bbbb").mkdir()
    (app_dir / "current").symlink_to("releases/0.2.0-bbbb")
    cookie = tmp_path / "cookie"
    cookie.write_text("secret-cookie-value")
    unit = tmp_path / "demo.service"
    unit.write_text("[Unit]\n")
    script = resources.files("beamfleet").joinpath("assets/remote/host_state.sh").read_text()
    out = subprocess.run(
        ["sh", "-c", script, "host_state.sh", str(app_dir), str(cookie), "salt",
         str(unit), str(tmp_path / "absent"), "--", "no-such.service"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "secret-cookie-value" not in out
    state = parse_host_state(out.splitlines())
    assert state.current == "0.2.0-bbbb"
    assert state.releases == {"0.1.0-aaaa", "0.2.0-bbbb"}
    assert state.cookie_digest == hashlib.sha256(b"saltsecret-cookie-value").hexdigest()
    assert state.files == {str(unit): host_files.digest("[Unit]\n")}
    assert state.hostname
    assert state.active.get("no-such.service") != "active"
    loopback = ipaddress.IPv4Network("127.0.0.0/8")
    assert state.addresses_in(loopback) == ["127.0.0.1"]


def test_image_runner_unit_runs_the_image_on_the_host_network_as_the_nodes_user() -> None:
    text = host_files.image_node_unit(PATHS, UNIT, "beamfleet-demo-beamfleet:abc")
    start = text.split("ExecStart=", 1)[1].split("\n", 1)[0]
    assert start.startswith("/bin/sh -c 'exec /usr/bin/docker run --rm --name beamfleet-demo ")
    assert "--network host" in start
    # systemd turns $$ into $: the shell resolves the user's ids at start
    assert '--user "$$(id -u bf-demo):$$(id -g bf-demo)"' in start
    assert "-v /etc/beamfleet/demo/cookie:/run/secrets/erlang_cookie:ro" in start
    assert start.endswith("beamfleet-demo-beamfleet:abc'")
    assert "Requires=beamfleet-epmd.service docker.service\n" in text


def test_image_runner_env_is_raw_for_docker() -> None:
    lines = host_files.image_node_env(PATHS, UNIT).splitlines()
    env = dict(line.split("=", 1) for line in lines if not line.startswith("#"))
    assert env["GREETING"] == 'say "hi" \\ bye'  # docker --env-file takes values as they are
    assert env["BEAMFLEET_COOKIE_FILE"] == "/run/secrets/erlang_cookie"
    assert env["BEAMFLEET_CIDR"] == "10.232.1.0/24" and env["BEAMFLEET_DIST_INTERFACE"] == "1"
    assert "-start_epmd false" in env["ERL_AFLAGS"]


def test_firewall_admits_the_cluster_network_only() -> None:
    rules = host_files.firewall_rules(PATHS, "10.232.1.8/29", (9100, 9109))
    body = rules.splitlines()
    # replaced whole on every load, the host's other tables untouched
    assert body[2:5] == [
        "table inet beamfleet_demo",
        "delete table inet beamfleet_demo",
        "table inet beamfleet_demo {",
    ]
    assert "    ip saddr 10.232.1.8/29 tcp dport { 4369, 9100-9109 } accept" in body
    assert "    tcp dport { 4369, 9100-9109 } drop" in body
    accept = body.index("    ip saddr 10.232.1.8/29 tcp dport { 4369, 9100-9109 } accept")
    assert accept < body.index("    tcp dport { 4369, 9100-9109 } drop")
    unit = host_files.firewall_unit(PATHS)
    assert "ExecStart=/usr/sbin/nft -f /etc/beamfleet/demo/firewall.nft\n" in unit
    assert "Before=beamfleet-epmd.service network-pre.target\n" in unit


def test_unpacking_replaces_what_an_interrupted_run_left(tmp_path: Path) -> None:
    """archive_unpacked's shell, run here: the archive ends up as the directory, also over
    a half-made one, never nested inside it."""
    src = tmp_path / "src"
    (src / "bin").mkdir(parents=True)
    (src / "bin" / "app").write_text("#!/bin/sh\n")
    archive = tmp_path / "rel.upload"
    subprocess.run(["tar", "-czf", str(archive), "-C", str(src), "."], check=True)
    directory = tmp_path / "releases" / "1.0-abc"
    (directory / "stale").mkdir(parents=True)  # left by an interrupted run
    script = unpack_script(
        str(archive),
        str(directory),
        'tar -xzf "$archive" -C "$target"',
        ('touch "$target/edited"',),
    )
    subprocess.run(["sh", "-c", script], check=True)
    assert sorted(p.name for p in directory.iterdir()) == ["bin", "edited"]
    assert not archive.exists() and not Path(f"{directory}.tmp").exists()


def test_tls_distribution_is_in_the_node_env_with_its_version() -> None:
    plain = _systemd_env(host_files.node_env(PATHS, UNIT))
    assert not any(k.startswith("BEAMFLEET_DIST_TLS") for k in plain)
    tls = _systemd_env(host_files.node_env(PATHS, NodeUnit(**{**UNIT.__dict__, "tls_version": 3})))
    assert tls["BEAMFLEET_DIST_TLS_CERT"] == "/etc/beamfleet/demo/tls/node.pem"
    assert tls["BEAMFLEET_DIST_TLS_CA"] == "/etc/beamfleet/demo/tls/ca.pem"
    # a new version changes the file: the node rolls to the new certificates
    assert tls["BEAMFLEET_DIST_TLS_VERSION"] == "3"
    assert PATHS.tls_version in PATHS.files()  # what the host holds is a fact


def test_the_agent_config_gives_the_agent_its_certificate(tmp_path: Path) -> None:
    text = host_files.agent_config(
        PATHS, basename="demo", discovery_dns="", cidr="", port=9568, interval=1, tls_version=2
    )
    parsed = tomllib.loads(text)
    renewed = host_files.agent_config(
        PATHS, basename="demo", discovery_dns="", cidr="", port=9568, interval=1, tls_version=3
    )
    assert renewed != text  # a new version restarts the agent: it loads its certificate once
    assert parsed["tls_cert"] == parsed["tls_key"] == "/etc/beamfleet/demo/tls/agent.pem"
    assert parsed["tls_ca"] == "/etc/beamfleet/demo/tls/ca.pem"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", "app\nExecStartPre=+/bin/sh -c id"),
        ("version", "1.0\n[Service]"),
        ("basename", "demo\r"),
        ("env", {"A\nB": "x"}),
        ("env", {"MOTD": "one\ntwo"}),
    ],
)
def test_a_unit_line_cannot_be_injected(field: str, value: object) -> None:
    """Whatever reached the node's unit past the inventory's and the release's checks is
    refused where the unit and its environment are written."""
    with pytest.raises(UnsafeTextError):
        NodeUnit(**{**UNIT.__dict__, field: value})

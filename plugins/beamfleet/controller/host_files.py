"""What host mode writes on a host: paths, systemd units, the node's environment, the
agent's configuration. Pure functions of the settings, so the deploy can compare what it
would write with what the host has (by digest) while it plans.

Layout on a host, for an application ``app``::

    /opt/beamfleet/bin/              beamfleet (launcher), beamfleet-nodename, beamfleet-entrypoint
    /opt/beamfleet/runtime/<digest>/ the runtime wheel, unpacked; ``current`` -> the one in use
    /opt/beamfleet/apps/app/releases/<version>-<digest>/   one unpacked release per version
    /opt/beamfleet/apps/app/current  -> releases/<the running one>
    /etc/beamfleet/app/cookie        the cookie, 0400, owned by the release's user
    /etc/beamfleet/app/node.env      the node's environment (no secret)
    /etc/beamfleet/app/nodes         every node of the cluster, one per line (the agent's
                                     peers without DNS, and what the mesh gate expects)
    /etc/beamfleet/app/agent.toml    the agent's settings
    /var/lib/beamfleet/app/          the node's HOME and writable state
    /etc/systemd/system/beamfleet-epmd.service, beamfleet-app.service,
    beamfleet-app-agent.service

Example::

    paths = HostPaths("demo")
    paths.current                 # "/opt/beamfleet/apps/demo/current"
    node_unit(paths, NodeUnit(...))
"""

from __future__ import annotations

import hashlib
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from beamfleet.controller.safe_text import env_name, one_line
from beamfleet.runtime.constants import EPMD_PORT

ROOT: Final = "/opt/beamfleet"
BIN: Final = f"{ROOT}/bin"
RUNTIME: Final = f"{ROOT}/runtime"
EPMD_UNIT: Final = "beamfleet-epmd.service"
# Debian's erlang-base ships these: a port mapper on every interface. Masked, so our
# unit is the only one (and installing erlang-base does not start them).
DEBIAN_EPMD_UNITS: Final = ("epmd.socket", "epmd.service")

_HARDENING: Final = """\
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectControlGroups=yes
RestrictSUIDSGID=yes
RestrictNamespaces=yes
LockPersonality=yes
RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX AF_NETLINK
"""


def digest(text: str) -> str:
    """What the host-state fact reports for a file: its SHA-256, hex."""
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class HostPaths:
    """Where one application's files live on a host."""

    app: str

    @property
    def app_dir(self) -> str:
        return f"{ROOT}/apps/{self.app}"

    @property
    def releases(self) -> str:
        return f"{self.app_dir}/releases"

    @property
    def current(self) -> str:
        return f"{self.app_dir}/current"

    @property
    def etc(self) -> str:
        return f"/etc/beamfleet/{self.app}"

    @property
    def cookie(self) -> str:
        return f"{self.etc}/cookie"

    @property
    def node_env(self) -> str:
        return f"{self.etc}/node.env"

    @property
    def nodes(self) -> str:
        return f"{self.etc}/nodes"

    @property
    def agent_config(self) -> str:
        return f"{self.etc}/agent.toml"

    @property
    def state(self) -> str:
        return f"/var/lib/beamfleet/{self.app}"

    @property
    def node_unit(self) -> str:
        return f"beamfleet-{self.app}.service"

    @property
    def agent_unit(self) -> str:
        return f"beamfleet-{self.app}-agent.service"

    def unit_path(self, unit: str) -> str:
        return f"/etc/systemd/system/{unit}"

    # TLS distribution (``app_dist_tls``): this host's files, and the first host's CA
    @property
    def tls_dir(self) -> str:
        return f"{self.etc}/tls"

    @property
    def tls_node(self) -> str:
        """The node's certificate and key, one PEM file (0400, the node's user)."""
        return f"{self.tls_dir}/node.pem"

    @property
    def tls_agent(self) -> str:
        """The agent's (and the gate's) client certificate and key (0400)."""
        return f"{self.tls_dir}/agent.pem"

    @property
    def tls_ca(self) -> str:
        return f"{self.tls_dir}/ca.pem"

    @property
    def tls_version(self) -> str:
        """Which version of the certificates this host holds (its digest is a fact)."""
        return f"{self.tls_dir}/version"

    @property
    def ca_dir(self) -> str:
        """On the first host: the CA and every version's certificates (root only)."""
        return f"{self.etc}/ca"

    def files(self) -> tuple[str, ...]:
        """The files whose digests the host-state fact reports."""
        return (
            self.unit_path(EPMD_UNIT),
            self.unit_path(self.node_unit),
            self.unit_path(self.agent_unit),
            self.node_env,
            self.nodes,
            self.agent_config,
            f"{BIN}/beamfleet",
            f"{self.etc}/firewall.nft",
            self.unit_path(f"beamfleet-{self.app}-firewall.service"),
            self.tls_version,
        )


def launcher() -> str:
    """``/opt/beamfleet/bin/beamfleet``: the runtime's command line, from the unpacked wheel."""
    return (
        "#!/bin/sh\n"
        "# beamfleet's runtime on this host (written by beamfleet's host mode)\n"
        f'PYTHONPATH={RUNTIME}/current exec /usr/bin/python3 -m beamfleet "$@"\n'
    )


def epmd_unit(epmd: str, address: str) -> str:
    """The port mapper, listening on loopback and the cluster address only.

    ``epmd``: a stable path (Debian's, or a copy of a release's; never inside a release
    that a roll replaces). ``address``: "" listens on every interface (short names
    without ``cluster_cidr``: nothing says which one the other hosts reach). Runs as a
    throw-away user with the usual hardening. On a host whose node runs, a change of it
    (another ``epmd``, address or hardening) is staged and put in place by the node's
    roll, which restarts the two together (see :func:`node_unit`).
    """
    listen = f"-address 127.0.0.1,{address} " if address else ""
    where = f"127.0.0.1 and {address} only" if address else "every interface"
    return (
        "[Unit]\n"
        f"Description=Erlang port mapper for beamfleet nodes (on {where})\n"
        "After=network-online.target\nWants=network-online.target\n\n"
        "[Service]\n"
        f"ExecStart={epmd} {listen}-port {EPMD_PORT}\n"
        "DynamicUser=yes\nRestart=always\nRestartSec=1\n"
        f"{_HARDENING}\n"
        "[Install]\nWantedBy=multi-user.target\n"
    )


@dataclass(frozen=True)
class NodeUnit:
    """What the node's unit and environment say: the release and how it is named.

    + name: the release's start script (``bin/<name>``)
    + kind: ``elixir`` or ``rebar3`` (how the entrypoint hands the name over)
    + version: the release version (for the unit's description)
    + user: the account the node runs as
    + basename: the node's alive name
    + cidr: the network the node's address is taken from (long names), or ""
    + short_names: ``<basename>@<hostname>`` with ``-sname`` instead
    + provider: a metadata API the address is read from at start ("": the interfaces)
    + dist_ports: the distribution port range
    + env: the application's extra environment
    + tls_version: TLS distribution, with this version of the certificates (0: plain TCP);
      a new version changes the environment, so the node rolls to it
    """

    name: str
    kind: str
    version: str
    user: str
    basename: str
    cidr: str
    short_names: bool
    dist_ports: tuple[int, int]
    env: Mapping[str, str]
    provider: str = ""
    tls_version: int = 0  # TLS distribution with this version of the certificates (0: TCP)

    def __post_init__(self) -> None:
        # Every field becomes part of a line of the unit or the environment file.
        for name, value in self.__dict__.items():
            if isinstance(value, str):
                one_line(value, f"the node's {name}")
        for key, value in self.env.items():
            one_line(env_name(key, "the node's environment"), f"the node's {key}")
            one_line(value, f"the node's {key}")


def start_command(kind: str) -> str:
    """The release script's command that runs the node in the foreground."""
    return "start" if kind == "elixir" else "foreground"


def node_unit(paths: HostPaths, unit: NodeUnit) -> str:
    """The node's unit: the release's start script behind beamfleet's entrypoint.

    The entrypoint links the cookie file into HOME and names the node; nothing secret is
    in this file, the environment file or a command line.
    """
    command = shlex.join(
        [
            f"{BIN}/beamfleet-entrypoint",
            unit.kind,
            f"{paths.current}/bin/{unit.name}",
            start_command(unit.kind),
        ]
    )
    return (
        "[Unit]\n"
        f"Description=beamfleet node {unit.basename} of {paths.app} (release {unit.name})\n"
        # Requires=: systemd restarts the node whenever its port mapper restarts, explicitly
        # or after a crash (Restart=always; seen on Debian 12's and 13's systemd), so the
        # node never runs on a port mapper that does not know it (no peer could reach it
        # until it registered again). That is why the port mapper changes only in the
        # node's gated roll (host_roll.sh restarts the two together, in one call). After=:
        # the node stops before its port mapper and starts after it.
        f"Requires={EPMD_UNIT}\nAfter={EPMD_UNIT} network-online.target\n"
        "Wants=network-online.target\n\n"
        "[Service]\nType=exec\n"
        f"User={unit.user}\nGroup={unit.user}\n"
        f"EnvironmentFile={paths.node_env}\n"
        f"WorkingDirectory={paths.state}\n"
        f"StateDirectory=beamfleet/{paths.app}\nStateDirectoryMode=0700\n"
        f"ExecStart={command}\n"
        # erl stops cleanly on SIGTERM (init:stop/0): peers see one nodedown, nothing else
        "KillMode=mixed\nTimeoutStopSec=30\n"
        "Restart=on-failure\nRestartSec=2\n"
        "LimitNOFILE=65536\n"
        f"{_HARDENING}\n"
        "[Install]\nWantedBy=multi-user.target\n"
    )


def _naming_env(unit: NodeUnit) -> dict[str, str]:
    """How the entrypoint names the node: by hostname (short names), or by the address on
    the cluster network (from the interfaces or a metadata API), distribution bound to it."""
    if unit.short_names:
        return {"BEAMFLEET_PROVIDER": "hostname"}
    env = {"BEAMFLEET_CIDR": unit.cidr, "BEAMFLEET_DIST_INTERFACE": "1"}
    if unit.provider:
        env["BEAMFLEET_PROVIDER"] = unit.provider
    return env


def _env_value(value: str) -> str:
    """A value for a systemd EnvironmentFile: double-quoted, ``\\`` and ``"`` escaped."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def node_env(paths: HostPaths, unit: NodeUnit) -> str:
    """The node's environment file (no secret: the cookie is a file the entrypoint links)."""
    low, high = unit.dist_ports
    env: dict[str, str] = {
        "HOME": paths.state,
        "PATH": f"{BIN}:/usr/local/bin:/usr/bin:/bin",
        "BEAMFLEET_COOKIE_FILE": paths.cookie,
        "BEAMFLEET_BASENAME": unit.basename,
        # the node never starts a port mapper of its own (one bound to every interface)
        "ERL_AFLAGS": (
            f"-kernel inet_dist_listen_min {low} inet_dist_listen_max {high} -start_epmd false"
        ),
        # releases write here, not into their own (read-only) directory
        "RELEASE_TMP": f"{paths.state}/tmp",
        "RELX_OUT_FILE_PATH": f"{paths.state}/tmp",
    }
    env.update(_naming_env(unit))
    if unit.tls_version:
        # the entrypoint turns these into -proto_dist inet_tls and its options file
        env["BEAMFLEET_DIST_TLS_CERT"] = paths.tls_node
        env["BEAMFLEET_DIST_TLS_CA"] = paths.tls_ca
        env["BEAMFLEET_DIST_TLS_VERSION"] = str(unit.tls_version)
    env.update(unit.env)
    lines = [f"{key}={_env_value(value)}" for key, value in env.items()]
    return "# written by beamfleet: the node's environment (no secret)\n" + "\n".join(lines) + "\n"


def nodes_file(nodes: Sequence[str]) -> str:
    """Every node of the cluster, one per line."""
    body = "".join(f"{node}\n" for node in nodes)
    return f"# written by beamfleet: the cluster's nodes\n{body}"


def _toml_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def agent_config(
    paths: HostPaths,
    *,
    basename: str,
    discovery_dns: str,
    cidr: str,
    port: int,
    interval: float,
    tls_version: int = 0,
) -> str:
    """The agent's TOML: it drives only this host's node (``local-epmd``); its peers come
    from ``discovery_dns`` when set, else from the nodes file."""
    lines = [
        "# written by beamfleet: the discovery agent of this host",
        'ownership = "local-epmd"',
        f"cookie_file = {_toml_string(paths.cookie)}",
        f'listen = "127.0.0.1:{port}"',
        f"interval = {float(interval)}",
    ]
    if discovery_dns and cidr:
        lines.append(f"subnet = {_toml_string(cidr)}")
    if tls_version:
        # the version makes a renewal a change of this file: the agent restarts and loads
        # the new certificate (it reads it once, at start)
        lines += [
            f"# TLS distribution certificates: version {tls_version}",
            f"tls_cert = {_toml_string(paths.tls_agent)}",
            f"tls_key = {_toml_string(paths.tls_agent)}",
            f"tls_ca = {_toml_string(paths.tls_ca)}",
        ]
    lines.append("")
    lines.append("[[source]]")
    if discovery_dns:
        lines += ['kind = "dns"', f"arg = {_toml_string(discovery_dns)}"]
    else:
        lines += ['kind = "file"', f"arg = {_toml_string(paths.nodes)}"]
    lines.append(f"basename = {_toml_string(basename)}")
    return "\n".join(lines) + "\n"


def agent_unit(paths: HostPaths, user: str) -> str:
    """The agent's unit: as the node's user (it reads the same cookie file)."""
    return (
        "[Unit]\n"
        f"Description=beamfleet discovery agent for {paths.app}\n"
        "After=network-online.target\nWants=network-online.target\n\n"
        "[Service]\nType=exec\n"
        f"User={user}\nGroup={user}\n"
        f"ExecStart={BIN}/beamfleet agent --config {paths.agent_config}\n"
        "Restart=always\nRestartSec=2\n"
        f"{_HARDENING}\n"
        "[Install]\nWantedBy=multi-user.target\n"
    )


CONTAINER_COOKIE = "/run/secrets/erlang_cookie"


def container_name(paths: HostPaths) -> str:
    return f"beamfleet-{paths.app}"


def image_node_unit(paths: HostPaths, unit: NodeUnit, image: str) -> str:
    """The node's unit when it runs as a container on the host's network (``host_runner:
    docker``): the image's own entrypoint names the node (a derived image, see
    cluster.md), as the node's user, the cookie file mounted read-only."""
    name = container_name(paths)
    # $$: a literal $ for the shell (systemd expands $NAME itself)
    run = (
        f"exec /usr/bin/docker run --rm --name {name} --network host "
        f'--user "$$(id -u {unit.user}):$$(id -g {unit.user})" '
        f"--env-file {paths.node_env} -v {paths.cookie}:{CONTAINER_COOKIE}:ro {image}"
    )
    return (
        "[Unit]\n"
        f"Description=beamfleet node {unit.basename} of {paths.app} (container on the "
        "host network)\n"
        f"Requires={EPMD_UNIT} docker.service\n"
        f"After={EPMD_UNIT} docker.service network-online.target\n"
        "Wants=network-online.target\n\n"
        "[Service]\nType=exec\n"
        f"ExecStartPre=-/usr/bin/docker rm -f {name}\n"
        f"ExecStart=/bin/sh -c '{run}'\n"
        f"ExecStop=/usr/bin/docker stop -t 30 {name}\n"
        "TimeoutStopSec=40\n"
        "Restart=on-failure\nRestartSec=2\n\n"
        "[Install]\nWantedBy=multi-user.target\n"
    )


def image_node_env(paths: HostPaths, unit: NodeUnit) -> str:
    """The container's environment (``docker run --env-file``: ``KEY=value`` lines, taken
    as they are, no quoting)."""
    low, high = unit.dist_ports
    env: dict[str, str] = {
        "HOME": "/tmp/beamfleet-home",
        "BEAMFLEET_COOKIE_FILE": CONTAINER_COOKIE,
        "BEAMFLEET_BASENAME": unit.basename,
        "ERL_AFLAGS": (
            f"-kernel inet_dist_listen_min {low} inet_dist_listen_max {high} -start_epmd false"
        ),
        "RELEASE_TMP": "/tmp/beamfleet-release",
        "RELX_OUT_FILE_PATH": "/tmp/beamfleet-release",
    }
    env.update(_naming_env(unit))
    env.update(unit.env)
    lines = [f"{key}={value}" for key, value in env.items()]
    return "# written by beamfleet: the node's environment (no secret)\n" + "\n".join(lines) + "\n"


def firewall_table(app: str) -> str:
    return f"beamfleet_{app.replace('-', '_').replace('.', '_')}"


def firewall_rules(paths: HostPaths, cidr: str, dist_ports: tuple[int, int]) -> str:
    """nftables rules: the port mapper and the distribution ports only from ``cidr`` (and
    loopback). A table of beamfleet's own, replaced whole on each load ("table; delete
    table; table {...}"), so the host's other rules are left alone."""
    table = firewall_table(paths.app)
    low, high = dist_ports
    ports = f"{{ {EPMD_PORT}, {low}-{high} }}"
    return (
        "#!/usr/sbin/nft -f\n"
        f"# written by beamfleet: {paths.app}'s port mapper and distribution from {cidr} only\n"
        f"table inet {table}\n"
        f"delete table inet {table}\n"
        f"table inet {table} {{\n"
        "  chain input {\n"
        "    type filter hook input priority filter; policy accept;\n"
        '    iifname "lo" accept\n'
        f"    ip saddr {cidr} tcp dport {ports} accept\n"
        f"    tcp dport {ports} drop\n"
        "  }\n"
        "}\n"
    )


def firewall_path(paths: HostPaths) -> str:
    return f"{paths.etc}/firewall.nft"


def firewall_unit(paths: HostPaths) -> str:
    """Loads the rules at boot, before the port mapper; stopping it removes them."""
    table = firewall_table(paths.app)
    return (
        "[Unit]\n"
        f"Description=beamfleet firewall rules for {paths.app} (port mapper, distribution)\n"
        f"Before={EPMD_UNIT} network-pre.target\nWants=network-pre.target\n"
        "DefaultDependencies=no\n\n"
        "[Service]\nType=oneshot\nRemainAfterExit=yes\n"
        f"ExecStart=/usr/sbin/nft -f {firewall_path(paths)}\n"
        f"ExecStop=/usr/sbin/nft delete table inet {table}\n\n"
        "[Install]\nWantedBy=multi-user.target\n"
    )


def firewall_unit_name(paths: HostPaths) -> str:
    return f"beamfleet-{paths.app}-firewall.service"

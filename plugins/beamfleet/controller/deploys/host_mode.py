"""Host mode: the BEAM release run by systemd on every host, no Docker.

``cluster_mode: host`` in the inventory. Every host of the inventory runs one node of the
application; adding a host and running ``deploys/cluster.py`` again adds a node. On each
host:

* the Erlang runtime (Debian's ``erlang-base``) when the release bundles no ERTS;
* the port mapper as a unit of its own, on loopback and the cluster address only (Debian's
  ``epmd.socket``, on every interface, is masked);
* the release unpacked per version under ``/opt/beamfleet/apps/<app>/releases``, adapted
  so that the cookie never reaches a command line, and a ``current`` link;
* the node as a hardened unit, running as its own user, named at start
  ``<basename>@<the host's address on cluster_cidr>`` (or ``<basename>@<hostname>`` with
  ``node_names: short``), distribution on a pinned port range and that address only;
* the cookie, a 0400 file of that user, generated on the first host and copied host to
  host at execution time, never shown;
* beamfleet's runtime (a wheel built here, unpacked there) and the discovery agent, a unit
  driving only its host's node; its peers come from ``discovery_dns`` or from the
  inventory's hosts, written to a file it watches.

A new release, or a change of the node's environment, rolls one host at a time: the node
restarts on it and must be back in the complete mesh before the next host; one that is
not is switched back and the run stops (:func:`~beamfleet.controller.operations.hosts.node_rolled`).

Everything is decided while pyinfra plans, from one fact per host: a host that cannot
run the release (glibc, architecture, OTP), a host without an address on
``cluster_cidr``, two hosts with one node name, all stop the run before any host is
changed. An unchanged run changes nothing.
"""

from __future__ import annotations

import ipaddress
import json
import re
import secrets
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from weakref import WeakKeyDictionary

from gevent.lock import Semaphore
from pyinfra.api.exceptions import PyinfraError
from pyinfra.api.facts import FactBase
from pyinfra.api.host import Host
from pyinfra.api.state import State
from pyinfra.context import host, state
from pyinfra.facts.deb import DebPackages
from pyinfra.operations import apt, files, server
from pyinfra.operations.util import any_changed
from typing_extensions import override

from beamfleet.controller import host_files
from beamfleet.controller.deploys import images
from beamfleet.controller.deploys.agent import AGENT_KEYS
from beamfleet.controller.deploys.app import APP_KEYS
from beamfleet.controller.deploys.dist_tls import CA_DAYS, plan_dist_tls
from beamfleet.controller.deploys.host_runners import (
    ImageRunner,
    NodeRunner,
    ReleaseRunner,
)
from beamfleet.controller.facts.dist_tls import DistTlsState
from beamfleet.controller.facts.hosts import HostModeState, HostState
from beamfleet.controller.host_files import HostPaths, NodeUnit
from beamfleet.controller.host_release import (
    PROBE,
    HostRelease,
    HostReleaseError,
    HostRuntime,
    compatibility_problems,
    export_from_image,
    inspect_tarball,
)
from beamfleet.controller.inventory import (
    KeySpec,
    KeyTable,
    cidr,
    positive,
    register_keys,
    validate_state,
)
from beamfleet.controller.operations import dist_tls as dist_tls_ops
from beamfleet.controller.operations import hosts as host_ops
from beamfleet.controller.runtime_wheel import build_runtime_wheel, runtime_digest
from beamfleet.runtime.naming.providers import METADATA_PROVIDERS

MODES = ("swarm", "host")
# useradd's limit is 32 characters; a login name starts with a letter
_USER = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
# What the agent and the gate need on a host; the runtime when the release has no ERTS.
AGENT_PACKAGES = ("python3", "python3-click", "python3-dnspython")
# erlang-ssl: ssl and what it needs (crypto, public_key), for releases that include ssl
# (TLS distribution needs it) and run on the host's OTP
ERLANG_PACKAGES = ("erlang-base", "erlang-ssl")


def _one_of(*choices: str) -> Any:
    def check(value: Any) -> str | None:
        return None if value in choices else f"use one of {', '.join(choices)}"

    return check


def _user_name(value: Any) -> str | None:
    if not _USER.fullmatch(value):
        return (
            "a login name: a lowercase letter or `_`, then lowercase letters, digits, `_` "
            "or `-` (at most 32)"
        )
    return None


def _port(value: Any) -> str | None:
    return None if 1024 <= value <= 65535 else "a port from 1024 to 65535"


HOST_KEYS = KeyTable(
    "Host mode",
    (
        KeySpec(
            "cluster_mode",
            (str,),
            "`swarm`: nodes are Swarm tasks; `host`: each host runs one node as a systemd "
            "service (no Docker), see Host mode",
            "swarm",
            _one_of(*MODES),
        ),
        KeySpec(
            "cluster_cidr",
            (str,),
            "host mode: the network whose address names each host's node "
            "(`<basename>@<address>`), and the only one its distribution listens on",
            check=cidr("10.0.0.0/24"),
            default_doc="required with long names",
        ),
        KeySpec(
            "node_names",
            (str,),
            "host mode: `long` (`<basename>@<address>`) or `short` "
            "(`<basename>@<hostname>`, `-sname`; every host must resolve every hostname)",
            "long",
            _one_of("long", "short"),
        ),
        KeySpec(
            "node_provider",
            (str,),
            "host mode, long names: where a node reads its address at start: a cloud's "
            "metadata API (`aws`, `gcp`, `azure`, `digitalocean`, `openstack`, `rancher`); "
            "the address must be the host's one on `cluster_cidr`",
            check=_one_of(*METADATA_PROVIDERS),
            default_doc="none: the host's interfaces, filtered by `cluster_cidr`",
        ),
        KeySpec(
            "host_runner",
            (str,),
            "host mode: `release` (the release unpacked on the host, run by systemd) or "
            "`docker` (the application image run on the host's network, `app_image` or "
            "built from `app_build`)",
            "release",
            _one_of("release", "docker"),
        ),
        KeySpec(
            "app_release",
            (str,),
            "host mode: a release tarball on the controller (`mix release`, rebar3 `tar`), "
            "relative to where pyinfra runs",
            default_doc="built from `app_build`",
        ),
        KeySpec(
            "app_release_max_mb",
            (int,),
            "host mode: the most a release tarball may unpack to (MiB); a larger one is "
            "refused before any host is touched",
            512,
            positive,
        ),
        KeySpec(
            "app_release_max_files",
            (int,),
            "host mode: the most members a release tarball may hold",
            50_000,
            positive,
        ),
        KeySpec(
            "app_user",
            (str,),
            "host mode: the account the node and its agent run as (created as a system user)",
            check=_user_name,
            default_doc="`bf-<app_name>` (at most 32 characters)",
        ),
        KeySpec("dist_port_min", (int,), "host mode: lowest distribution port", 9100, _port),
        KeySpec("dist_port_max", (int,), "host mode: highest distribution port", 9109, _port),
        KeySpec(
            "discovery_dns",
            (str,),
            "host mode: a DNS name whose A answers are the hosts, for the agents' peers",
            default_doc="none: the inventory's hosts, in a file",
        ),
        KeySpec(
            "host_firewall",
            (bool,),
            "host mode: nftables rules that admit the port mapper (4369) and the "
            "distribution ports from `cluster_cidr` only; other sources are dropped",
            False,
        ),
        KeySpec(
            "roll_timeout",
            (int,),
            "seconds a replaced node (a Swarm task, or a host's node) has to be in the "
            "complete mesh (and the mesh to be complete before a roll) before the roll "
            "stops and puts the previous version back",
            120,
            positive,
        ),
    ),
)
register_keys(HOST_KEYS)


class HostModeError(PyinfraError):
    """Host mode cannot go on; the message names each problem and how to fix it."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        text = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"host mode needs fixing before anything is changed:\n{text}")


def cluster_mode(run: State) -> str:
    """``swarm`` or ``host``, from the first host's data (validation makes them agree)."""
    first = next(iter(run.inventory), None)
    return str(HOST_KEYS.value(first.data, "cluster_mode")) if first is not None else "swarm"


@dataclass(frozen=True)
class HostSettings:
    """Host mode's settings, read from the first host's data."""

    app: str
    basename: str
    user: str
    env: dict[str, str]
    build: str
    release: str | None
    runner: str
    image: str
    registry: bool
    cidr: ipaddress.IPv4Network | None
    short_names: bool
    provider: str
    dist_ports: tuple[int, int]
    firewall: bool
    discovery_dns: str
    roll_timeout: int
    agent_port: int
    agent_interval: float
    cookie_file: str | None
    check_timeout: int
    dist_tls: bool = False
    dist_tls_days: int = 30
    rotate_dist_tls: bool = False
    renew_dist_ca: bool = False
    release_max_bytes: int = 512 << 20
    release_max_members: int = 50_000

    @property
    def paths(self) -> HostPaths:
        return HostPaths(self.app)


def host_settings(data_host: Host | None = None) -> HostSettings:
    """Read the settings from a host's data (default: the inventory's first host)."""
    data = (data_host or first_host()).data
    problems: list[str] = []
    app = str(APP_KEYS.value(data, "app_name"))
    user = str(HOST_KEYS.value(data, "app_user") or f"bf-{app}"[:32])
    network = HOST_KEYS.value(data, "cluster_cidr")
    short = HOST_KEYS.value(data, "node_names") == "short"
    net: ipaddress.IPv4Network | None = None
    if network:
        parsed = ipaddress.ip_network(network, strict=False)
        if isinstance(parsed, ipaddress.IPv4Network):
            net = parsed
        else:
            problems.append(f"`cluster_cidr` {network}: host mode names nodes by IPv4 address")
    elif not short:
        problems.append(
            "`cluster_cidr` is not set: give the network whose address names each host's "
            "node (e.g. `cluster_cidr: 10.0.0.0/24`), or `node_names: short`"
        )
    low = int(HOST_KEYS.value(data, "dist_port_min"))
    high = int(HOST_KEYS.value(data, "dist_port_max"))
    if low > high:
        problems.append(f"`dist_port_min` ({low}) is above `dist_port_max` ({high})")
    provider = str(HOST_KEYS.value(data, "node_provider") or "")
    if provider and short:
        problems.append(
            "`node_provider` gives an address, but `node_names: short` names nodes by "
            "hostname: leave one of them unset"
        )
    discovery = str(HOST_KEYS.value(data, "discovery_dns") or "")
    if discovery and short:
        problems.append(
            "`discovery_dns` gives addresses, but `node_names: short` names nodes by hostname: "
            "leave `discovery_dns` unset (the agents then read the inventory's hosts)"
        )
    firewall = bool(HOST_KEYS.value(data, "host_firewall"))
    if firewall and net is None:
        problems.append("`host_firewall` admits `cluster_cidr` only: set `cluster_cidr`")
    dist_tls = bool(APP_KEYS.value(data, "app_dist_tls"))
    if dist_tls and HOST_KEYS.value(data, "host_runner") != "release":
        problems.append(
            "`app_dist_tls` in host mode runs releases only (`host_runner: release`): the "
            "image runner does not mount the certificates"
        )
    if problems:
        raise HostModeError(problems)
    from beamfleet.controller.deploys.cluster import CLUSTER_KEYS  # noqa: PLC0415 (cycle)

    return HostSettings(
        app=app,
        basename=str(APP_KEYS.value(data, "app_basename") or app),
        user=user,
        env={str(k): str(v) for k, v in dict(APP_KEYS.value(data, "app_env")).items()},
        build=str(APP_KEYS.value(data, "app_build")),
        release=HOST_KEYS.value(data, "app_release"),
        runner=str(HOST_KEYS.value(data, "host_runner")),
        image=str(APP_KEYS.value(data, "app_image") or ""),
        registry=bool(CLUSTER_KEYS.value(data, "image_registry")),
        cidr=net,
        short_names=short,
        provider=provider,
        dist_ports=(low, high),
        firewall=firewall,
        discovery_dns=discovery,
        roll_timeout=int(HOST_KEYS.value(data, "roll_timeout")),
        agent_port=int(AGENT_KEYS.value(data, "agent_port")),
        agent_interval=float(AGENT_KEYS.value(data, "agent_interval")),
        cookie_file=CLUSTER_KEYS.value(data, "cookie_file"),
        check_timeout=int(CLUSTER_KEYS.value(data, "check_timeout")),
        dist_tls=dist_tls,
        dist_tls_days=int(APP_KEYS.value(data, "app_dist_tls_days")),
        rotate_dist_tls=bool(CLUSTER_KEYS.value(data, "rotate_dist_tls")),
        renew_dist_ca=bool(CLUSTER_KEYS.value(data, "renew_dist_ca")),
        release_max_bytes=int(HOST_KEYS.value(data, "app_release_max_mb")) << 20,
        release_max_members=int(HOST_KEYS.value(data, "app_release_max_files")),
    )


def first_host() -> Host:
    """The host whose data holds the settings and whose shell makes the first cookie."""
    return next(iter(state.inventory))


class HostRuntimeProbe(FactBase[HostRuntime]):
    """
    What a host offers a release: glibc, Debian version, architecture, Erlang.

    .. code:: python

        runtime = host.get_fact(HostRuntimeProbe)
    """

    @override
    def command(self) -> str:
        return PROBE

    @override
    @staticmethod
    def default() -> HostRuntime:
        return HostRuntime()

    @override
    def process(self, output: list[str]) -> HostRuntime:
        return HostRuntime.parse("\n".join(output))


@dataclass(frozen=True)
class HostNode:
    """One host's part of the plan."""

    node: str
    address: str
    facts: HostState
    runtime: HostRuntime


@dataclass
class HostPlan:
    """What the run will do, decided once for all hosts."""

    settings: HostSettings
    salt: str
    # what a deploy ships (None for check.py and remove_host.py, which ship nothing)
    shipment: tuple[NodeRunner, Path] | None = None  # what the node runs, the runtime wheel
    nodes: dict[str, HostNode] = field(default_factory=dict)
    cookie_source: str | None = None  # the host whose cookie the others get; None: generate

    def _shipped(self) -> tuple[NodeRunner, Path]:
        if self.shipment is None:
            raise RuntimeError("this plan ships nothing (made for a check or a removal)")
        return self.shipment

    @property
    def runner(self) -> NodeRunner:
        return self._shipped()[0]

    @property
    def wheel(self) -> Path:
        return self._shipped()[1]

    @property
    def node_names(self) -> list[str]:
        return [n.node for n in self.nodes.values()]

    @property
    def cookie_value(self) -> str | None:
        """The user's cookie (``cookie_file`` on the controller), when given."""
        if not self.settings.cookie_file:
            return None
        from beamfleet.runtime.erlang_dist import read_cookie_file  # noqa: PLC0415

        return read_cookie_file(self.settings.cookie_file, private=True, strong=True)


def _release(settings: HostSettings) -> tuple[Path, HostRelease]:
    """The release tarball (given, or exported from the image built from ``app_build``)."""
    if settings.release:
        path = Path(settings.release)
        if not path.is_file():
            raise HostModeError(
                [f"`app_release` {path} is not a file here ({Path.cwd()}): give a release tarball"]
            )
    else:
        built = images.build(
            images.APP_REPO_DEFAULT, images.app_context(Path(settings.build)), archive=False
        )
        assert built.image_id is not None  # built here
        layout = images.inspect_release(built.ref, built.image_id)
        if layout.script is None:
            raise HostModeError(
                [
                    f"the image built from {settings.build} runs plain `erl`, not a release: "
                    "host mode runs a release (mix release, rebar3); give `app_release`"
                ]
            )
        root = layout.script.rsplit("/bin/", 1)[0]
        path = export_from_image(built.image_id, root, images.cache_dir() / "releases")
    try:
        return path, inspect_tarball(
            path, max_bytes=settings.release_max_bytes, max_members=settings.release_max_members
        )
    except HostReleaseError as exc:
        raise HostModeError([f"{path}: {exc}"]) from exc


_plans: WeakKeyDictionary[State, HostPlan] = WeakKeyDictionary()
_plan_lock = Semaphore()


def host_plan(run: State, *, ship: bool = True) -> HostPlan:
    """The run's plan (computed once, shared by every host's planning); raises
    :class:`HostModeError` listing every problem before any host is changed.

    ``ship``: a deploy's plan, with the release (built or given, checked against every
    host) and the runtime wheel; without, only the hosts' nodes (check, removal)."""
    with _plan_lock:
        plan = _plans.get(run)
        if plan is None:
            plan = _make_plan(run, ship)
            _plans[run] = plan
        return plan


def _make_plan(run: State, ship: bool) -> HostPlan:
    settings = host_settings()
    plan = HostPlan(settings, secrets.token_hex(16))
    release: HostRelease | None = None
    if ship:
        runner: NodeRunner
        if settings.runner == "docker":
            runner = ImageRunner(_image(settings))
        else:
            archive, release = _release(settings)
            runner = ReleaseRunner(release, archive)
        plan.shipment = (runner, build_runtime_wheel(images.cache_dir() / "runtime"))
    paths = settings.paths
    units = (
        host_files.EPMD_UNIT, paths.node_unit, paths.agent_unit,
        host_files.firewall_unit_name(paths),
    )  # fmt: skip
    problems: list[str] = []
    names: dict[str, str] = {}
    for member in run.inventory:
        facts = member.get_fact(
            HostModeState, app_dir=paths.app_dir, cookie=paths.cookie, salt=plan.salt,
            files=paths.files(), units=units,
        )  # fmt: skip
        runtime = member.get_fact(HostRuntimeProbe) if release else HostRuntime()
        if release is not None:
            problems += compatibility_problems(release, runtime, member.name)
        address = ""
        if settings.cidr is not None:
            found = facts.addresses_in(settings.cidr)
            if len(found) != 1:
                have = ", ".join(str(a) for a in facts.addresses) or "none"
                problems.append(
                    f"{member.name} has {'no' if not found else len(found)} address(es) on "
                    f"cluster_cidr {settings.cidr} (its IPv4 addresses: {have}): each host "
                    "needs exactly one, it names the node"
                )
                continue
            address = found[0]
        suffix = facts.hostname if settings.short_names else address
        if not suffix:
            problems.append(f"{member.name}: its hostname could not be read")
            continue
        node = f"{settings.basename}@{suffix}"
        if node in names:
            problems.append(f"{member.name} and {names[node]} would both run {node}")
        names[node] = member.name
        plan.nodes[member.name] = HostNode(node, address, facts, runtime)
    if problems:
        raise HostModeError(problems)
    with_cookie = [name for name, n in plan.nodes.items() if n.facts.cookie_digest]
    plan.cookie_source = with_cookie[0] if with_cookie else None
    return plan


def _image(settings: HostSettings) -> images.Image:
    """``host_runner: docker``: the application image (given or built), derived so that
    it names its node; pulled by the hosts with ``image_registry``."""
    if settings.release:
        raise HostModeError(
            ["`app_release` is a release tarball: `host_runner: docker` runs an image "
             "(`app_image`, or built from `app_build`)"]
        )  # fmt: skip
    if settings.image:
        return (
            images.Image(ref=settings.image)
            if settings.registry
            else images.app_image(settings.image)
        )
    built = images.build(
        images.APP_REPO_DEFAULT, images.app_context(Path(settings.build)), archive=False
    )
    return images.app_image(built.ref, built)


def _node_unit(plan: HostPlan, tls_version: int = 0) -> NodeUnit:
    s = plan.settings
    return plan.runner.node_unit(
        NodeUnit(
            name="",
            kind="",
            version="",
            user=s.user,
            basename=s.basename,
            cidr=str(s.cidr or ""),
            short_names=s.short_names,
            provider=s.provider,
            dist_ports=s.dist_ports,
            env=s.env,
            tls_version=tls_version,
        )
    )


def _mask_debian_epmd() -> None:
    links = [
        files.link(
            name=f"Mask Debian's {unit} (it listens on every interface)",
            path=f"/etc/systemd/system/{unit}",
            target="/dev/null",
        )
        for unit in host_files.DEBIAN_EPMD_UNITS
    ]
    server.shell(
        name="Stop Debian's port mapper",
        commands=[
            "systemctl daemon-reload",
            "systemctl stop " + " ".join(host_files.DEBIAN_EPMD_UNITS) + " 2>/dev/null || true",
        ],
        _if=any_changed(*links),
    )


def _packages(runner: NodeRunner, firewall: bool) -> None:
    wanted = list(AGENT_PACKAGES) + (list(ERLANG_PACKAGES) if runner.needs_erlang_base else [])
    wanted += ["nftables"] if firewall else []
    installed = host.get_fact(DebPackages)
    if all(p in installed for p in wanted):
        return
    apt.update(name="Update apt's package lists (packages are missing)")
    apt.packages(name=f"Install {', '.join(wanted)}", packages=wanted, no_recommends=True)


def _account(s: HostSettings) -> None:
    server.group(name=f"Group {s.user}", group=s.user, system=True)
    server.user(
        name=f"User {s.user} (runs the node and its agent)",
        user=s.user,
        group=s.user,
        system=True,
        home=s.paths.state,
        create_home=False,
        shell="/usr/sbin/nologin",
    )
    for directory in (host_files.BIN, host_files.RUNTIME, s.paths.releases, s.paths.etc):
        files.directory(
            name=f"Directory {directory}", path=directory, mode="755", user="root", group="root"
        )


def _cookie(plan: HostPlan, me: HostNode) -> None:
    paths, user = plan.settings.paths, plan.settings.user
    value = plan.cookie_value
    if value is not None:
        # the user's cookie: written where the host's differs (compared by salted digest)
        from hashlib import sha256  # noqa: PLC0415

        wanted = sha256((plan.salt + value).encode()).hexdigest()
        if me.facts.cookie_digest != wanted:
            host_ops.cookie_copied(
                name="The cluster's cookie (from cookie_file)",
                path=paths.cookie,
                user=user,
                value=value,
            )
        return
    if plan.cookie_source is None:
        if host.name == first_host().name:
            host_ops.cookie_generated(
                name="Generate the cluster's cookie", path=paths.cookie, user=user, present=False
            )
        source = first_host()
    else:
        source = state.inventory.get_host(plan.cookie_source)
    source_digest = plan.nodes[source.name].facts.cookie_digest
    if host.name != source.name and (
        source_digest is None or me.facts.cookie_digest != source_digest
    ):
        host_ops.cookie_copied(
            name=f"The cluster's cookie, copied from {source.name}",
            path=paths.cookie,
            user=user,
            source=source,
        )


def _runtime_files(plan: HostPlan, me: HostNode) -> None:
    """beamfleet's runtime: the wheel unpacked, ``current``, the commands in ``bin/``."""
    digest = runtime_digest(plan.wheel)
    runtime_dir = f"{host_files.RUNTIME}/{digest}"
    host_ops.archive_unpacked(
        name=f"beamfleet runtime {digest}",
        archive=str(plan.wheel),
        directory=runtime_dir,
        present=me.facts.runtime == digest,
        unpack='python3 -m zipfile -e "$archive" "$target"',
        after=(
            'chmod 755 "$target/beamfleet/assets/beamfleet-nodename" '
            '"$target/beamfleet/assets/release/beamfleet-entrypoint"',
            'chmod -R go-w "$target"',
        ),
    )
    files.link(name="Runtime in use", path=f"{host_files.RUNTIME}/current", target=digest)
    for name, asset in (
        ("beamfleet-nodename", "beamfleet-nodename"),
        ("beamfleet-entrypoint", "release/beamfleet-entrypoint"),
    ):
        files.link(
            name=f"{host_files.BIN}/{name}",
            path=f"{host_files.BIN}/{name}",
            target=f"{host_files.RUNTIME}/current/beamfleet/assets/{asset}",
        )


def _dist_tls(plan: HostPlan, me: HostNode) -> int:
    """``app_dist_tls``: the version of the certificates the node runs with (0: TCP).

    The first host keeps the CA (``<etc>/ca``, root only) and issues, with openssl, a
    certificate per node (named by the host part of its name) and one for the agents; each
    host gets its own and the agents' (0400, the node's user) and the CA certificate,
    copied through the controller's SSH channels, printed nowhere. A new version when a
    third of the lifetime is left, or with ``rotate_dist_tls``; a host added later gets its
    certificate in the current version.
    """
    s, paths = plan.settings, plan.settings.paths
    if not s.dist_tls:
        return 0
    ca_host = first_host()
    certs = ca_host.get_fact(DistTlsState, directory=paths.ca_dir)
    tls = plan_dist_tls(
        s.app, certs, now=time.time(), days=s.dist_tls_days, rotate=s.rotate_dist_tls,
        renew_ca=s.renew_dist_ca,
    )  # fmt: skip
    version = tls.secrets.version
    names = sorted({n.node.split("@", 1)[1] for n in plan.nodes.values()})
    missing = [] if tls.issue else [n for n in names if n not in certs.hosts]
    if host.name == ca_host.name and (tls.issue or missing):
        apt.packages(name="openssl (makes the certificates)", packages=["openssl"])
        dist_tls_ops.host_certificates_issued(
            name=f"TLS certificates v{version} ({tls.issue or 'for ' + ', '.join(missing)})",
            app=s.app, directory=paths.ca_dir, version=version, days=s.dist_tls_days,
            ca_days=CA_DAYS, hosts=names, renew_ca=tls.renew_ca,
        )  # fmt: skip
    if me.facts.files.get(paths.tls_version) != host_files.digest(f"{version}\n"):
        here = f"{paths.ca_dir}/v{version}"
        own = me.node.split("@", 1)[1]
        dist_tls_ops.host_certificates_copied(
            name=f"TLS certificates v{version} of {me.node}, from {ca_host.name}",
            source=ca_host, version=version, user=s.user, directory=paths.tls_dir,
            version_file=paths.tls_version,
            files=[
                (f"{here}/hosts/{own}.pem", paths.tls_node, "400"),
                (f"{here}/agent.pem", paths.tls_agent, "400"),
                (f"{paths.ca_dir}/ca.pem", paths.tls_ca, "444"),
            ],
        )  # fmt: skip
    return version


def _switches_distribution(plan: HostPlan, me: HostNode, tls_version: int) -> bool:
    """The node in place runs the other distribution (TCP vs TLS) than the one wanted:
    its installed environment is what it would be with the other one."""
    if me.facts.current is None:
        return False
    installed = me.facts.files.get(plan.settings.paths.node_env)
    runner, paths = plan.runner, plan.settings.paths
    if tls_version:
        return installed == host_files.digest(runner.env(paths, _node_unit(plan, 0)))
    # off: any version in place means TLS
    return installed is not None and installed != host_files.digest(
        runner.env(paths, _node_unit(plan, 0))
    ) and paths.tls_version in me.facts.files


def _file(
    me: HostNode, path: str, content: str, mode: str = "644", *, staged: bool = False
) -> bool:
    """Write ``content`` unless the host has it (``staged``: for the node's next restart);
    whether it changes."""
    wanted = host_files.digest(content)
    have = me.facts.files.get(path)
    host_ops.file_content(
        name=f"File {path}{' (staged for the restart)' if staged else ''}",
        path=path, content=content, digest=have, wanted=wanted, mode=mode, staged=staged,
    )  # fmt: skip
    return have != wanted


def host_cluster() -> None:
    """Everything host mode does on the current host (call from a deploy file)."""
    validate_state(state)
    plan = host_plan(state)
    me = plan.nodes[host.name]
    s, paths = plan.settings, plan.settings.paths
    runner = plan.runner
    _mask_debian_epmd()
    _packages(runner, s.firewall)
    _account(s)
    _cookie(plan, me)
    tls_version = _dist_tls(plan, me)
    target = runner.install(me.facts, paths)
    _runtime_files(plan, me)
    epmd = runner.epmd
    changed_launcher = _file(me, f"{host_files.BIN}/beamfleet", host_files.launcher(), "755")
    # A running node's port mapper changes in the node's own (gated, serial) step: restarted,
    # the port mapper takes the node with it (Requires=), so restarting it here would
    # restart every node at once. Without a node yet, it is written and restarted here.
    has_node = me.facts.current is not None
    epmd_file = paths.unit_path(host_files.EPMD_UNIT)
    epmd_changed = _file(me, epmd_file, host_files.epmd_unit(epmd, me.address), staged=has_node)
    node = _node_unit(plan, tls_version)
    switching = _switches_distribution(plan, me, tls_version)
    # the node's own unit and environment are put in place by its (re)start (node_rolled),
    # with the port mapper's unit when it changed (host_roll.sh restarts the two together)
    node_config = (paths.unit_path(paths.node_unit), paths.node_env)
    roll_config = (epmd_file, *node_config) if has_node else node_config
    node_changed = _file(me, node_config[0], runner.unit(paths, node), staged=True)
    node_changed |= _file(me, node_config[1], runner.env(paths, node), staged=True)
    _file(me, paths.nodes, host_files.nodes_file(plan.node_names))
    agent_changed = _file(
        me,
        paths.agent_config,
        host_files.agent_config(
            paths, basename=s.basename, discovery_dns=s.discovery_dns,
            cidr=str(s.cidr or ""), port=s.agent_port, interval=s.agent_interval,
            tls_version=tls_version,
        ),
    )  # fmt: skip
    agent_changed |= _file(
        me, paths.unit_path(paths.agent_unit), host_files.agent_unit(paths, s.user)
    )
    agent_changed |= changed_launcher or me.facts.runtime != runtime_digest(plan.wheel)
    active = [u for u, st in me.facts.active.items() if st == "active"]
    _firewall(me, s, active)
    host_ops.units_started(
        name="Port mapper",
        units=[host_files.EPMD_UNIT],
        restart=[host_files.EPMD_UNIT]
        if epmd_changed and not has_node and me.facts.is_active(host_files.EPMD_UNIT)
        else [],
        reload=epmd_changed or node_changed or agent_changed,
        active=active,
    )
    if me.facts.current is None:
        # a new node: started on every new host at once (check.py proves the mesh)
        host_ops.node_rolled(
            name=f"Start node {me.node} on {runner.install_name}",
            current=paths.current, target=target, unit=paths.node_unit, nodes_file=paths.nodes,
            cookie=paths.cookie, timeout=s.roll_timeout, node=me.node, first_start=True,
            config=node_config,
        )  # fmt: skip
    elif switching:
        # TCP <-> TLS: OTP cannot connect the two, so no mesh is complete half-way; every
        # node restarts at once, ungated (check.py proves the mesh after)
        host_ops.node_rolled(
            name=f"Restart node {me.node} on {'TLS' if tls_version else 'TCP'} distribution",
            current=paths.current, target=target, unit=paths.node_unit, nodes_file=paths.nodes,
            cookie=paths.cookie, timeout=s.roll_timeout, node=me.node, first_start=False,
            config=roll_config, restart=True,
        )  # fmt: skip
    elif me.facts.current != runner.install_name or node_changed or epmd_changed:
        # after every new node has started: the gate expects them. A changed port mapper
        # alone rolls the node too (host_roll.sh restarts them together)
        host_ops.node_rolled(
            name=f"Roll node {me.node} to {runner.install_name}"
            + (" with its new port mapper" if epmd_changed else ""),
            current=paths.current, target=target, unit=paths.node_unit, nodes_file=paths.nodes,
            cookie=paths.cookie, timeout=s.roll_timeout, node=me.node, first_start=False,
            config=roll_config, _serial=True,
        )  # fmt: skip
    else:
        host_ops.units_started(name=f"Node {me.node}", units=[paths.node_unit], active=active)
    host_ops.units_started(
        name="Discovery agent",
        units=[paths.agent_unit],
        restart=[paths.agent_unit]
        if agent_changed and me.facts.is_active(paths.agent_unit)
        else [],
        active=active,
    )


def _firewall(me: HostNode, s: HostSettings, active: list[str]) -> None:
    """``host_firewall``: the rules and the unit that loads them (reloaded when they
    change); without it, a unit left by an earlier run is stopped (its rules removed)."""
    paths = s.paths
    unit = host_files.firewall_unit_name(paths)
    if not s.firewall:
        if unit in active:
            server.shell(
                name="Remove the firewall rules", commands=[f"systemctl disable --now {unit}"]
            )
        return
    rules = host_files.firewall_rules(paths, str(s.cidr), s.dist_ports)
    changed = _file(me, host_files.firewall_path(paths), rules)
    changed |= _file(me, paths.unit_path(unit), host_files.firewall_unit(paths))
    host_ops.units_started(
        name="Firewall rules",
        units=[unit],
        restart=[unit] if changed and unit in active else [],
        reload=changed,
        active=active,
    )


class HostMeshReport(FactBase[dict[str, Any]]):
    """
    The mesh as the nodes see it, asked from a host with the runtime and the cookie
    (``beamfleet mesh``); the discovery name's answers there when given.

    + nodes: every node of the cluster
    + cookie: the cookie file on that host
    + timeout: seconds to wait for a complete mesh
    + discovery_dns: the agents' DNS name, or ""
    + tls: TLS distribution: the client certificate bundle and the CA (``("", "")``: TCP)

    .. code:: python

        report = host.get_fact(HostMeshReport, nodes=("demo@10.0.0.1",), cookie=paths.cookie,
                               timeout=60, discovery_dns="")
    """

    @override
    def command(
        self, nodes: tuple[str, ...], cookie: str, timeout: int, discovery_dns: str,
        tls: tuple[str, str] = ("", ""),
    ) -> str:  # fmt: skip
        lookup = ""
        if discovery_dns:
            lookup = (
                f"getent ahostsv4 {shlex.quote(discovery_dns)} | "
                "awk '{ print \"dns\", $1 }' | sort -u; "
            )
        bundle, ca = tls
        flags = ["--tls-cert", bundle, "--tls-key", bundle, "--tls-ca", ca] if bundle else []
        mesh = shlex.join(
            [f"{host_files.BIN}/beamfleet", "mesh", "--json", "--cookie-file", cookie,
             "--timeout", str(timeout), *flags, *nodes]
        )  # fmt: skip
        # the report is printed whether the mesh is complete or not
        return f"{lookup}{mesh} 2>/dev/null; true"

    @override
    @staticmethod
    def default() -> dict[str, Any]:
        return {}

    @override
    def process(self, output: list[str]) -> dict[str, Any]:
        dns = [line.split()[1] for line in output if line.startswith("dns ")]
        reports = [line for line in output if line.startswith("{")]
        report: dict[str, Any] = json.loads(reports[-1]) if reports else {}
        report["dns"] = dns
        return report


def check_host_mesh() -> dict[str, Any] | None:
    """On the first host: the mesh report ``check.py`` prints (None on the other hosts)."""
    validate_state(state)
    if host.name != first_host().name:
        return None
    plan = host_plan(state, ship=False)
    s = plan.settings
    raw = host.get_fact(
        HostMeshReport, nodes=tuple(plan.node_names), cookie=s.paths.cookie,
        timeout=s.check_timeout, discovery_dns=s.discovery_dns,
        tls=(s.paths.tls_agent, s.paths.tls_ca) if s.dist_tls else ("", ""),
    )  # fmt: skip
    nodes: dict[str, Any] = raw.get("nodes") or {}
    problems = list(raw.get("problems") or [])
    if not raw:
        problems = [f"`beamfleet mesh` gave no report on {host.name}: is the runtime installed "
                    "(run deploys/cluster.py)?"]  # fmt: skip
    return {
        "app": s.app,
        "desired": len(plan.node_names),
        "running": [n.rsplit("@", 1)[1] for n, v in nodes.items() if v.get("ok")],
        "dns": raw.get("dns")
        if s.discovery_dns
        else [n.rsplit("@", 1)[1] for n in plan.node_names],
        "source": f"in {s.discovery_dns}" if s.discovery_dns else "in the nodes file",
        "nodes": nodes,
        "missing": raw.get("missing") or {},
        "problems": problems,
        "complete": bool(raw.get("complete")),
        "seconds": raw.get("seconds"),
    }


def remove_from_hosts(names: set[str]) -> None:
    """Host mode's ``remove_host.py``: stop the named hosts' node, agent and port mapper
    (the node stops cleanly: its peers see one nodedown); the others' nodes file drops them."""
    validate_state(state)
    unknown = names - {h.name for h in state.inventory}
    if unknown:
        raise HostModeError([f"not in the inventory: {', '.join(sorted(unknown))}"])
    if len(names) >= len(state.inventory):
        raise HostModeError(["that would remove every host: remove fewer"])
    plan = host_plan(state, ship=False)
    paths = plan.settings.paths
    me = plan.nodes[host.name]
    if host.name in names:
        units = [
            paths.agent_unit, paths.node_unit, host_files.EPMD_UNIT,
            host_files.firewall_unit_name(paths),
        ]  # fmt: skip
        running = [u for u in units if me.facts.is_active(u)]
        server.shell(
            name=f"Stop and disable {', '.join(units)}",
            commands=[f"systemctl disable --now {' '.join(running)}"] if running else [],
        )
        return
    kept = [n.node for name, n in plan.nodes.items() if name not in names]
    _file(me, paths.nodes, host_files.nodes_file(kept))

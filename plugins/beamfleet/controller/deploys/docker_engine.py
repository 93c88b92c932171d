"""Reusable deploy: the Docker engine from the distribution's packages (Debian/Ubuntu).

``apt`` installs ``docker.io`` (no recommends), ``/etc/docker/daemon.json`` comes from
the host's ``docker_daemon`` data and is written *before* the install so the engine's
first start already uses it, and ``docker.service`` is enabled and running. A later
change of ``docker_daemon`` restarts the engine once.

The kernel's neighbour (ARP/NDP) table is sized for overlay networks: every task on an
overlay is a neighbour of the host, and with the kernel's defaults (gc_thresh1/2/3 =
128/512/1024) a few dozen tasks overflow it ("neighbor table overflow"), after which the
host drops traffic, SSH included. :data:`NEIGHBOUR_DEFAULTS` go to a file in
``/etc/sysctl.d`` (systemd-sysctl applies it at every boot) and into the running kernel
(``neighbour_table``).
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from io import StringIO
from typing import Any

from pyinfra import logger
from pyinfra.api.deploy import deploy
from pyinfra.api.exceptions import DeployError
from pyinfra.context import host
from pyinfra.facts.docker import DockerVersion
from pyinfra.facts.server import LinuxDistribution
from pyinfra.operations import apt, files, server, systemd

from beamfleet.controller.facts.kernel import KernelSetting, KernelSettings
from beamfleet.controller.inventory import KeySpec, KeyTable

SUPPORTED_DISTRIBUTIONS = ("Debian", "Ubuntu")
DAEMON_JSON = "/etc/docker/daemon.json"
# Re-read the package lists at most once a day: an unchanged re-run stays offline.
APT_CACHE_SECONDS = 24 * 3600

# Room for a few hundred overlay peers per host.
NEIGHBOUR_DEFAULTS = {"gc_thresh1": 4096, "gc_thresh2": 8192, "gc_thresh3": 16384}
NEIGHBOUR_SYSCTL_FILE = "/etc/sysctl.d/60-beamfleet-neighbour.conf"
_FAMILIES = ("ipv4", "ipv6")


def _neighbour_table(value: Any) -> str | None:
    if not isinstance(value, dict):
        # `false` and 0 leave the kernel alone; True is an int too, and means nothing here
        if value is False or (value == 0 and not isinstance(value, bool)):
            return None
        return (
            "give `false` to leave the kernel alone, or "
            "{gc_thresh1: int, gc_thresh2: int, gc_thresh3: int}"
        )
    if set(value) != set(NEIGHBOUR_DEFAULTS):
        return f"give exactly the keys {sorted(NEIGHBOUR_DEFAULTS)}, not {sorted(value)}"
    numbers = [value[name] for name in sorted(NEIGHBOUR_DEFAULTS)]
    if not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in numbers):
        return "each threshold must be a whole number greater than 0"
    if numbers != sorted(numbers):
        return "gc_thresh1 <= gc_thresh2 <= gc_thresh3, as the kernel uses them"
    return None


ENGINE_KEYS = KeyTable(
    "Docker engine",
    (
        KeySpec(
            "docker_daemon",
            (dict,),
            "content of `/etc/docker/daemon.json` (written before the install; a later change "
            "restarts the engine once)",
            default_doc="file untouched",
        ),
        KeySpec(
            "neighbour_table",
            (dict, bool, int),
            "kernel neighbour (ARP) table thresholds for IPv4 and IPv6, set now and at every "
            f"boot (`{NEIGHBOUR_SYSCTL_FILE}`): overlay tasks are neighbours, and the kernel's "
            "defaults (128/512/1024) overflow at a few dozen; `false` leaves the kernel alone",
            NEIGHBOUR_DEFAULTS,
            _neighbour_table,
            default_doc="`{gc_thresh1: 4096, gc_thresh2: 8192, gc_thresh3: 16384}`",
            type_doc="dict or `false`",
        ),
    ),
)
"""Read by this deploy; part of the swarm's key table (``SWARM_KEYS``)."""


def daemon_json(config: dict[str, Any]) -> str:
    """The daemon.json text for ``config`` (stable key order, so re-runs compare equal)."""
    return json.dumps(config, indent=2, sort_keys=True) + "\n"


def neighbour_sysctls(table: Mapping[str, int]) -> dict[str, int]:
    """The sysctl keys and values for thresholds ``{gc_thresh1: .., ..}``, IPv4 and IPv6.

    gc_thresh3 comes first: raising from the top down never has thresh1 above thresh3.

    Example: ``neighbour_sysctls(NEIGHBOUR_DEFAULTS)["net.ipv6.neigh.default.gc_thresh3"]``
    is 16384.
    """
    return {
        f"net.{family}.neigh.default.{name}": int(table[name])
        for family in _FAMILIES
        for name in sorted(table, reverse=True)
    }


def sysctl_conf(values: Mapping[str, int]) -> str:
    """The ``/etc/sysctl.d`` file for ``values``.

    IPv6 lines start with ``-``: systemd-sysctl then skips them on a kernel booted without
    IPv6 instead of reporting a failure.
    """
    lines = ["# Written by beamfleet (inventory key neighbour_table): overlay tasks are"]
    lines.append("# neighbours of the host, more than the kernel's default table holds.")
    for key, value in values.items():
        prefix = "-" if ".ipv6." in key else ""
        lines.append(f"{prefix}{key} = {value}")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class SysctlPlan:
    """What the running kernel needs: keys to write, and keys this host cannot write."""

    write: dict[str, int]
    read_only: tuple[str, ...] = ()


def plan_sysctls(wanted: Mapping[str, int], live: dict[str, KernelSetting]) -> SysctlPlan:
    """Compare wanted values with the kernel's (pure: unit-tested).

    A key the kernel does not have (IPv6 disabled) is skipped; one that differs but that
    the host cannot write (a read-only ``/proc/sys``: the host is a container, whose kernel
    is its machine's) is reported, not written.
    """
    write: dict[str, int] = {}
    read_only: list[str] = []
    for key, value in wanted.items():
        have = live.get(key)
        if have is None or have.value is None or have.value == str(value):
            continue
        if have.writable:
            write[key] = value
        else:
            read_only.append(key)
    return SysctlPlan(write, tuple(read_only))


def sysctl_write_command(values: Mapping[str, int]) -> str:
    """Write ``values`` into the running kernel, in the given order, stopping at the first
    failure. Straight to ``/proc/sys``: a minimal host may have no ``sysctl`` program.

    Example: ``echo 16384 > /proc/sys/net/ipv4/neigh/default/gc_thresh3 && ...``.
    """
    return " && ".join(
        f"echo {int(value)} > {shlex.quote('/proc/sys/' + key.replace('.', '/'))}"
        for key, value in values.items()
    )


def _neighbour_table_operations() -> None:
    setting = ENGINE_KEYS.value(host.data, "neighbour_table")
    if not isinstance(setting, dict):
        # `false`: the kernel is left alone, and so is it at the next boot.
        files.file(
            name="No beamfleet neighbour-table settings (neighbour_table: false)",
            path=NEIGHBOUR_SYSCTL_FILE,
            present=False,
        )
        return
    values = neighbour_sysctls(setting)
    files.put(
        name=f"Neighbour table thresholds at boot ({NEIGHBOUR_SYSCTL_FILE})",
        src=StringIO(sysctl_conf(values)),
        dest=NEIGHBOUR_SYSCTL_FILE,
        mode="644",
        create_remote_dir=True,  # /etc/sysctl.d comes with procps, which may be absent
    )
    plan = plan_sysctls(values, host.get_fact(KernelSettings, keys=tuple(values)))
    if plan.read_only:
        logger.warning(
            f"{host.name}: cannot set {', '.join(plan.read_only)} (/proc/sys is read-only: "
            "a container?): size the neighbour table on the machine that runs it, or set "
            "`neighbour_table: false` for this host"
        )
    if plan.write:
        server.shell(
            name="Neighbour table thresholds in the running kernel",
            commands=[sysctl_write_command(plan.write)],
        )


@deploy("Docker engine")
def docker_engine() -> None:
    """Install and start the Docker engine on a Debian or Ubuntu host.

    Host data (:data:`ENGINE_KEYS`): ``docker_daemon`` (dict, the content of
    /etc/docker/daemon.json; the file is left alone when the key is absent) and
    ``neighbour_table`` (the kernel's neighbour-table thresholds, or ``false``).
    """
    distro = host.get_fact(LinuxDistribution)
    if distro["name"] not in SUPPORTED_DISTRIBUTIONS:
        raise DeployError(
            f"{host.name}: the Docker engine deploy supports Debian and Ubuntu, not "
            f"{distro['name']!r}: install Docker there yourself, then run the swarm deploy"
        )
    # A docker client already there means an engine that may run with an old daemon.json.
    installed = bool(host.get_fact(DockerVersion))
    config: dict[str, Any] | None = ENGINE_KEYS.value(host.data, "docker_daemon")
    conf = None
    if config is not None:
        conf = files.put(
            name="Write /etc/docker/daemon.json",
            src=StringIO(daemon_json(config)),
            dest=DAEMON_JSON,
            mode="644",
            create_remote_dir=True,
        )
    _neighbour_table_operations()
    apt.packages(
        name="Install docker.io",
        packages=["docker.io"],
        no_recommends=True,
        update=True,
        cache_time=APT_CACHE_SECONDS,
    )
    systemd.service(
        name="docker.service enabled and running",
        service="docker.service",
        running=True,
        enabled=True,
    )
    if conf is not None and installed:
        # Only an engine that was running before this run has an outdated daemon.json;
        # a fresh install started with the new file already.
        systemd.service(
            name="Restart docker.service for the new daemon.json",
            service="docker.service",
            restarted=True,
            _if=conf.did_change,
        )

"""Facts about a host's Docker Swarm: its swarm state, the nodes, join tokens, overlays.

Each fact asks the host's own Docker engine through the ``docker`` CLI and returns plain
data (or an empty default when Docker is not installed yet, so a deploy can plan the
engine install and the swarm in one run).

Join tokens are secrets: :class:`SwarmJoinTokens` returns them wrapped in pyinfra's
``HiddenValue``, which prints as ``*MASKED*`` in pyinfra's output, logs and ``--json``.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any, TypedDict

from pyinfra.api.command import StringCommand
from pyinfra.api.facts import FactBase
from pyinfra.api.hiddenvalue import HiddenValue
from pyinfra.api.host import Host
from typing_extensions import override

from beamfleet.controller.facts.docker_objects import SwarmObjects
from beamfleet.controller.remote_scripts import script_shell

# Engine states of `docker info` .Swarm.LocalNodeState
SWARM_ACTIVE = "active"
SWARM_INACTIVE = "inactive"


def hidden(value: str, mask: str = "*MASKED*") -> HiddenValue:
    """Wrap a secret so pyinfra prints ``mask`` wherever it would print the value."""
    return HiddenValue(value, masked_value=mask)  # type: ignore[no-untyped-call]


class JoinTokens(TypedDict):
    """The two join tokens of a swarm, never in clear text."""

    worker: HiddenValue
    manager: HiddenValue


class SwarmInfo(FactBase[dict[str, Any]]):
    """
    The host engine's view of the swarm: ``docker info --format '{{json .Swarm}}'``.

    Keys used by beamfleet: ``LocalNodeState`` (``inactive``, ``pending``, ``active``,
    ``error``, ``locked``), ``NodeID``, ``NodeAddr``, ``ControlAvailable`` (true on a
    manager), ``RemoteManagers`` and, on managers, ``Cluster`` (``ID``, ``Spec``...).
    Returns ``{}`` when Docker is not installed.

    .. code:: python

        swarm = host.get_fact(SwarmInfo)
        if swarm.get("LocalNodeState") == "active": ...
    """

    @override
    def requires_command(self) -> str:
        return "docker"

    @override
    def command(self) -> str:
        return "docker info --format '{{json .Swarm}}'"

    @override
    @staticmethod
    def default() -> dict[str, Any]:
        return {}

    @override
    def process(self, output: list[str]) -> dict[str, Any]:
        data: dict[str, Any] = json.loads("".join(output))
        return data


class SwarmNodes(FactBase[list[dict[str, Any]]]):
    """
    Every node of the swarm, as ``docker node inspect`` returns them (on a manager).

    Useful keys: ``ID``, ``Description.Hostname``, ``Spec.Role``, ``Spec.Availability``,
    ``Spec.Labels``, ``Status.State`` (``ready``/``down``), ``Status.Addr``,
    ``ManagerStatus`` (``Leader``, ``Reachability``). ``[]`` on a host that is not a
    manager or has no Docker.

    .. code:: python

        ready = [n for n in host.get_fact(SwarmNodes) if n["Status"]["State"] == "ready"]
    """

    @override
    def requires_command(self) -> str:
        return "docker"

    @override
    def command(self) -> str:
        return script_shell("docker_read.sh", "nodes")

    @override
    @staticmethod
    def default() -> list[dict[str, Any]]:
        return []

    @override
    def process(self, output: list[str]) -> list[dict[str, Any]]:
        data: list[dict[str, Any]] = json.loads("".join(output))
        return data


class SwarmJoinTokens(FactBase[JoinTokens | None]):
    """
    The swarm's join tokens, read on a manager, each wrapped in ``HiddenValue``.

    ``None`` when the host is not a manager. Use ``token.unmask()`` only to hand the
    token to the Engine API (see ``beamfleet.controller.operations.swarm.join``), never to print it
    or to put it on a command line.

    Caution: with ``-vvv`` pyinfra prints every fact command's raw output, tokens
    included. Code that must stay silent at any verbosity (beamfleet's own join) uses
    :func:`read_join_tokens` instead, which runs the same command with output printing
    off.

    .. code:: python

        tokens = host.get_fact(SwarmJoinTokens)
        worker_token = tokens["worker"] if tokens else None
    """

    @override
    def requires_command(self) -> str:
        return "docker"

    @override
    def command(self) -> str:
        return script_shell("docker_read.sh", "join-tokens")

    @override
    @staticmethod
    def default() -> JoinTokens | None:
        return None

    @override
    def process(self, output: list[str]) -> JoinTokens | None:
        return parse_join_tokens(output)


def parse_join_tokens(output: list[str]) -> JoinTokens | None:
    """Two lines (worker token, manager token) -> JoinTokens, else None."""
    lines = [line.strip() for line in output if line.strip()]
    if len(lines) != 2 or not all(line.startswith("SWMTKN-") for line in lines):
        return None
    return JoinTokens(
        worker=hidden(lines[0], "*SWARM-WORKER-TOKEN*"),
        manager=hidden(lines[1], "*SWARM-MANAGER-TOKEN*"),
    )


def read_join_tokens(manager: Host) -> JoinTokens | None:
    """The join tokens of ``manager``'s swarm, read without printing them at any verbosity."""
    ok, output = manager.run_shell_command(
        StringCommand(SwarmJoinTokens().command()),
        print_output=False,
        print_input=False,
    )
    return parse_join_tokens(output.stdout_lines) if ok else None


class SwarmNetworks(SwarmObjects):
    """
    The swarm-scoped (overlay) networks known to the host, by name, as ``docker network
    inspect`` returns them (``Driver``, ``Attachable``, ``Options``, ``IPAM.Config``...).

    .. code:: python

        net = host.get_fact(SwarmNetworks).get("beamfleet")
    """

    kind = "overlay-networks"

    @override
    def by_name(self, inspected: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        return {net["Name"]: net for net in inspected}


class PrivateAddress(FactBase[str | None]):
    """
    The host's private IPv4 address to advertise to the swarm: the first private
    (RFC 1918 / RFC 6598) address of the interface holding the default route, else of
    any interface that Docker did not create. ``None`` when there is none.

    .. code:: python

        addr = host.data.get("swarm_advertise_addr") or host.get_fact(PrivateAddress)
    """

    @override
    def requires_command(self) -> str:
        return "ip"

    @override
    def command(self) -> str:
        # Interface of the default route first (may print nothing), then every address.
        return "ip -4 -o route show default; echo ---; ip -4 -o addr show scope global"

    @override
    @staticmethod
    def default() -> str | None:
        return None

    @override
    def process(self, output: list[str]) -> str | None:
        return pick_private_address(output)


# RFC 1918 and RFC 6598 (carrier-grade NAT, used by some clouds for private networks).
# Not ipaddress's `is_private`: it also counts documentation and other special ranges.
_PRIVATE_NETWORKS = tuple(
    ipaddress.IPv4Network(n)
    for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10")
)
_DOCKER_IFACE_PREFIXES = ("docker", "br-", "veth", "vxlan", "docker_gwbridge")


def pick_private_address(output: list[str]) -> str | None:
    """Parse the output of :class:`PrivateAddress`'s command (kept pure for unit tests)."""
    default_dev: str | None = None
    addrs: list[tuple[str, str]] = []
    in_addrs = False
    for line in output:
        words = line.split()
        if line.strip() == "---":
            in_addrs = True
        elif not in_addrs and "dev" in words:
            default_dev = default_dev or words[words.index("dev") + 1]
        elif in_addrs and len(words) >= 4 and words[2] == "inet":
            addrs.append((words[1], words[3].split("/")[0]))
    private = [
        (dev, ip)
        for dev, ip in addrs
        if not dev.startswith(_DOCKER_IFACE_PREFIXES)
        and any(ipaddress.IPv4Address(ip) in net for net in _PRIVATE_NETWORKS)
    ]
    for dev, ip in private:
        if dev == default_dev:
            return ip
    return private[0][1] if private else None

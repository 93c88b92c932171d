"""Node names: validation and the output formats (``name``, ``env``, ``vm.args``, ``erl-flags``).

A node is ``basename@host``. Rules:

- ``basename`` (the "alive" part): 1-200 of ``A-Z a-z 0-9 _ -``
  (the rules are :mod:`beamfleet.runtime.node_names`, shared with discovery and the
  distribution client).
- host an IP address → long names (``-name``, ``RELEASE_DISTRIBUTION=name``): Erlang
  refuses an IP with ``-sname`` ("Hostname 10.x is illegal").
- host a name with a dot → long names; a single-label host name → short names
  (``-sname``), which is what Erlang accepts for it.
- host an IPv6 address → the node must also speak inet6: ``-proto_dist inet6_tcp``
  in ``vm.args``/``erl-flags``, ``ERL_AFLAGS`` (appended to an existing value) in ``env``.

Deploy-time use (pyinfra, host facts in, no I/O)::

    from beamfleet.runtime.naming import node_name_from_addresses, from_network_devices
    node = node_name_from_addresses(
        "app", from_network_devices(host.get_fact(NetworkDevices)), cidrs=["10.0.9.0/24"])
    node.name          # "app@10.0.9.4"
    node.env()         # {"RELEASE_DISTRIBUTION": "name", "RELEASE_NODE": "app@10.0.9.4"}
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from beamfleet.runtime.naming.addresses import Address
from beamfleet.runtime.naming.errors import InvalidInputError
from beamfleet.runtime.naming.select import parse_cidr, select_address
from beamfleet.runtime.node_names import ALIVE_MAX, InvalidNodeNameError, is_alive, parse_host

FORMATS = ("name", "env", "vm.args", "erl-flags")
INET6_FLAG = "-proto_dist inet6_tcp"

_SAFE = re.compile(r"[A-Za-z0-9@%+=:,./_-]+")


def check_basename(basename: str) -> str:
    if not is_alive(basename):
        raise InvalidInputError(
            f"invalid --basename '{basename}': use 1-{ALIVE_MAX} letters, digits, '_' or '-' "
            "(it becomes the part before '@')"
        )
    return basename


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise InvalidInputError(f"unknown --format '{fmt}'; expected one of: {', '.join(FORMATS)}")
    return fmt


def shell_quote(value: str) -> str:
    """Quote for POSIX sh only when needed (the shim does exactly the same)."""
    if _SAFE.fullmatch(value):
        return value
    return "'" + value.replace("'", "'\\''") + "'"


@dataclass(frozen=True)
class NodeName:
    """A validated node name and what starting a node under it needs."""

    basename: str
    host: str
    longnames: bool
    ipv6: bool

    @property
    def name(self) -> str:
        return f"{self.basename}@{self.host}"

    @property
    def distribution(self) -> str:
        """``name`` or ``sname`` (``RELEASE_DISTRIBUTION``; the flag is ``-`` + this)."""
        return "name" if self.longnames else "sname"

    def erl_args(self) -> list[str]:
        args = [f"-{self.distribution}", self.name]
        if self.ipv6:
            args += INET6_FLAG.split()
        return args

    def env(self, environ: Mapping[str, str] | None = None) -> dict[str, str]:
        """Elixir-release variables; ERL_AFLAGS keeps what ``environ`` already had."""
        out = {"RELEASE_DISTRIBUTION": self.distribution, "RELEASE_NODE": self.name}
        if self.ipv6:
            existing = (environ or {}).get("ERL_AFLAGS", "").strip()
            if "inet6_tcp" in existing:
                out["ERL_AFLAGS"] = existing
            else:
                out["ERL_AFLAGS"] = f"{existing} {INET6_FLAG}".strip()
        return out

    def render(self, fmt: str, environ: Mapping[str, str] | None = None) -> str:
        """The text printed for ``--format fmt`` (ends with a newline)."""
        check_format(fmt)
        if fmt == "name":
            return self.name + "\n"
        if fmt == "env":
            return "".join(f"{k}={shell_quote(v)}\n" for k, v in self.env(environ).items())
        if fmt == "vm.args":
            lines = [f"-{self.distribution} {self.name}"]
            if self.ipv6:
                lines.append(INET6_FLAG)
            return "\n".join(lines) + "\n"
        return " ".join(shell_quote(a) for a in self.erl_args()) + "\n"


def make_node_name(basename: str, host: str) -> NodeName:
    """Validate ``basename`` and ``host`` (an IP or a DNS name) into a :class:`NodeName`."""
    check_basename(basename)
    try:
        checked = parse_host(host)
    except InvalidNodeNameError as exc:
        raise InvalidInputError(str(exc)) from exc
    return NodeName(basename, checked.text, longnames=checked.longnames, ipv6=checked.ipv6)


def node_name_from_addresses(
    basename: str,
    addresses: Iterable[Address],
    cidrs: Sequence[str] = (),
    interface: str | None = None,
) -> NodeName:
    """Pure: pick the address by the same rules as ``--provider auto`` and name the node."""
    check_basename(basename)
    networks = [parse_cidr(c) for c in cidrs]
    chosen = select_address(addresses, networks, interface)
    return make_node_name(basename, str(chosen.ip))

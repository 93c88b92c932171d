"""Erlang node names (``alive@host``): the one set of rules naming, discovery and the
distribution client share.

Rules:

- ``alive`` (the part before ``@``): 1-200 of ``A-Z a-z 0-9 _ -``. The whole node name
  is an atom, and an atom holds at most 255 characters, so the alive part cannot take
  them all: 200 leaves room for a host, and it is the limit the ``beamfleet-nodename``
  shim (POSIX sh) checks too, so both forms accept exactly the same names.
- ``host``: an IPv4 address, an IPv6 address (bare, as Erlang prints it; a whole node
  name ``app@[fd00::3]`` is read as ``app@fd00::3``), or a DNS name / short host name
  (labels of letters, digits and ``-``, separated by ``.``, at most 253 characters, one
  trailing dot ignored).
- Not a host: an IPv6 address with a ``%zone`` (a node never names itself with one: a
  zone only means something on the machine that wrote it), the unspecified address
  (``0.0.0.0``, ``::``) and multicast addresses (nothing listens for a node there).

Example::

    host = parse_host("10.0.9.4")      # NodeHost("10.0.9.4", ip=IPv4Address(...))
    host.longnames, host.ipv6           # (True, False)
    split_node_name("app@[fd00::3]")    # ("app", "fd00::3")
    is_node_name("app@node 1")          # False
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

ALIVE_MAX = 200
HOST_MAX = 253

_ALIVE = re.compile(rf"[A-Za-z0-9_-]{{1,{ALIVE_MAX}}}")
_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


class InvalidNodeNameError(ValueError):
    """A node name, or one of its parts, breaks the rules above; the message says which."""


class InvalidHostError(InvalidNodeNameError):
    """The host part is neither an IP address nor a DNS name."""


class UnusableAddressError(InvalidHostError):
    """The host part is an IP address no node can be reached at (unspecified, multicast)."""


@dataclass(frozen=True)
class NodeHost:
    """A valid host part: its canonical text and, for an address, the address."""

    text: str
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None

    @property
    def longnames(self) -> bool:
        """Whether nodes on this host need ``-name`` (an IP or a dotted name), not ``-sname``."""
        return self.ip is not None or "." in self.text

    @property
    def ipv6(self) -> bool:
        return self.ip is not None and self.ip.version == 6


def is_alive(text: str) -> bool:
    """True when ``text`` can be the part before ``@``."""
    return _ALIVE.fullmatch(text) is not None


def check_alive(text: str) -> str:
    """Return ``text`` when it is a valid alive part, else raise :class:`InvalidNodeNameError`."""
    if not is_alive(text):
        raise InvalidNodeNameError(
            f"invalid alive part {text!r}: use 1-{ALIVE_MAX} letters, digits, '_' or '-'"
        )
    return text


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if "%" in text:  # ipaddress accepts scoped IPv6; node names never carry a zone
        return None
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def parse_host(text: str) -> NodeHost:
    """Validate a host part (surrounding blanks removed; an IPv6 address bare, no brackets).

    Addresses come back in canonical form (``fd00:0::3`` → ``fd00::3``), names without
    their trailing dot.

    Raises:
        UnusableAddressError: an unspecified or multicast address.
        InvalidHostError: anything else that is not an IP address or a DNS name.
    """
    host = text.strip()
    ip = _ip(host)
    if ip is not None:
        if ip.is_unspecified or ip.is_multicast:
            raise UnusableAddressError(f"address '{host}' cannot be a node's host")
        return NodeHost(str(ip), ip)
    name = host.removesuffix(".")
    if not name or len(name) > HOST_MAX or not all(_LABEL.fullmatch(x) for x in name.split(".")):
        raise InvalidHostError(
            f"invalid host '{host}': not an IP address and not a DNS name "
            "(letters, digits, '-', labels separated by '.')"
        )
    return NodeHost(name)


def node_parts(node: str) -> tuple[str, str]:
    """``"alive@host"`` → ``("alive", "host")`` without validating (IPv6 brackets removed).

    For names already known to be valid; :func:`split_node_name` checks them.
    """
    alive, _, host = node.partition("@")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return alive, host


def split_node_name(node: str) -> tuple[str, str]:
    """Validate ``alive@host`` and return its two parts (the host as written, unbracketed).

    Example::

        split_node_name("app@10.0.1.3")    # ("app", "10.0.1.3")

    Raises:
        InvalidNodeNameError: (or a subclass) naming the part that is wrong.
    """
    if "@" not in node:
        raise InvalidNodeNameError(f"invalid node name {node!r}: expected NAME@HOST")
    alive, host = node_parts(node)
    check_alive(alive)
    if host != host.strip():  # parse_host forgives blanks around a looked-up value; a name has none
        raise InvalidHostError(f"invalid host {host!r}: blanks around it")
    parse_host(host)
    return alive, host


def is_node_name(text: str) -> bool:
    """True when ``text`` is a valid ``alive@host``."""
    try:
        split_node_name(text)
    except InvalidNodeNameError:
        return False
    return True

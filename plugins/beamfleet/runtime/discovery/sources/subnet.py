"""Keeping a DNS answer inside the application's networks (``--subnet``).

A misconfigured resolver, or a DNS name shared with something else, can answer with
addresses outside the cluster; the agent must never connect a node to one. The ``dns``
and ``srv`` sources pass their addresses through a :class:`SubnetFilter`, which keeps
those inside one of the networks and logs the others (``addresses_outside_subnet``) once,
when they first appear.

Example::

    subnets = parse_subnets("10.234.0.0/24, fd00:234::/64")
    keep = SubnetFilter(subnets, label="dns:tasks.app", log=log)
    keep(["10.234.0.5", "192.168.1.9"])     # ["10.234.0.5"], 192.168.1.9 logged
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from beamfleet.runtime.discovery.log import JsonLog

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_subnets(text: str) -> tuple[Network, ...]:
    """``"10.0.1.0/24, fd00::/64"`` -> the networks; ``""`` -> ``()`` (no filter).

    Raises:
        ValueError: an item is not a network in CIDR form (host bits set included), named.
    """
    networks = []
    for item in text.replace(",", " ").split():
        try:
            networks.append(ipaddress.ip_network(item))
        except ValueError as exc:
            raise ValueError(f"--subnet {item!r} is not a network in CIDR form: {exc}") from None
    return tuple(networks)


class SubnetFilter:
    """Keeps the addresses inside ``subnets`` (all of them when there is none)."""

    def __init__(self, subnets: Sequence[Network], *, label: str, log: JsonLog | None) -> None:
        self.subnets = tuple(subnets)
        self._label = label
        self._log = log
        self._dropped: set[str] = set()  # what the last answer dropped (already logged)

    def __bool__(self) -> bool:
        return bool(self.subnets)

    def __call__(self, addresses: Sequence[str]) -> list[str]:
        """``addresses`` inside a subnet, in their order; logs newly dropped ones."""
        if not self.subnets:
            return list(addresses)
        kept, dropped = [], set()
        for text in addresses:
            if self._inside(text):
                kept.append(text)
            else:
                dropped.add(text)
        if dropped - self._dropped and self._log is not None:
            self._log.warning(
                "addresses_outside_subnet",
                source=self._label,
                addresses=sorted(dropped),
                subnets=[str(n) for n in self.subnets],
            )
        self._dropped = dropped
        return kept

    def _inside(self, text: str) -> bool:
        try:
            address = ipaddress.ip_address(text)
        except ValueError:  # not an address at all: certainly not one of ours
            return False
        return any(address in net for net in self.subnets)

    def describe(self) -> str:
        """``"10.234.0.0/24, fd00::/64"``: for messages."""
        return ", ".join(str(n) for n in self.subnets)

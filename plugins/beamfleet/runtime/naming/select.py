"""Choosing the one address a node is named after: filters, and errors that say what to add.

Rules (identical in the sh shim):

- Only dialable candidates are considered (see :mod:`beamfleet.runtime.naming.addresses`).
- ``--interface IF`` keeps addresses of that interface; one or more ``--cidr`` keep
  addresses inside any of them. Both may be combined.
- Exactly one address must remain. None → :class:`NoAddressError`; several →
  :class:`AmbiguousAddressError`, whose message lists every candidate and the
  ``--cidr`` that would pick each one. Never "the first one".
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

from beamfleet.runtime.naming.addresses import Address, IPNetwork, candidates
from beamfleet.runtime.naming.errors import AmbiguousAddressError, InvalidInputError, NoAddressError


def parse_cidr(text: str) -> IPNetwork:
    """``"10.0.9.0/24"`` → network; host bits are not allowed (``10.0.9.1/24`` is refused)."""
    try:
        return ipaddress.ip_network(text.strip(), strict=True)
    except ValueError as exc:
        raise InvalidInputError(
            f"invalid --cidr '{text}': expected a network such as 10.0.9.0/24 or fd00::/64 "
            "(no host bits set)"
        ) from exc


def _describe(addresses: Sequence[Address]) -> str:
    return ", ".join(str(a) for a in addresses) if addresses else "none"


def _filters(cidrs: Sequence[IPNetwork], interface: str | None) -> str:
    parts = [f"--cidr {c}" for c in cidrs]
    if interface:
        parts.append(f"--interface {interface}")
    return " ".join(parts) if parts else "no filter"


def select_address(
    addresses: Iterable[Address],
    cidrs: Sequence[IPNetwork] = (),
    interface: str | None = None,
) -> Address:
    """The single candidate left by the filters, else an error naming the candidates."""
    pool = candidates(addresses)
    kept = [
        a
        for a in pool
        if (not interface or a.interface == interface)
        and (not cidrs or any(a.ip.version == c.version and a.ip in c for c in cidrs))
    ]
    if len(kept) == 1:
        return kept[0]
    if not kept:
        raise NoAddressError(
            f"no address matches {_filters(cidrs, interface)}; addresses here: {_describe(pool)}"
        )
    suggestions = []
    for a in kept:
        hint = f"--cidr {a.network}"
        if hint not in suggestions:
            suggestions.append(hint)
    raise AmbiguousAddressError(
        f"ambiguous: {len(kept)} candidate addresses with {_filters(cidrs, interface)}: "
        f"{_describe(kept)}; add {' or '.join(suggestions)} (or --interface) to choose one"
    )

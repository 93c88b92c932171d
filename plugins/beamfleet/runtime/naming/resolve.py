"""From CLI options to a node name: validate everything first, then ask the address provider."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from beamfleet.runtime.naming.addresses import list_addresses
from beamfleet.runtime.naming.errors import InvalidInputError
from beamfleet.runtime.naming.nodename import NodeName, check_basename, make_node_name
from beamfleet.runtime.naming.providers import check_provider, provider_host
from beamfleet.runtime.naming.select import parse_cidr, select_address


def resolve_node_name(
    basename: str,
    provider: str = "auto",
    cidrs: Sequence[str] = (),
    interface: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> NodeName:
    """Compute the node name as ``beamfleet nodename`` does.

    Bad input raises :class:`InvalidInputError` before any lookup. ``--cidr`` and
    ``--interface`` only apply to ``--provider auto``.
    """
    env = os.environ if environ is None else environ
    check_basename(basename)
    check_provider(provider)
    networks = [parse_cidr(c) for c in cidrs]
    if provider != "auto" and (networks or interface):
        raise InvalidInputError(
            f"--cidr/--interface only apply to --provider auto, not --provider {provider}"
        )
    if provider == "auto":
        chosen = select_address(list_addresses(env), networks, interface)
        return make_node_name(basename, str(chosen.ip))
    return make_node_name(basename, provider_host(provider, env))

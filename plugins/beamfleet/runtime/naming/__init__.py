"""Node-name templating: ``basename@<address peers can reach>``.

- :mod:`~beamfleet.runtime.naming.addresses`: the host's/container's addresses (ip or /proc).
- :mod:`~beamfleet.runtime.naming.select`: CIDR/interface filters, never "the first one".
- :mod:`~beamfleet.runtime.naming.providers`: the address providers other than ``auto``:
  metadata APIs, ``k8s``, ``hostname``, ``env:VAR``.
- :mod:`~beamfleet.runtime.naming.nodename`: validation and output formats.
- :mod:`~beamfleet.runtime.naming.resolve`: what ``beamfleet nodename`` runs (provider → name).

The sh form is ``beamfleet/assets/beamfleet-nodename``; both share flags, outputs,
error texts and exit codes (see docs/naming.md).
"""

from beamfleet.runtime.naming.addresses import Address, from_network_devices, list_addresses
from beamfleet.runtime.naming.errors import (
    AddressSelectionError,
    AmbiguousAddressError,
    InvalidInputError,
    NamingError,
    NoAddressError,
    ProviderError,
)
from beamfleet.runtime.naming.nodename import (
    FORMATS,
    NodeName,
    make_node_name,
    node_name_from_addresses,
)
from beamfleet.runtime.naming.resolve import resolve_node_name
from beamfleet.runtime.naming.select import select_address

__all__ = [
    "FORMATS",
    "Address",
    "AddressSelectionError",
    "AmbiguousAddressError",
    "InvalidInputError",
    "NamingError",
    "NoAddressError",
    "NodeName",
    "ProviderError",
    "from_network_devices",
    "list_addresses",
    "make_node_name",
    "node_name_from_addresses",
    "resolve_node_name",
    "select_address",
]

"""beamfleet.runtime.discovery: the agent that polls sources and meshes the BEAM nodes it owns.

One concept per module:

- :mod:`.peers` — peer names (``basename@ip``, reverse-DNS names, templates)
- :mod:`.sources` — where desired peers come from (dns, srv, rancher, static, file, epmd)
- :mod:`.reconcile` — per owned node: connect the missing, drop the departed after a grace
- :mod:`.departure` — how a departed node is removed without anyone else losing a peer
- :mod:`.ownership` — which nodes this agent drives (local-epmd, rendezvous, all)
- :mod:`.config` — flags, ``BEAMFLEET_*`` env vars and a TOML file, validated up front
- :mod:`.metrics`, :mod:`.server`, :mod:`.log` — Prometheus text, /healthz /status, JSON logs
- :mod:`.agent` — the poll loop tying them together
"""

from beamfleet.runtime.discovery.errors import ConfigError, DiscoveryError, SourceError
from beamfleet.runtime.discovery.peers import Peer

__all__ = ["ConfigError", "DiscoveryError", "Peer", "SourceError"]

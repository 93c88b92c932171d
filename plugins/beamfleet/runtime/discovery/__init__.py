"""beamfleet.runtime.discovery: the agent that polls sources and meshes the BEAM nodes it owns.

One concept per module:

- :mod:`.peers` — peer names (``basename@ip``, reverse-DNS names, templates)
- :mod:`.sources` — where desired peers come from (dns, srv, rancher, static, file, epmd)
- :mod:`.reconcile` — per owned node: connect the missing, drop the departed after a grace
- :mod:`.departure` — how a departed node is removed without anyone else losing a peer
- :mod:`.ownership` — which nodes this agent drives (local-epmd, rendezvous, all)
- :mod:`.config` — flags, ``BEAMFLEET_*`` env vars and a TOML file, validated up front
- :mod:`.metrics`, :mod:`.server`, :mod:`.log` — Prometheus text, the HTTP server, JSON logs
- :mod:`.agent` — the poll loop tying them together

Inside the agent, one round goes: :mod:`.poller` polls each due source (backing off the
failing ones, keeping each one's last good answer) and gives the desired set;
:mod:`.ownership` picks the nodes this agent drives; :mod:`.links` opens (or keeps
reopening) the connections to them, leaving a slow connect in the background;
:mod:`.reconcile` connects each owned node to its missing peers; :mod:`.removals` waits
out a departed peer's grace and then removes it (:mod:`.departure`); :mod:`.convergence`
times new peers for the histogram; :mod:`.status` gives the health verdict and the
``/livez``, ``/readyz``, ``/metrics`` and ``/status`` answers. :mod:`.agent` only wires these and
updates the metrics of a round.
"""

from beamfleet.runtime.discovery.errors import ConfigError, DiscoveryError, SourceError
from beamfleet.runtime.discovery.peers import Peer

__all__ = ["ConfigError", "DiscoveryError", "Peer", "SourceError"]

"""The one interface every source implements."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from beamfleet.runtime.discovery.peers import Peer
from beamfleet.runtime.discovery.sources.resolver import ResolverStats


@runtime_checkable
class Source(Protocol):
    """Where desired peers come from.

    ``poll()`` returns the full current set of peers, or raises
    :class:`~beamfleet.runtime.discovery.errors.SourceError`. It never returns an empty set to
    mean "failed": an empty set is a real answer (and still removes nobody unless the
    agent runs with ``--allow-empty``).

    Everything the agent reads of a source is declared here, so the agent never has to
    probe a source for optional attributes.
    """

    label: str  # "dns:tasks.app", stable, used in logs and metrics
    basename: str | None  # the basename of the nodes it gives (None: full names given)

    @property
    def empty_reason(self) -> str:
        """Why the last answer was empty, in words an operator can act on ("" if unknown).

        The agent refuses an empty answer unless ``--allow-empty``; this says why it was
        empty (e.g. "tasks.app has no A/AAAA record") in the ``source_failed`` log line.
        """
        ...

    @property
    def resolver_stats(self) -> ResolverStats | None:
        """The live counters of the DNS resolver behind this source (None: no resolver)."""
        ...

    async def poll(self) -> set[Peer]: ...

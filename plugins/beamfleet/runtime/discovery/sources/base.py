"""The one interface every source implements."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from beamfleet.runtime.discovery.peers import Peer


@runtime_checkable
class Source(Protocol):
    """Where desired peers come from.

    ``poll()`` returns the full current set of peers, or raises
    :class:`~beamfleet.runtime.discovery.errors.SourceError`. It never returns an empty set to
    mean "failed": an empty set is a real answer (and still removes nobody unless the
    agent runs with ``--allow-empty``).
    """

    label: str  # "dns:tasks.app", stable, used in logs and metrics
    basename: str | None  # the basename of the nodes it gives (None: full names given)

    async def poll(self) -> set[Peer]: ...

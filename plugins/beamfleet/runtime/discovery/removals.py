"""Removing departed peers: the grace before a removal, and the removals under way.

A peer that is gone from the desired set is removed only after it has been absent from
enough *successful* answers and for long enough (:class:`~.reconcile.AbsenceTracker`):
a flapping DNS record or a failed poll must never cut a node off. A removal itself runs
in the background (see :func:`~.reconcile.depart`), because a dead departed peer costs
a whole connect timeout and must not hold up the round.

Example::

    removals = Removals(tracker, connector, managed, settings,
                        metrics=metrics, log=log, round_wait=1.0)
    removals.successful_answer(desired, present, now)
    await removals.start(results, live, now)
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from beamfleet.runtime.discovery.log import JsonLog
from beamfleet.runtime.discovery.metrics import Metrics
from beamfleet.runtime.discovery.reconcile import (
    AbsenceTracker,
    Connector,
    NodeLink,
    NodeResult,
    ReconcileSettings,
    depart,
)


class Removals:
    """Grace tracking plus the departures in flight, one per peer at most."""

    def __init__(
        self,
        tracker: AbsenceTracker,
        connector: Connector,
        managed: Callable[[str], bool],
        settings: ReconcileSettings,
        *,
        metrics: Metrics,
        log: JsonLog,
        round_wait: float,
    ) -> None:
        self.tracker = tracker
        self._connector = connector
        self._managed = managed
        self._settings = settings
        self._metrics = metrics
        self._log = log
        self._round_wait = round_wait
        self._departing: dict[str, asyncio.Task[None]] = {}

    def successful_answer(self, desired: set[str], present: set[str], now: float) -> None:
        """Count one complete round: ``present`` are the managed peers seen but not desired."""
        self.tracker.successful_answer(desired, present, now)

    def pending(self) -> dict[str, float]:
        """Peers waiting out their grace -> since when (clock time)."""
        return self.tracker.absent()

    async def start(
        self, results: Sequence[NodeResult], live: dict[str, NodeLink], now: float
    ) -> None:
        """Start removing every peer past its grace; wait for them at most ``round_wait``."""
        candidates = sorted({p for r in results for p in r.extra if self.tracker.eligible(p, now)})
        for peer in candidates:
            if peer in self._departing:
                continue
            holders = {r.node: live[r.node] for r in results if peer in r.extra}
            self._departing[peer] = asyncio.create_task(self._depart(peer, holders))
        if self._departing:
            await asyncio.wait(list(self._departing.values()), timeout=self._round_wait)

    async def _depart(self, peer: str, holders: dict[str, NodeLink]) -> None:
        try:
            how = await depart(peer, self._connector, holders, self._managed, self._settings)
            self.tracker.forget(peer)
            self._metrics.inc("beamfleet_agent_disconnects_total")
            self._log.info("peer_removed", peer=peer, how=how, holders=sorted(holders))
        finally:
            self._departing.pop(peer, None)

"""Removing departed peers: the grace before a removal, and the removals under way.

A peer that is gone from the desired set is removed only after it has been absent from
enough *successful* answers and for long enough (:class:`~.reconcile.AbsenceTracker`):
a flapping DNS record or a failed poll must never cut a node off. A removal itself runs
in the background (see :func:`~.reconcile.depart`), because a dead departed peer costs
a whole connect timeout and must not hold up the round.

Removals are also bounded: within one grace window at most ``max_fraction`` of the
managed peers (the desired ones plus the departed ones still seen; always at least one)
may be removed. A successful but partial answer (2 of 10 records for a few polls) must
not make the agent cut off most of a live cluster at once; the peers over the limit are
kept (``removal_deferred``) and removed in later windows if they stay absent.

Example::

    removals = Removals(tracker, connector, managed, settings, max_fraction=0.34,
                        metrics=metrics, log=log, round_wait=1.0)
    removals.successful_answer(desired, present, now)
    await removals.start(results, live, now)
"""

from __future__ import annotations

import asyncio
import math
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
        max_fraction: float = 1.0,
        metrics: Metrics,
        log: JsonLog,
        round_wait: float,
    ) -> None:
        self.tracker = tracker
        self._max_fraction = max_fraction
        # the limit counts the removals started within one grace window
        self._window = settings.grace_seconds
        self._started: dict[str, float] = {}  # peer -> clock time its removal started
        self._mesh_size = 0
        self.deferred: list[str] = []  # eligible peers kept by the limit, last round
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
        self._mesh_size = len(desired | present)

    def limit(self) -> int:
        """How many removals one grace window may start: a share of the managed peers, >= 1."""
        # the small epsilon keeps 0.3 * 10 from becoming 2.9999... -> 2
        return max(1, math.floor(self._max_fraction * self._mesh_size + 1e-9))

    def pending(self) -> dict[str, float]:
        """Peers waiting out their grace -> since when (clock time)."""
        return self.tracker.absent()

    async def start(
        self, results: Sequence[NodeResult], live: dict[str, NodeLink], now: float
    ) -> None:
        """Start removing the peers past their grace, up to :meth:`limit` per grace window;
        wait for them at most ``round_wait``."""
        candidates = sorted({p for r in results for p in r.extra if self.tracker.eligible(p, now)})
        # removals started in this window, and the older ones still running, use up the room
        self._started = {
            p: t for p, t in self._started.items() if now - t < self._window or p in self._departing
        }
        limit = self.limit()
        room = limit - len(self._started)
        deferred = []
        for peer in candidates:
            if peer in self._departing:
                continue
            if room <= 0:
                deferred.append(peer)
                continue
            room -= 1
            self._started[peer] = now
            holders = {r.node: live[r.node] for r in results if peer in r.extra}
            self._departing[peer] = asyncio.create_task(self._depart(peer, holders))
        self._defer(deferred, limit)
        if self._departing:
            await asyncio.wait(list(self._departing.values()), timeout=self._round_wait)

    def _defer(self, deferred: list[str], limit: int) -> None:
        """Keep ``deferred`` for a later window; log when that set changes."""
        if deferred and deferred != self.deferred:
            self._log.warning(
                "removal_deferred",
                deferred=len(deferred),
                limit=limit,
                window=self._window,
                peers=deferred,
            )
        self.deferred = deferred
        self._metrics.set("beamfleet_agent_removals_deferred", len(deferred))

    async def _depart(self, peer: str, holders: dict[str, NodeLink]) -> None:
        try:
            how = await depart(peer, self._connector, holders, self._managed, self._settings)
            self.tracker.forget(peer)
            self._metrics.inc("beamfleet_agent_disconnects_total")
            self._log.info("peer_removed", peer=peer, how=how, holders=sorted(holders))
        finally:
            self._departing.pop(peer, None)

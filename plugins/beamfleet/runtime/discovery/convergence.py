"""How long a new peer takes to be seen by every owned node (the convergence histogram).

The clock starts when a peer enters the desired set and stops the first round in which
every *reachable* owned node other than the peer itself sees it: one black-holed node
must not hide the convergence of all the others.

Example::

    clock = ConvergenceClock()
    clock.desired(desired, now)
    for seconds in clock.converged(results, now):
        metrics.observe_convergence(seconds)
"""

from __future__ import annotations

from collections.abc import Sequence

from beamfleet.runtime.discovery.reconcile import NodeResult


class ConvergenceClock:
    """Per desired peer: when it became desired, and whether it has converged yet."""

    def __init__(self) -> None:
        self._since: dict[str, float] = {}
        self._converged: set[str] = set()
        self._desired: set[str] = set()

    def desired(self, desired: set[str], now: float) -> None:
        """Start the clock of new peers; forget peers no longer desired."""
        for name in desired - self._desired:
            self._since.setdefault(name, now)
        for name in self._desired - desired:
            self._since.pop(name, None)
            self._converged.discard(name)
        self._desired = set(desired)

    def converged(self, results: Sequence[NodeResult], now: float) -> list[float]:
        """Seconds to convergence of each peer that converged this round (once per peer)."""
        if not results:
            return []
        out = []
        for peer in sorted(self._desired - self._converged):
            others = [r for r in results if r.node != peer]
            if others and all(peer in r.visible for r in others):
                t0 = self._since.get(peer)
                if t0 is not None:
                    out.append(now - t0)
                self._converged.add(peer)
        return out

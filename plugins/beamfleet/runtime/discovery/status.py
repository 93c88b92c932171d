"""What the agent tells the outside: the health verdict, the status JSON, the HTTP routes.

Kept apart from the loop so that the answer to "is the mesh healthy, and if not, why?"
is computed in one place, the same for ``/readyz``, ``/status``, the
``beamfleet_agent_healthy`` gauge and ``beamfleet status``.

Example::

    view = StatusView(mesh, poller=poller, links=links, ownership=ownership,
                      removals=removals, metrics=metrics, interval=1.0)
    view.healthy()          # (False, "no successful poll yet")
    HttpServer(view.routes())
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from beamfleet.runtime.discovery.links import LinkPool
from beamfleet.runtime.discovery.metrics import Metrics
from beamfleet.runtime.discovery.ownership import Ownership
from beamfleet.runtime.discovery.poller import SourcePoller
from beamfleet.runtime.discovery.reconcile import NodeResult
from beamfleet.runtime.discovery.removals import Removals
from beamfleet.runtime.discovery.server import Handler, json_body


@dataclass
class MeshState:
    """What the agent's rounds established so far; the agent writes it, the view reads it.

    ``results`` holds the last reconcile outcome of each owned node that was reachable.
    """

    desired: set[str] = field(default_factory=set)
    owned: set[str] = field(default_factory=set)
    last_success: float | None = None  # clock time of the last complete round
    last_round: float | None = None  # clock time the last round ended, complete or not
    results: dict[str, NodeResult] = field(default_factory=dict)


class StatusView:
    """Reads the agent's parts; never changes them."""

    def __init__(
        self,
        mesh: MeshState,
        *,
        poller: SourcePoller,
        links: LinkPool,
        ownership: Ownership,
        removals: Removals,
        metrics: Metrics,
        interval: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._mesh = mesh
        self._poller = poller
        self._links = links
        self._ownership = ownership
        self._removals = removals
        self._metrics = metrics
        # a few missed rounds are normal (a slow source, a long connect); more are not
        self._max_age = max(5.0, 5 * interval)
        # liveness fails only when the loop itself is stuck: a restart is the remedy then,
        # never for a peer that is down (restarting the agent cannot bring it back)
        self._max_round_age = max(30.0, 10 * interval)
        self._clock = clock
        self._started = clock()

    def live(self) -> tuple[bool, str]:
        """(live, why): the loop ends rounds, whatever their outcome (``/livez``)."""
        since = self._mesh.last_round if self._mesh.last_round is not None else self._started
        age = self._clock() - since
        if age > self._max_round_age:
            what = "last round ended" if self._mesh.last_round is not None else "started"
            return False, f"{what} {age:.1f} s ago (> {self._max_round_age:g} s): the loop is stuck"
        return True, "ok"

    def healthy(self) -> tuple[bool, str]:
        """(ready, why): a recent complete round, and every owned node reachable (``/readyz``)."""
        if self._mesh.last_success is None:
            return False, "no successful poll yet"
        age = self._clock() - self._mesh.last_success
        if age > self._max_age:
            return False, f"last successful poll {age:.1f} s ago (> {self._max_age:g} s)"
        down = sorted(n for n in self._mesh.owned if not self._links.reachable(n))
        if down:
            return False, f"owned node(s) unreachable: {', '.join(down)}"
        return True, "ok"

    def report(self) -> dict[str, Any]:
        """The ``/status`` JSON document (``beamfleet status`` prints it)."""
        ok, reason = self.healthy()
        now = self._clock()
        mesh = self._mesh
        live, live_reason = self.live()
        return {
            "healthy": ok,
            "reason": reason,
            "live": live,
            "live_reason": live_reason,
            "ownership": self._ownership.label,
            "last_success_age": None
            if mesh.last_success is None
            else round(now - mesh.last_success, 3),
            "desired": sorted(mesh.desired),
            "owned": {name: self._node(name) for name in sorted(mesh.owned)},
            "pending_removal": {n: round(now - t, 1) for n, t in self._removals.pending().items()},
            # past their grace but kept: the removal limit of the grace window was reached
            "removal_deferred": list(self._removals.deferred),
            "removal_limit": self._removals.limit(),
            "agents": self._ownership.agents,
            "sources": [
                {
                    "source": st.source.label,
                    "ok": not st.error,
                    "error": st.error,
                    "peers": None if st.last_good is None else len(st.last_good),
                }
                for st in self._poller.states
            ],
        }

    def _node(self, name: str) -> dict[str, Any]:
        link = self._links.state(name)
        last = self._mesh.results.get(name)
        want = self._mesh.desired - {name}
        return {
            "reachable": link.reachable,
            "error": link.error,
            "connected": sorted(want & last.visible) if last else [],
            "missing": sorted(want - last.visible) if last else sorted(want),
            "connect_failures": dict(last.failed) if last else {},
        }

    def routes(self) -> dict[str, Handler]:
        """``/livez``, ``/readyz`` (and its older name ``/healthz``): 200, or 503 with the
        reason; ``/metrics``; ``/status``."""

        def livez() -> tuple[int, str, str]:
            ok, reason = self.live()
            return (200 if ok else 503), "text/plain", reason + "\n"

        def readyz() -> tuple[int, str, str]:
            ok, reason = self.healthy()
            return (200 if ok else 503), "text/plain", reason + "\n"

        def metrics() -> tuple[int, str, str]:
            return 200, "text/plain; version=0.0.4", self._metrics.render()

        def status() -> tuple[int, str, str]:
            return 200, "application/json", json_body(self.report())

        return {
            "/livez": livez,
            "/readyz": readyz,
            "/healthz": readyz,
            "/metrics": metrics,
            "/status": status,
        }

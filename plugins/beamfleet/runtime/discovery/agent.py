"""The poll loop: sources -> desired set -> owned nodes -> reconcile, with health and metrics.

Each step lives in its own module; this one only wires them and keeps the metrics of a
round:

- :class:`~.poller.SourcePoller` gives the desired set (and whether every source answered),
- :class:`~.ownership.Ownership` picks the nodes this agent drives,
- :class:`~.links.LinkPool` holds the connections to them,
- :func:`~.reconcile.reconcile_node` connects each owned node to its missing peers,
- :class:`~.removals.Removals` removes departed peers after their grace,
- :class:`~.status.StatusView` answers ``/livez``, ``/readyz`` and ``/status``.

Example (what ``beamfleet agent`` does)::

    agent = Agent.from_config(config, cookie)
    await agent.run(stop_event)
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable

from beamfleet.runtime.discovery.config import AgentConfig
from beamfleet.runtime.discovery.convergence import ConvergenceClock
from beamfleet.runtime.discovery.errors import SourceError
from beamfleet.runtime.discovery.links import LinkPool
from beamfleet.runtime.discovery.log import JsonLog
from beamfleet.runtime.discovery.metrics import Metrics
from beamfleet.runtime.discovery.ownership import (
    AllOwnership,
    LocalEpmdOwnership,
    Ownership,
    RendezvousOwnership,
)
from beamfleet.runtime.discovery.poller import PollSettings, SourcePoller
from beamfleet.runtime.discovery.reconcile import (
    AbsenceTracker,
    Connector,
    NodeLink,
    NodeResult,
    ReconcileSettings,
    reconcile_node,
)
from beamfleet.runtime.discovery.removals import Removals
from beamfleet.runtime.discovery.server import HttpServer
from beamfleet.runtime.discovery.sources import Source, StubResolver, build_source
from beamfleet.runtime.discovery.status import MeshState, StatusView
from beamfleet.runtime.erlang_dist import TlsConfig, connect

# a connection dropped or a connect failed: the next round comes after this pause, but
# at most this many times in a row, so a permanently failing peer cannot spin the loop
QUICK_RETRY_DELAY = 0.1
QUICK_RETRIES = 2


class Agent:
    """Polls its sources and meshes the nodes it owns. See docs/agent.md."""

    def __init__(
        self,
        config: AgentConfig,
        sources: list[Source],
        ownership: Ownership,
        connector: Connector,
        *,
        log: JsonLog | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.ownership = ownership
        self.log = log or JsonLog(level=config.log_level)
        self.clock = clock
        self.metrics = Metrics()
        self.wake = asyncio.Event()  # set: run the next round soon
        # how long a round waits for slow connects before going on without them
        self.round_wait = min(config.connect_timeout, max(0.5, config.interval))
        self.settings = ReconcileSettings(
            connect_timeout=config.connect_timeout,
            max_parallel=config.max_parallel,
            grace_polls=config.grace_polls,
            grace_seconds=config.grace_seconds,
        )
        self.poller = SourcePoller(
            sources, PollSettings.from_config(config), self.metrics, self.log, clock=clock
        )
        self.links = LinkPool(
            connector,
            self.log,
            connect_timeout=config.connect_timeout,
            round_wait=self.round_wait,
            on_lost=self.wake.set,
        )
        self.removals = Removals(
            AbsenceTracker(config.grace_polls, config.grace_seconds),
            connector,
            self.poller.managed,
            self.settings,
            max_fraction=config.max_removal_fraction,
            metrics=self.metrics,
            log=self.log,
            round_wait=self.round_wait,
        )
        self.convergence = ConvergenceClock()
        self.mesh = MeshState()
        self.status = StatusView(
            self.mesh,
            poller=self.poller,
            links=self.links,
            ownership=ownership,
            removals=self.removals,
            metrics=self.metrics,
            interval=config.interval,
            clock=clock,
        )
        self._quick = 0
        self._reconciling: dict[str, asyncio.Task[NodeResult]] = {}

    @classmethod
    def from_config(cls, config: AgentConfig, cookie: str, *, log: JsonLog | None = None) -> Agent:
        log = log or JsonLog(level=config.log_level)

        def resolver() -> StubResolver:
            return StubResolver.from_system(config.nameservers or None, timeout=config.dns_timeout)

        sources = [
            build_source(
                s.kind,
                s.arg,
                basename=s.basename,
                naming=config.naming,
                resolver=resolver,
                timeout=config.dns_timeout,
                subnets=config.subnets,
                log=log,
            )
            for s in config.sources
        ]
        ownership: Ownership
        if config.ownership == "local-epmd":
            ownership = LocalEpmdOwnership(epmd_port=config.epmd_port)
        elif config.ownership == "rendezvous":
            assert config.agents_dns
            ownership = RendezvousOwnership(
                config.agents_dns,
                resolver=resolver(),
                port=config.listen[1],
                self_address=config.advertise,
            )
        else:
            ownership = AllOwnership()

        # loaded once (a bad file stops the agent at start; new certificates need a restart)
        tls = (
            TlsConfig(config.tls_cert, config.tls_key, config.tls_ca).client_context()
            if config.tls_cert and config.tls_key and config.tls_ca
            else None
        )

        async def connector(node: str) -> NodeLink:
            # one identity for the agent: its local names come from one small pool, so a
            # node gains a bounded number of atoms however often the agent reconnects
            return await connect(
                node,
                cookie,
                timeout=config.connect_timeout,
                epmd_port=config.epmd_port,
                identity="agent",
                tls=tls,
            )

        return cls(config, sources, ownership, connector, log=log)

    # ---- one round -------------------------------------------------------------------------

    async def poll_once(self) -> None:
        """One round: poll, pick the owned nodes, reconcile them, remove the departed."""
        answer = await self.poller.poll()
        desired = answer.desired
        self.convergence.desired(desired, self.clock())
        self.mesh.desired = desired
        owned = await self._owned(desired)
        self.links.retain_inflight(desired)

        live = await self.links.open(owned)
        results = await self._reconcile(live, desired)
        for res in results:
            self._record(res)
        for node in owned:
            self.metrics.set(
                "beamfleet_agent_node_reachable", 1.0 if node in live else 0.0, node=node
            )
            expiry = live[node].peer_cert_not_after if node in live else None
            if expiry is not None:
                self.metrics.set("beamfleet_agent_node_cert_expiry_seconds", expiry, node=node)
        if answer.complete:
            # only a round in which every source answered brings a removal closer
            self.mesh.last_success = self.clock()
            present = {p for res in results for p in res.extra}
            self.removals.successful_answer(desired, present, self.mesh.last_success)
            await self.removals.start(results, live, self.clock())
        for seconds in self.convergence.converged(results, self.clock()):
            self.metrics.observe_convergence(seconds)
        self.mesh.last_round = self.clock()
        self.metrics.set("beamfleet_agent_healthy", 1.0 if self.status.healthy()[0] else 0.0)
        if any(res.failed for res in results) or len(live) < len(owned):
            self.wake.set()

    async def _reconcile(self, live: dict[str, NodeLink], desired: set[str]) -> list[NodeResult]:
        """Reconcile every live owned node, each on its own: one slow node slows no other.

        A node whose reconcile is still running from an earlier round (a stalled node's
        RPC waits for its timeout) is not started again; the round waits at most
        ``round_wait`` and reports the nodes that finished, the others in a later round.
        """
        for node in list(self._reconciling):
            if node not in live:
                self._reconciling.pop(node).cancel()
        for node, link in live.items():
            if node not in self._reconciling:
                self._reconciling[node] = asyncio.create_task(
                    reconcile_node(
                        link,
                        desired,
                        self.poller.managed,
                        self.settings,
                        inflight=self.links.inflight(node),
                        round_wait=self.round_wait,
                    )
                )
        tasks = [self._reconciling[node] for node in live]
        if tasks:
            await asyncio.wait(tasks, timeout=self.round_wait)
        results = []
        for node in live:
            task = self._reconciling[node]
            if task.done():
                del self._reconciling[node]
                if not task.cancelled():
                    results.append(task.result())
        return results

    async def _owned(self, desired: set[str]) -> set[str]:
        """The nodes this agent drives now; links to the others are closed."""
        try:
            owned = await self.ownership.owned(desired)
        except SourceError as exc:
            # keep driving what we drove (minus the departed) rather than nothing
            self.log.warning("ownership_failed", error=str(exc))
            owned = self.mesh.owned & desired
        if owned != self.mesh.owned:
            self.log.info("owned_nodes", nodes=sorted(owned))
        await self.links.close_except(owned)
        for node in self.mesh.owned - owned:
            # its series would otherwise stay in /metrics with their last values forever
            self.metrics.drop_labelled(node=node)
        self.mesh.results = {n: r for n, r in self.mesh.results.items() if n in owned}
        self.mesh.owned = owned
        self.metrics.set("beamfleet_agent_owned_nodes", len(owned))
        return owned

    def _record(self, res: NodeResult) -> None:
        """Metrics and log lines of one node's reconcile outcome."""
        before = self.mesh.results.get(res.node)
        self.mesh.results[res.node] = res
        if res.error:
            self.log.error("node_rpc_failed", node=res.node, error=res.error)
        want = self.mesh.desired - {res.node}
        self.metrics.set("beamfleet_agent_desired_peers", len(want), node=res.node)
        self.metrics.set("beamfleet_agent_connected_peers", len(want & res.visible), node=res.node)
        for peer in res.connected:
            self.metrics.inc("beamfleet_agent_connects_total")
            self.log.info("peer_connected", node=res.node, peer=peer)
        for peer, err in res.failed.items():
            self.metrics.inc("beamfleet_agent_connect_failures_total")
            if (before.failed.get(peer) if before else None) != err:  # log each change once
                self.log.warning("peer_connect_failed", node=res.node, peer=peer, error=err)

    # ---- the loop --------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until ``stop`` is set; serves HTTP on ``config.listen`` meanwhile."""
        private = frozenset() if self.config.status_public else frozenset({"/status"})
        server = HttpServer(self.status.routes(), private=private)
        await server.start(*self.config.listen)
        self.log.info(
            "agent_started",
            listen=f"{self.config.listen[0]}:{self.config.listen[1]}",
            ownership=self.ownership.label,
            interval=self.config.interval,
            sources=self.poller.labels,
        )
        try:
            while not stop.is_set():
                self.wake.clear()
                await self.poll_once()
                await self._pause(stop)
        finally:
            for task in self._reconciling.values():
                task.cancel()
            await self.links.close_all()
            await server.close()
            self.log.info("agent_stopped")

    async def _pause(self, stop: asyncio.Event) -> None:
        """Wait for the next round: an interval with jitter, less when something failed."""
        delay = self.config.interval * random.uniform(
            1 - self.config.jitter, 1 + self.config.jitter
        )
        if self.wake.is_set() and self._quick < QUICK_RETRIES:
            self._quick += 1
            with contextlib.suppress(TimeoutError, asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), min(delay, QUICK_RETRY_DELAY))
            return
        # a full interval, cut short by stop or by a wake (a lost connection) meanwhile
        self._quick = 0
        self.wake.clear()
        stop_task = asyncio.ensure_future(stop.wait())
        wake_task = asyncio.ensure_future(self.wake.wait())
        await asyncio.wait(
            {stop_task, wake_task}, timeout=delay, return_when=asyncio.FIRST_COMPLETED
        )
        stop_task.cancel()
        wake_task.cancel()

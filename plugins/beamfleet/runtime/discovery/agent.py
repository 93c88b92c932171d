"""The poll loop: sources -> desired set -> owned nodes -> reconcile, with health and metrics.

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
from dataclasses import dataclass, field
from typing import Any

from beamfleet.runtime.discovery.config import AgentConfig
from beamfleet.runtime.discovery.errors import SourceError
from beamfleet.runtime.discovery.log import JsonLog
from beamfleet.runtime.discovery.metrics import Metrics
from beamfleet.runtime.discovery.ownership import (
    AllOwnership,
    LocalEpmdOwnership,
    Ownership,
    RendezvousOwnership,
)
from beamfleet.runtime.discovery.peers import Peer
from beamfleet.runtime.discovery.reconcile import (
    AbsenceTracker,
    Connector,
    Inflight,
    NodeLink,
    NodeResult,
    ReconcileSettings,
    alive_of,
    depart,
    reconcile_node,
)
from beamfleet.runtime.discovery.server import HttpServer, json_body
from beamfleet.runtime.discovery.sources import Source, StubResolver, build_source
from beamfleet.runtime.erlang_dist import DistError, connect


@dataclass
class SourceState:
    """The last good answer of one source, and its backoff."""

    source: Source
    last_good: set[Peer] | None = None
    error: str = ""
    failures: int = 0
    next_due: float = 0.0


@dataclass
class NodeState:
    link: NodeLink | None = None
    error: str = ""
    watcher: asyncio.Task[None] | None = None
    last: NodeResult | None = None
    failed_peers: dict[str, str] = field(default_factory=dict)
    connecting: asyncio.Task[NodeLink | None] | None = None
    inflight: Inflight = field(default_factory=Inflight)


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
        self.sources = [SourceState(s) for s in sources]
        self.ownership = ownership
        self.connector = connector
        self.log = log or JsonLog(level=config.log_level)
        self.clock = clock
        self.settings = ReconcileSettings(
            connect_timeout=config.connect_timeout,
            max_parallel=config.max_parallel,
            grace_polls=config.grace_polls,
            grace_seconds=config.grace_seconds,
        )
        self.tracker = AbsenceTracker(config.grace_polls, config.grace_seconds)
        self.metrics = Metrics()
        self.nodes: dict[str, NodeState] = {}
        self.desired: set[str] = set()
        self.owned: set[str] = set()
        self.last_success: float | None = None
        self.started = clock()
        self.wake = asyncio.Event()
        self._first_desired: dict[str, float] = {}
        self._converged: set[str] = set()
        self._quick = 0
        # how long a round waits for slow connects before going on without them
        self.round_wait = min(config.connect_timeout, max(0.5, config.interval))
        self._departing: dict[str, asyncio.Task[None]] = {}

    @classmethod
    def from_config(cls, config: AgentConfig, cookie: str, *, log: JsonLog | None = None) -> Agent:
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

        async def connector(node: str) -> NodeLink:
            return await connect(
                node, cookie, timeout=config.connect_timeout, epmd_port=config.epmd_port
            )

        return cls(config, sources, ownership, connector, log=log)

    # ---- desired set -------------------------------------------------------------------

    def managed(self, node: str) -> bool:
        """Peers the agent may connect or remove: the alive names its sources give."""
        return alive_of(node) in self._managed_alive

    @property
    def _managed_alive(self) -> set[str]:
        out = {s.source.basename for s in self.sources if s.source.basename}
        for s in self.sources:
            if s.source.basename is None and s.last_good:
                out |= {p.alive for p in s.last_good}
        return out

    async def _poll_source(self, st: SourceState, now: float) -> bool:
        label = st.source.label
        if now < st.next_due:
            return False
        self.metrics.inc("beamfleet_agent_polls_total", source=label)
        try:
            peers = await asyncio.wait_for(st.source.poll(), self.config.dns_timeout * 3 + 1)
            if not peers and not self.config.allow_empty:
                reason = getattr(st.source, "empty_reason", "") or "empty answer"
                raise SourceError(
                    label,
                    f"{reason}; keeping the last good set (--allow-empty to accept empty answers)",
                )
        except (SourceError, TimeoutError) as exc:
            err = str(exc) or f"source {label}: timed out"
            st.failures += 1
            st.next_due = now + min(
                self.config.backoff_max, self.config.interval * 2 ** (st.failures - 1)
            )
            self.metrics.inc("beamfleet_agent_poll_errors_total", source=label)
            if err != st.error:
                self.log.warning(
                    "source_failed", source=label, error=err, retry_in=round(st.next_due - now, 2)
                )
            st.error = err
            return False
        if st.error or st.last_good != peers:
            self.log.info("source_answer", source=label, peers=len(peers), recovered=bool(st.error))
        st.last_good, st.error, st.failures, st.next_due = peers, "", 0, 0.0
        self.metrics.set("beamfleet_agent_source_peers", len(peers), source=label)
        stats = getattr(getattr(st.source, "resolver", None), "stats", None)
        if stats is not None:
            self.metrics.set(
                "beamfleet_agent_dns_tcp_retries_total", stats.tcp_retries, source=label
            )
        return True

    # ---- owned-node connections ---------------------------------------------------------

    async def _watch(self, node: str, link: NodeLink) -> None:
        await link.wait_closed()
        if node in self.nodes and self.nodes[node].link is link:
            self.log.warning("node_connection_lost", node=node)
            self.wake.set()  # re-poll at once

    async def _ensure_link(self, node: str) -> NodeLink | None:
        st = self.nodes.setdefault(node, NodeState())
        if st.link is not None and not st.link.closed:
            return st.link
        try:
            link = await asyncio.wait_for(self.connector(node), self.settings.connect_timeout + 1)
        except (DistError, OSError, TimeoutError) as exc:
            err = str(exc) or type(exc).__name__
            if err != st.error:
                self.log.error("node_unreachable", node=node, error=err)
            st.link, st.error = None, err
            return None
        if st.error:
            self.log.info("node_reachable", node=node)
        st.link, st.error = link, ""
        st.watcher = asyncio.create_task(self._watch(node, link))
        return link

    async def _links(self, owned: set[str]) -> dict[str, NodeLink]:
        """Open links to owned nodes; a node that does not answer (black-holed) is left
        connecting in the background instead of holding up the others."""
        waiting = []
        for node in sorted(owned):
            st = self.nodes.setdefault(node, NodeState())
            if (st.link is None or st.link.closed) and st.connecting is None:
                st.connecting = asyncio.create_task(self._ensure_link(node))
            if st.connecting is not None:
                waiting.append(st.connecting)
        if waiting:
            await asyncio.wait(waiting, timeout=self.round_wait)
        live = {}
        for node in sorted(owned):
            st = self.nodes[node]
            if st.connecting is not None and st.connecting.done():
                st.connecting = None
            if st.link is not None and not st.link.closed:
                live[node] = st.link
        return live

    async def _drop_link(self, node: str) -> None:
        st = self.nodes.pop(node, None)
        if st is None:
            return
        for task in (st.watcher, st.connecting, *st.inflight.tasks.values()):
            if task is not None:
                task.cancel()
        if st.link is not None:
            with contextlib.suppress(DistError, OSError):
                await st.link.close()

    # ---- one poll ------------------------------------------------------------------------

    async def poll_once(self) -> None:
        now = self.clock()
        oks = await asyncio.gather(*(self._poll_source(st, now) for st in self.sources))
        complete = all(oks) and all(st.last_good is not None for st in self.sources)
        desired = {p.name for st in self.sources for p in (st.last_good or ())}
        now = self.clock()
        for name in desired - self.desired:
            self._first_desired.setdefault(name, now)
        for name in self.desired - desired:
            self._first_desired.pop(name, None)
            self._converged.discard(name)
        self.desired = desired

        try:
            owned = await self.ownership.owned(desired)
        except SourceError as exc:
            self.log.warning("ownership_failed", error=str(exc))
            owned = self.owned & desired
        if owned != self.owned:
            self.log.info("owned_nodes", nodes=sorted(owned))
        for node in set(self.nodes) - owned:
            await self._drop_link(node)
        self.owned = owned
        self.metrics.set("beamfleet_agent_owned_nodes", len(owned))

        live = await self._links(owned)
        results = await asyncio.gather(
            *(
                reconcile_node(
                    lk,
                    desired,
                    self.managed,
                    self.settings,
                    inflight=self.nodes[n].inflight,
                    round_wait=self.round_wait,
                )
                for n, lk in live.items()
            )
        )
        any_failed = False
        present: set[str] = set()
        for res in results:
            self._record(res)
            any_failed |= bool(res.failed)
            present |= res.extra
        for node in owned:
            self.metrics.set(
                "beamfleet_agent_node_reachable", 1.0 if node in live else 0.0, node=node
            )
        if complete:
            self.last_success = self.clock()
            self.tracker.successful_answer(desired, present, self.last_success)
            await self._departures(results, live)
        self._observe_convergence(results, live)
        healthy = self.healthy()[0]
        self.metrics.set("beamfleet_agent_healthy", 1.0 if healthy else 0.0)
        if any_failed or len(live) < len(owned):
            self.wake.set()

    def _record(self, res: NodeResult) -> None:
        st = self.nodes.setdefault(res.node, NodeState())
        st.last = res
        if res.error:
            self.log.error("node_rpc_failed", node=res.node, error=res.error)
        want = self.desired - {res.node}
        self.metrics.set("beamfleet_agent_desired_peers", len(want), node=res.node)
        self.metrics.set("beamfleet_agent_connected_peers", len(want & res.visible), node=res.node)
        for peer in res.connected:
            self.metrics.inc("beamfleet_agent_connects_total")
            self.log.info("peer_connected", node=res.node, peer=peer)
        for peer, err in res.failed.items():
            self.metrics.inc("beamfleet_agent_connect_failures_total")
            if st.failed_peers.get(peer) != err:
                self.log.warning("peer_connect_failed", node=res.node, peer=peer, error=err)
        st.failed_peers = dict(res.failed)

    async def _departures(self, results: list[NodeResult], live: dict[str, NodeLink]) -> None:
        now = self.clock()
        candidates = sorted({p for r in results for p in r.extra if self.tracker.eligible(p, now)})
        for peer in candidates:
            if peer in self._departing:
                continue
            holders = {r.node: live[r.node] for r in results if peer in r.extra}
            # in the background: a dead departed peer costs a connect timeout
            self._departing[peer] = asyncio.create_task(self._depart(peer, holders))
        if self._departing:
            await asyncio.wait(list(self._departing.values()), timeout=self.round_wait)

    async def _depart(self, peer: str, holders: dict[str, NodeLink]) -> None:
        try:
            how = await depart(peer, self.connector, holders, self.managed, self.settings)
            self.tracker.forget(peer)
            self.metrics.inc("beamfleet_agent_disconnects_total")
            self.log.info("peer_removed", peer=peer, how=how, holders=sorted(holders))
        finally:
            self._departing.pop(peer, None)

    def _observe_convergence(self, results: list[NodeResult], live: dict[str, NodeLink]) -> None:
        if not results:  # judged on the reachable owned nodes: one black hole must not hide it
            return
        now = self.clock()
        for peer in self.desired - self._converged:
            others = [r for r in results if r.node != peer]
            if others and all(peer in r.visible for r in others):
                t0 = self._first_desired.get(peer)
                if t0 is not None:
                    self.metrics.observe_convergence(now - t0)
                self._converged.add(peer)

    # ---- health and status ---------------------------------------------------------------

    def healthy(self) -> tuple[bool, str]:
        max_age = max(5.0, 5 * self.config.interval)
        if self.last_success is None:
            return False, "no successful poll yet"
        age = self.clock() - self.last_success
        if age > max_age:
            return False, f"last successful poll {age:.1f} s ago (> {max_age:g} s)"
        down = sorted(
            n
            for n in self.owned
            if self.nodes.get(n) is None or self.nodes[n].link is None or self.nodes[n].error
        )
        if down:
            return False, f"owned node(s) unreachable: {', '.join(down)}"
        return True, "ok"

    def status(self) -> dict[str, Any]:
        ok, reason = self.healthy()
        now = self.clock()
        nodes = {}
        for name in sorted(self.owned):
            st = self.nodes.get(name, NodeState())
            last = st.last
            want = self.desired - {name}
            nodes[name] = {
                "reachable": st.link is not None and not st.error,
                "error": st.error,
                "connected": sorted(want & last.visible) if last else [],
                "missing": sorted(want - last.visible) if last else sorted(want),
                "connect_failures": st.failed_peers,
            }
        return {
            "healthy": ok,
            "reason": reason,
            "ownership": self.ownership.label,
            "last_success_age": None
            if self.last_success is None
            else round(now - self.last_success, 3),
            "desired": sorted(self.desired),
            "owned": nodes,
            "pending_removal": {n: round(now - t, 1) for n, t in self.tracker.absent().items()},
            "agents": getattr(self.ownership, "agents", None),
            "sources": [
                {
                    "source": s.source.label,
                    "ok": not s.error,
                    "error": s.error,
                    "peers": None if s.last_good is None else len(s.last_good),
                }
                for s in self.sources
            ],
        }

    def routes(self) -> dict[str, Any]:
        def healthz() -> tuple[int, str, str]:
            ok, reason = self.healthy()
            return (200 if ok else 503), "text/plain", reason + "\n"

        def metrics() -> tuple[int, str, str]:
            return 200, "text/plain; version=0.0.4", self.metrics.render()

        def status() -> tuple[int, str, str]:
            return 200, "application/json", json_body(self.status())

        return {"/healthz": healthz, "/metrics": metrics, "/status": status}

    # ---- the loop --------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until ``stop`` is set; serves HTTP on ``config.listen`` meanwhile."""
        server = HttpServer(self.routes())
        await server.start(*self.config.listen)
        self.log.info(
            "agent_started",
            listen=f"{self.config.listen[0]}:{self.config.listen[1]}",
            ownership=self.ownership.label,
            interval=self.config.interval,
            sources=[s.source.label for s in self.sources],
        )
        try:
            while not stop.is_set():
                self.wake.clear()
                await self.poll_once()
                delay = self.config.interval * random.uniform(
                    1 - self.config.jitter, 1 + self.config.jitter
                )
                if self.wake.is_set() and self._quick < 2:
                    # a connection dropped or a connect failed: look again soon, but at
                    # most twice in a row so a permanently failing peer cannot spin us
                    self._quick += 1
                    delay = min(delay, 0.1)
                else:
                    self._quick = 0
                    self.wake.clear()
                    stop_task = asyncio.ensure_future(stop.wait())
                    wake_task = asyncio.ensure_future(self.wake.wait())
                    await asyncio.wait(
                        {stop_task, wake_task}, timeout=delay, return_when=asyncio.FIRST_COMPLETED
                    )
                    stop_task.cancel()
                    wake_task.cancel()
                    continue
                with contextlib.suppress(TimeoutError, asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
        finally:
            for node in list(self.nodes):
                await self._drop_link(node)
            await server.close()
            self.log.info("agent_stopped")

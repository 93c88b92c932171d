"""The agent's connections to the nodes it owns: opened, watched, reopened, closed.

A node that does not answer (a black-holed address) must not hold up the others, so a
connect that is still running when the round moves on stays in flight in the background
and is picked up by a later round instead of being started twice. A lost connection
wakes the agent at once (``on_lost``), so the next round reconnects without waiting a
whole interval.

Example::

    pool = LinkPool(connector, log, connect_timeout=3.0, round_wait=1.0, on_lost=wake.set)
    live = await pool.open({"app@10.0.0.1", "app@10.0.0.2"})   # name -> open link
    await pool.close_except(owned)                              # nodes no longer owned
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

from beamfleet.runtime.discovery.log import JsonLog
from beamfleet.runtime.discovery.reconcile import Connector, Inflight, NodeLink
from beamfleet.runtime.erlang_dist import AuthenticationFailed, DistError, HandshakeRejected


@dataclass
class LinkState:
    """One owned node's connection, and the work running through it.

    ``inflight`` (peer connects made through this link) lives here so that closing the
    link also cancels them.
    """

    link: NodeLink | None = None
    error: str = ""
    watcher: asyncio.Task[None] | None = None
    connecting: asyncio.Task[NodeLink | None] | None = None
    inflight: Inflight = field(default_factory=Inflight)

    @property
    def reachable(self) -> bool:
        """Connected at the last attempt (a link closed since is noticed by its watcher)."""
        return self.link is not None and not self.error


class LinkPool:
    """Connections to owned nodes, keyed by node name."""

    def __init__(
        self,
        connector: Connector,
        log: JsonLog,
        *,
        connect_timeout: float,
        round_wait: float,
        on_lost: Callable[[], None] = lambda: None,
    ) -> None:
        self._connector = connector
        self._log = log
        self._connect_timeout = connect_timeout
        self._round_wait = round_wait
        self._on_lost = on_lost
        self._states: dict[str, LinkState] = {}

    def __contains__(self, node: str) -> bool:
        return node in self._states

    def state(self, node: str) -> LinkState:
        """The node's state (a fresh, unconnected one for a node the pool does not hold)."""
        return self._states.get(node) or LinkState()

    def reachable(self, node: str) -> bool:
        return self.state(node).reachable

    def error(self, node: str) -> str:
        """Why the last connect to ``node`` failed ("" when it did not)."""
        return self.state(node).error

    def inflight(self, node: str) -> Inflight:
        """Peer connects running through ``node``'s link, kept across rounds."""
        return self._states.setdefault(node, LinkState()).inflight

    async def open(self, owned: set[str]) -> dict[str, NodeLink]:
        """Open links to ``owned`` nodes; return those open now.

        Waits at most ``round_wait`` for new connects; slower ones go on in the background.
        """
        waiting = []
        for node in sorted(owned):
            st = self._states.setdefault(node, LinkState())
            if (st.link is None or st.link.closed) and st.connecting is None:
                st.connecting = asyncio.create_task(self._connect(node))
            if st.connecting is not None:
                waiting.append(st.connecting)
        if waiting:
            await asyncio.wait(waiting, timeout=self._round_wait)
        live = {}
        for node in sorted(owned):
            st = self._states[node]
            if st.connecting is not None and st.connecting.done():
                st.connecting = None
            if st.link is not None and not st.link.closed:
                live[node] = st.link
        return live

    def retain_inflight(self, desired: set[str]) -> None:
        """Cancel the peer connects of every node to peers that are no longer ``desired``.

        Covers the nodes whose reconcile is still running from an earlier round too: they
        are not reconciled again until it ends, so they would not notice the change.
        """
        for node, st in self._states.items():
            st.inflight.retain(desired - {node})

    async def close_except(self, owned: set[str]) -> None:
        """Close the links of nodes no longer owned (another agent drives them now)."""
        for node in set(self._states) - owned:
            await self.close(node)

    async def close_all(self) -> None:
        for node in list(self._states):
            await self.close(node)

    async def close(self, node: str) -> None:
        """Close ``node``'s link and cancel everything running through it."""
        st = self._states.pop(node, None)
        if st is None:
            return
        for task in (st.watcher, st.connecting, *st.inflight.tasks.values()):
            if task is not None:
                task.cancel()
        if st.link is not None:
            with contextlib.suppress(DistError, OSError):
                await st.link.close()

    async def _connect(self, node: str) -> NodeLink | None:
        st = self._states.setdefault(node, LinkState())
        if st.link is not None and not st.link.closed:
            return st.link
        try:
            link = await asyncio.wait_for(self._connector(node), self._connect_timeout + 1)
        except (AuthenticationFailed, HandshakeRejected) as exc:
            if exc.retry_after is not None and st.error:
                # the client failed fast: the same failure as before, within its backoff
                st.link = None
                return None
            self._failed(node, st, str(exc))
            return None
        except (DistError, OSError, TimeoutError) as exc:
            self._failed(node, st, str(exc) or type(exc).__name__)
            return None
        if st.error:
            self._log.info("node_reachable", node=node)
        st.link, st.error = link, ""
        st.watcher = asyncio.create_task(self._watch(node, link))
        return link

    def _failed(self, node: str, st: LinkState, err: str) -> None:
        if err != st.error:  # log a failure once, not on every round
            self._log.error("node_unreachable", node=node, error=err)
        st.link, st.error = None, err


    async def _watch(self, node: str, link: NodeLink) -> None:
        await link.wait_closed()
        st = self._states.get(node)
        if st is not None and st.link is link:  # not closed on purpose
            self._log.warning("node_connection_lost", node=node)
            # the connects ran through this link: their results can only be errors now,
            # and a later round must start fresh ones through the new link
            st.inflight.cancel_all()
            self._on_lost()

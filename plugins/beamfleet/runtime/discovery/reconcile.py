"""Reconcile one owned node with the desired peer set, and the grace before a removal.

The pure parts (:class:`AbsenceTracker`, :func:`plan`) have no I/O; the connection is
injected (:class:`NodeLink`, :data:`Connector`) so the logic is unit-testable with a fake.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from beamfleet.runtime.discovery.departure import leave_rpc_args
from beamfleet.runtime.erlang_dist import DistError


class NodeLink(Protocol):
    """What reconcile needs of a connection to a node (an erlang_dist ``NodeConnection``)."""

    node: str

    @property
    def closed(self) -> bool: ...

    @property
    def peer_cert_not_after(self) -> float | None: ...

    async def nodes(self, kind: str = "visible", *, timeout: float | None = ...) -> list[str]: ...

    async def connect_node(self, peer: str, *, timeout: float | None = ...) -> bool: ...

    async def disconnect_node(self, peer: str, *, timeout: float | None = ...) -> bool: ...

    async def rpc(
        self, module: str, function: str, args: list[Any], *, timeout: float | None = ...
    ) -> Any: ...

    async def wait_closed(self) -> None: ...

    async def close(self) -> None: ...


Connector = Callable[[str], Awaitable[NodeLink]]


@dataclass(frozen=True)
class ReconcileSettings:
    """Bounds of one reconcile round.

    Args:
        connect_timeout: per ``net_kernel:connect_node`` call; a black-holed peer costs
            at most this, and only to itself (connects run in parallel).
        max_parallel: connects in flight at once, per owned node.
        rpc_timeout: other RPCs (``nodes()``, the leave expression).
        grace_polls / grace_seconds: a managed peer is removed only after it has been
            absent from this many successful answers AND for this long.
    """

    connect_timeout: float = 3.0
    max_parallel: int = 16
    rpc_timeout: float = 5.0
    grace_polls: int = 3
    grace_seconds: float = 10.0


@dataclass
class AbsenceTracker:
    """Counts, per peer, the successful answers it has been missing from.

    Only successful answers count: a failed, timed-out or refused-empty answer never
    brings a peer closer to removal.
    """

    grace_polls: int = 3
    grace_seconds: float = 10.0
    polls: int = 0
    _absent: dict[str, tuple[float, int]] = field(default_factory=dict)

    def successful_answer(self, desired: set[str], present: Iterable[str], now: float) -> None:
        """Record one successful answer: ``present`` are managed peers seen connected."""
        self.polls += 1
        for name in list(self._absent):
            if name in desired:
                del self._absent[name]
        for name in present:
            if name not in desired and name not in self._absent:
                self._absent[name] = (now, self.polls)

    def eligible(self, name: str, now: float) -> bool:
        """True once ``name`` has been absent long enough to be removed."""
        since = self._absent.get(name)
        if since is None:
            return False
        t0, p0 = since
        # the poll that first saw it absent counts as the first
        return self.polls - p0 + 1 >= self.grace_polls and now - t0 >= self.grace_seconds

    def forget(self, name: str) -> None:
        self._absent.pop(name, None)

    def absent(self) -> dict[str, float]:
        return {n: t for n, (t, _) in self._absent.items()}


def alive_of(node: str) -> str:
    return node.partition("@")[0]


@dataclass(frozen=True)
class Plan:
    """What one owned node needs: peers to connect, managed peers that should not be there."""

    missing: frozenset[str]
    extra: frozenset[str]


def plan(
    node: str, visible: Iterable[str], desired: set[str], managed: Callable[[str], bool]
) -> Plan:
    """Pure diff for ``node``: never itself, never unmanaged (other basenames, consoles).

    ``visible`` is ``erlang:nodes(visible)``, so hidden nodes never appear.
    """
    seen = set(visible)
    want = desired - {node}
    return Plan(
        frozenset(want - seen),
        frozenset(p for p in seen if p != node and managed(p) and p not in desired),
    )


@dataclass
class NodeResult:
    """The outcome of reconciling one owned node."""

    node: str
    visible: set[str] = field(default_factory=set)
    connected: set[str] = field(default_factory=set)
    failed: dict[str, str] = field(default_factory=dict)
    extra: set[str] = field(default_factory=set)
    error: str = ""


async def _connect_one(
    link: NodeLink, peer: str, sem: asyncio.Semaphore, settings: ReconcileSettings
) -> tuple[str, str]:
    async with sem:
        try:
            ok = await asyncio.wait_for(
                link.connect_node(peer, timeout=settings.connect_timeout),
                settings.connect_timeout + 0.5,
            )
        except TimeoutError:
            return peer, f"connect timed out after {settings.connect_timeout} s"
        except DistError as exc:
            return peer, str(exc)
        return peer, "" if ok else "net_kernel:connect_node returned false"


@dataclass
class Inflight:
    """Connects still running, per owned node, kept across rounds.

    A connect to a black-holed address runs up to ``connect_timeout`` in the background;
    the round does not wait for it (only up to ``round_wait``), and the next round does
    not start a second one for the same pair.
    """

    tasks: dict[str, asyncio.Task[tuple[str, str]]] = field(default_factory=dict)
    sem: asyncio.Semaphore | None = None

    def retain(self, peers: set[str]) -> None:
        """Cancel and forget the connects to anyone outside ``peers`` (no longer wanted).

        A connect to a departed peer must not go on (and then connect it) after the peer
        left the desired set.
        """
        for peer in [p for p in self.tasks if p not in peers]:
            self.tasks.pop(peer).cancel()

    def cancel_all(self) -> None:
        """Cancel and forget every connect (the link they run through is gone)."""
        self.retain(set())


async def reconcile_node(
    link: NodeLink,
    desired: set[str],
    managed: Callable[[str], bool],
    settings: ReconcileSettings,
    *,
    inflight: Inflight | None = None,
    round_wait: float | None = None,
) -> NodeResult:
    """Read ``nodes()`` of ``link``'s node and connect the missing desired peers in parallel.

    Waits for the connects at most ``round_wait`` seconds (default: until all finish);
    slower ones go on in ``inflight`` and are reported by a later round.
    """
    result = NodeResult(link.node)
    try:
        visible = await link.nodes("visible", timeout=settings.rpc_timeout)
    except (DistError, TimeoutError) as exc:
        result.error = str(exc)
        return result
    result.visible = set(visible)
    p = plan(link.node, visible, desired, managed)
    result.extra = set(p.extra)
    inflight = inflight if inflight is not None else Inflight()
    inflight.retain(desired - {link.node})
    if inflight.sem is None:
        inflight.sem = asyncio.Semaphore(max(1, settings.max_parallel))
    tasks = []
    for peer in sorted(p.missing):
        task = inflight.tasks.get(peer)
        if task is None:
            task = asyncio.create_task(_connect_one(link, peer, inflight.sem, settings))
            inflight.tasks[peer] = task
        tasks.append(task)
    if tasks:
        await asyncio.wait(tasks, timeout=round_wait)
    for task in tasks:
        if not task.done() or task.cancelled():  # cancelled: the peer is no longer desired
            continue
        peer, err = task.result()
        if inflight.tasks.get(peer) is task:
            del inflight.tasks[peer]
        if err:
            result.failed[peer] = err
        else:
            result.connected.add(peer)
            result.visible.add(peer)
    return result


async def depart(
    peer: str,
    connector: Connector,
    holders: dict[str, NodeLink],
    managed: Callable[[str], bool],
    settings: ReconcileSettings,
) -> str:
    """Remove ``peer`` from the cluster; returns how ("left" or "disconnected").

    ``holders`` are owned nodes (name -> link) that still see ``peer``. First choice: the
    peer leaves all its managed peers in one go (see :mod:`.departure`), so no remaining
    node loses a peer. Only when the peer cannot be reached at all (it then cannot
    report any loss either) do the holders disconnect it themselves.
    """
    try:
        link = await asyncio.wait_for(connector(peer), settings.connect_timeout + 0.5)
    except (DistError, OSError, TimeoutError):
        link = None
    if link is not None:
        try:
            theirs = await link.nodes("visible", timeout=settings.rpc_timeout)
            leave = sorted({n for n in theirs if managed(n)} | set(holders))
            module, function, args = leave_rpc_args(leave)
            await link.rpc(module, function, args, timeout=settings.rpc_timeout)
            return "left"
        except (DistError, TimeoutError):
            pass
        finally:
            await link.close()
    await asyncio.gather(
        *(h.disconnect_node(peer, timeout=settings.rpc_timeout) for h in holders.values()),
        return_exceptions=True,
    )
    return "disconnected"

"""Is a set of nodes one complete mesh? Asked of the nodes themselves.

The gate every rolling change waits on, and what ``check.py`` reports: each expected node
is asked for its ``nodes()`` over the distribution protocol (as a hidden node, so asking
changes nothing it reports). The mesh is complete when every expected node answers and
lists every other expected node.

Example::

    view = await look(["app@10.0.0.1", "app@10.0.0.2"], cookie)
    view.complete            # True when both see each other
    view.missing()           # {"app@10.0.0.2": ["app@10.0.0.1"]} when one does not
    view, seconds = await wait_for_mesh(nodes, cookie, timeout=60)
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from beamfleet.runtime.constants import EPMD_PORT
from beamfleet.runtime.erlang_dist import DistError, TlsConfig, connect

Tls = TlsConfig | ssl.SSLContext | None

# The identity a gate connects as (a hidden node: never in anybody's nodes()).
IDENTITY = "mesh"


@dataclass(frozen=True)
class NodeView:
    """One node's answer: the visible peers it lists, or why it could not be asked."""

    ok: bool
    peers: tuple[str, ...] = ()
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "peers": list(self.peers), "error": self.error}


@dataclass(frozen=True)
class MeshView:
    """Every expected node's answer, taken at one moment."""

    expected: tuple[str, ...]
    nodes: dict[str, NodeView] = field(default_factory=dict)

    def missing(self) -> dict[str, list[str]]:
        """{node: expected peers it does not list}; a node that could not be asked misses all."""
        gaps: dict[str, list[str]] = {}
        for node in self.expected:
            view = self.nodes.get(node)
            seen = set(view.peers) if view is not None and view.ok else set()
            unseen = [peer for peer in self.expected if peer != node and peer not in seen]
            if unseen or view is None or not view.ok:
                gaps[node] = unseen
        return gaps

    @property
    def complete(self) -> bool:
        return not self.missing()

    def problems(self) -> list[str]:
        """One sentence per node that breaks the mesh."""
        out: list[str] = []
        for node, unseen in self.missing().items():
            view = self.nodes.get(node)
            if view is None or not view.ok:
                out.append(f"{node} could not be asked: {view.error if view else 'no answer'}")
            else:
                out.append(f"{node} does not see {', '.join(unseen)}")
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "expected": list(self.expected),
            "nodes": {name: view.as_dict() for name, view in self.nodes.items()},
            "missing": self.missing(),
            "complete": self.complete,
            "problems": self.problems(),
        }


async def ask(
    node: str, cookie: str, *, timeout: float = 3.0, epmd_port: int = EPMD_PORT, tls: Tls = None
) -> NodeView:
    """``node``'s visible peers, or the reason it could not be asked.

    ``tls``: for nodes using TLS distribution (see ``erlang_dist.connect``).
    """
    try:
        async with connect(
            node, cookie, timeout=timeout, epmd_port=epmd_port, identity=IDENTITY, tls=tls
        ) as conn:
            peers = await conn.nodes("visible")
    except (DistError, OSError) as exc:
        return NodeView(ok=False, error=f"{type(exc).__name__}: {exc}")
    return NodeView(ok=True, peers=tuple(sorted(peers)))


async def look(
    nodes: Sequence[str],
    cookie: str,
    *,
    timeout: float = 3.0,
    epmd_port: int = EPMD_PORT,
    tls: Tls = None,
) -> MeshView:
    """Ask every node at once; one :class:`MeshView`."""
    expected = tuple(dict.fromkeys(nodes))
    answers = await asyncio.gather(
        *(ask(n, cookie, timeout=timeout, epmd_port=epmd_port, tls=tls) for n in expected)
    )
    return MeshView(expected, dict(zip(expected, answers, strict=True)))


async def wait_for_mesh(
    nodes: Sequence[str],
    cookie: str,
    *,
    timeout: float,
    interval: float = 1.0,
    connect_timeout: float = 3.0,
    epmd_port: int = EPMD_PORT,
    tls: Tls = None,
) -> tuple[MeshView, float]:
    """Look until the mesh is complete or ``timeout`` seconds pass.

    Returns the last view and the seconds waited (the view says whether it is complete).
    ``tls``: for nodes using TLS distribution; pass an ``ssl.SSLContext`` to load the
    files once rather than on every look.
    """
    start = time.monotonic()
    deadline = start + timeout
    while True:
        view = await look(nodes, cookie, timeout=connect_timeout, epmd_port=epmd_port, tls=tls)
        now = time.monotonic()
        if view.complete or now >= deadline:
            return view, round(now - start, 1)
        await asyncio.sleep(min(interval, max(0.0, deadline - now)))

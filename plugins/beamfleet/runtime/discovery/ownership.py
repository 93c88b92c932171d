"""Which nodes this agent drives: ``all``, ``local-epmd`` or ``rendezvous``.

Example::

    owner = AllOwnership()
    await owner.owned({"app@10.0.0.1", "app@10.0.0.2"})   # both
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import socket
from typing import Protocol

from beamfleet.runtime.discovery.errors import SourceError
from beamfleet.runtime.discovery.peers import is_ip
from beamfleet.runtime.discovery.sources.resolver import LookupFailed, StubResolver
from beamfleet.runtime.erlang_dist import DistError
from beamfleet.runtime.erlang_dist import epmd as epmd_client

MODES = ("local-epmd", "rendezvous", "all")


class Ownership(Protocol):
    """How an agent decides which desired nodes it drives.

    Everything the agent reads of an ownership mode is declared here (the status JSON
    shows ``agents``), so the agent never has to probe a mode for optional attributes.
    """

    label: str  # "all", "local-epmd", "rendezvous": in logs and the status JSON

    @property
    def agents(self) -> list[str] | None:
        """The live agents sharing the nodes (None: this mode does not look for any)."""
        ...

    async def owned(self, desired: set[str]) -> set[str]:
        """The subset of ``desired`` this agent drives; raises SourceError when unknown."""
        ...


def is_local_address(ip: str) -> bool:
    """True when ``ip`` is one of this host's (this namespace's) addresses: we can bind it."""
    if not is_ip(ip):
        return False
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        try:
            s.bind((ip, 0))
        except OSError:
            return False
    return True


class AllOwnership:
    """Drive every desired node (one agent for the whole cluster)."""

    label = "all"
    agents = None  # alone: no other agent to look for

    async def owned(self, desired: set[str]) -> set[str]:
        return set(desired)


class LocalEpmdOwnership:
    """Drive the desired nodes registered in the EPMD of this host, on this host's addresses."""

    label = "local-epmd"
    agents = None  # one agent per host, none of them needs to know the others

    def __init__(self, *, epmd_host: str = "127.0.0.1", epmd_port: int = 4369) -> None:
        self._host = epmd_host
        self._port = epmd_port

    async def owned(self, desired: set[str]) -> set[str]:
        try:
            names = await epmd_client.names(self._host, port=self._port, timeout=2.0)
        except (DistError, OSError) as exc:
            raise SourceError("local-epmd", str(exc)) from exc
        out = set()
        for node in desired:
            alive, _, host = node.partition("@")
            if alive in names and (is_local_address(host) or host in _local_names()):
                out.add(node)
        return out


def _local_names() -> set[str]:
    name = socket.gethostname()
    return {name, socket.getfqdn(name)}


def rendezvous_owner(node: str, agents: list[str]) -> str:
    """The agent with the highest hash of (agent, node): stable, and only the nodes of a
    vanished agent move when the agent set changes."""
    return max(agents, key=lambda a: hashlib.sha256(f"{a}|{node}".encode()).digest())


class RendezvousOwnership:
    """Each node is driven by exactly one live agent, chosen by rendezvous hashing.

    Agents find each other through their own DNS name (e.g. ``tasks.beamfleet-agent``); an
    agent counts as live when its ``--listen`` port accepts a TCP connection, so a stopped
    agent whose record is still in DNS (Swarm keeps them a while) loses its nodes on the
    next poll.
    """

    label = "rendezvous"

    def __init__(
        self,
        agents_name: str,
        *,
        resolver: StubResolver,
        port: int,
        self_address: str | None = None,
        probe_timeout: float = 0.5,
    ) -> None:
        self._name = agents_name
        self._resolver = resolver
        self._port = port
        self._self = self_address
        self._probe_timeout = probe_timeout
        self.agents: list[str] = []
        self.me: str | None = self_address

    async def _live(self, ip: str) -> bool:
        if ip == self.me:
            return True
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(ip, self._port), self._probe_timeout
            )
        except (OSError, TimeoutError):
            return False
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True

    async def owned(self, desired: set[str]) -> set[str]:
        try:
            found = await self._resolver.addresses(self._name)
        except LookupFailed as exc:
            raise SourceError(f"agents:{self._name}", str(exc)) from exc
        if self.me is None:
            self.me = next((ip for ip in found if is_local_address(ip)), None)
        if self.me is None:
            raise SourceError(
                f"agents:{self._name}",
                "none of its addresses is local; pass --advertise with this agent's address",
            )
        live = await asyncio.gather(*(self._live(ip) for ip in found))
        self.agents = sorted({ip for ip, ok in zip(found, live, strict=True) if ok} | {self.me})
        return {n for n in desired if rendezvous_owner(n, self.agents) == self.me}

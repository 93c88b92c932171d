"""``dns:tasks.app`` — A and AAAA records of a name; each address is one node."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import ClassVar, Self

from beamfleet.runtime.discovery.errors import SourceError
from beamfleet.runtime.discovery.log import JsonLog
from beamfleet.runtime.discovery.peers import Peer, PeerNaming
from beamfleet.runtime.discovery.sources.kind import BuildContext, SourceKind, SourceSpec
from beamfleet.runtime.discovery.sources.resolver import LookupFailed, StubResolver
from beamfleet.runtime.discovery.sources.subnet import Network, SubnetFilter


async def name_addresses(
    label: str, resolver: StubResolver, basename: str, naming: PeerNaming, addresses: list[str]
) -> set[Peer]:
    """Peers for ``addresses`` under ``naming`` (reverse names looked up when asked)."""
    if naming.mode != "reverse" and "{hostname}" not in naming.template:
        return {Peer(naming.name(basename, ip), ip) for ip in addresses}
    try:
        names = await asyncio.gather(*(resolver.reverse(ip) for ip in addresses))
    except LookupFailed as exc:
        raise SourceError(label, f"reverse lookup failed: {exc}") from exc
    missing = [ip for ip, n in zip(addresses, names, strict=True) if n is None]
    if missing:
        # a partial answer would prune the cluster to a subset: refuse it as a whole
        raise SourceError(label, f"no PTR record for {', '.join(missing)}")
    return {Peer(naming.name(basename, ip, n), ip) for ip, n in zip(addresses, names, strict=True)}


class ResolvedSource:
    """What the dns and srv sources share: a name looked up through a resolver, only the
    addresses inside ``subnets`` kept (the others logged once through ``log``), and each
    address named per ``naming``. A subclass names its ``scheme`` and looks up ``poll``.
    """

    scheme: ClassVar[str]

    def __init__(
        self,
        name: str,
        *,
        basename: str,
        resolver: StubResolver,
        naming: PeerNaming,
        subnets: Sequence[Network] = (),
        log: JsonLog | None = None,
    ) -> None:
        self.label = f"{self.scheme}:{name}"
        self._inside = SubnetFilter(subnets, label=self.label, log=log)
        self.basename: str | None = basename
        self.resolver = resolver
        self._name = name
        self._naming = naming
        self.empty_reason = ""
        self.resolver_stats = resolver.stats  # the same object: live counters

    async def _peers(self, addresses: list[str], *, what: str, missing: str) -> set[Peer]:
        """``addresses`` inside the subnets, as peers; why the answer is empty, if it is."""
        self.empty_reason = "" if addresses else f"{self._name} has no {missing}"
        if addresses and self._inside:
            addresses = self._inside(addresses)
            if not addresses:
                self.empty_reason = (
                    f"no {what} of {self._name} is inside --subnet {self._inside.describe()}"
                )
        assert self.basename is not None
        return await name_addresses(
            self.label, self.resolver, self.basename, self._naming, addresses
        )

    @classmethod
    def build(cls, spec: SourceSpec, ctx: BuildContext) -> Self:
        """The registry's constructor: ``KIND:NAME`` with ``--basename`` (validated)."""
        assert spec.basename
        return cls(
            spec.arg,
            basename=spec.basename,
            resolver=ctx.resolver(),
            naming=ctx.naming,
            subnets=ctx.subnets,
            log=ctx.log,
        )


class DnsSource(ResolvedSource):
    """Every A/AAAA address of ``name`` becomes ``basename@address`` (or per ``naming``).

    Example::

        DnsSource("tasks.app", basename="app", resolver=StubResolver.from_system(),
                  naming=PeerNaming.parse("ip"))
    """

    scheme = "dns"

    async def poll(self) -> set[Peer]:
        try:
            addresses = await self.resolver.addresses(self._name)
        except LookupFailed as exc:
            raise SourceError(self.label, str(exc)) from exc
        return await self._peers(addresses, what="address", missing="A/AAAA record")


SOURCE_KIND = SourceKind(
    kind="dns",
    usage="dns:NAME",
    example="tasks.app",
    help="A and AAAA records of NAME, each address one node: basename@IP (IPv4 and IPv6)",
    needs_basename=True,
    build=DnsSource.build,
)

"""``srv:_erlang._tcp.example.internal`` — SRV targets, then their addresses."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import dns.rdatatype
from dns.rdtypes.IN.SRV import SRV

from beamfleet.runtime.discovery.errors import SourceError
from beamfleet.runtime.discovery.log import JsonLog
from beamfleet.runtime.discovery.peers import Peer, PeerNaming
from beamfleet.runtime.discovery.sources.dns import ResolvedSource
from beamfleet.runtime.discovery.sources.kind import SourceKind
from beamfleet.runtime.discovery.sources.resolver import LookupFailed, StubResolver
from beamfleet.runtime.discovery.sources.subnet import Network


class SrvSource(ResolvedSource):
    """Each SRV target's addresses become peers (``basename@<ip>``); with
    ``--naming reverse`` (or ``target_names=True``) peers are named after the SRV targets
    themselves (``basename@TARGET``), without address or PTR lookups. With ``subnets``,
    only the addresses inside one of them are kept (target names have no address to
    check, so ``subnets`` does not apply to them).

    Example::

        SrvSource("_erlang._tcp.app.internal", basename="app", resolver=r,
                  naming=PeerNaming.parse("ip"))
    """

    scheme = "srv"

    def __init__(
        self,
        name: str,
        *,
        basename: str,
        resolver: StubResolver,
        naming: PeerNaming,
        target_names: bool = False,
        subnets: Sequence[Network] = (),
        log: JsonLog | None = None,
    ) -> None:
        super().__init__(
            name, basename=basename, resolver=resolver, naming=naming, subnets=subnets, log=log
        )
        self._target_names = target_names or naming.mode == "reverse"

    async def poll(self) -> set[Peer]:
        assert self.basename is not None
        try:
            rrsets, resp = await self.resolver.lookup(self._name, "SRV")
            targets = sorted(
                {
                    r.target.to_text().rstrip(".")
                    for rrset in rrsets
                    for r in rrset
                    if isinstance(r, SRV) and r.target.to_text() != "."
                }
            )
            if self._target_names:
                self.empty_reason = "" if targets else f"{self._name} has no SRV target"
                return {Peer(f"{self.basename}@{t}") for t in targets}
            glue: dict[str, list[str]] = {}
            for rrset in resp.additional if resp is not None else []:
                if rrset.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
                    glue.setdefault(rrset.name.to_text().rstrip("."), []).extend(
                        r.to_text() for r in rrset
                    )
            need = [t for t in targets if t not in glue]
            found = await asyncio.gather(*(self.resolver.addresses(t + ".") for t in need))
        except LookupFailed as exc:
            raise SourceError(self.label, str(exc)) from exc
        glue.update(zip(need, found, strict=True))
        addresses = sorted({ip for t in targets for ip in glue.get(t, [])})
        return await self._peers(addresses, what="SRV target address", missing="SRV target address")


SOURCE_KIND = SourceKind(
    kind="srv",
    usage="srv:NAME",
    example="_erlang._tcp.app.internal",
    help="SRV targets of NAME, then their addresses (glue or A/AAAA lookups); "
    "with --naming reverse, basename@TARGET",
    needs_basename=True,
    build=SrvSource.build,
)

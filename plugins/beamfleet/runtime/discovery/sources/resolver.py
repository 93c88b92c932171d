"""A small stub resolver on dnspython: search list + ndots, UDP then TCP on truncation.

dnspython's high-level resolver hides whether an answer came over TCP; the agent counts
truncation retries (Swarm's embedded DNS truncates at ~30 records), so this module sends
the queries itself with :mod:`dns.asyncquery`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.resolver
import dns.reversename
import dns.rrset

from beamfleet.runtime.discovery.errors import ConfigError
from beamfleet.runtime.host_port import split_host_port


class LookupFailed(Exception):
    """No nameserver gave a usable answer for a query (timeout, SERVFAIL, REFUSED...)."""


@dataclass
class ResolverStats:
    queries: int = 0
    tcp_retries: int = 0
    timeouts: int = 0


def parse_nameserver(text: str) -> tuple[str, int]:
    """``"10.0.0.2"``, ``"10.0.0.2:5353"``, ``"[fd00::2]:53"`` or ``"fd00::2"`` -> (ip, port)."""
    try:
        return split_host_port(text, default_port=53)
    except ValueError as exc:
        raise ConfigError(
            [f"--nameserver {text!r}: expected IP[:PORT] or [IPV6]:PORT ({exc})"]
        ) from exc


@dataclass
class StubResolver:
    """Resolves names the way libc would (search list, ndots), with a per-query timeout.

    Example::

        r = StubResolver.from_system(timeout=2.0)          # /etc/resolv.conf
        r = StubResolver([("10.231.0.2", 53)], timeout=1.0)
        rrsets = await r.lookup("tasks.app", "A")
    """

    nameservers: list[tuple[str, int]]
    timeout: float = 2.0
    search: list[dns.name.Name] = field(default_factory=list)
    ndots: int = 1
    stats: ResolverStats = field(default_factory=ResolverStats)

    @classmethod
    def from_system(
        cls,
        nameservers: list[tuple[str, int]] | None = None,
        *,
        timeout: float = 2.0,
        resolv_conf: str = "/etc/resolv.conf",
    ) -> StubResolver:
        """Search list and ndots from ``resolv_conf``; nameservers from it unless given."""
        try:
            base = dns.resolver.Resolver(filename=resolv_conf, configure=True)
            servers = [(str(ns), 53) for ns in base.nameservers]
            search, ndots = list(base.search), base.ndots or 1
        except (dns.resolver.NoResolverConfiguration, OSError):
            if not nameservers:
                raise ConfigError(
                    [f"no nameserver: {resolv_conf} lists none; pass --nameserver IP[:PORT]"]
                ) from None
            servers, search, ndots = [], [], 1
        return cls(nameservers or servers, timeout, search, ndots)

    def candidates(self, name: str) -> list[dns.name.Name]:
        """The absolute names to try for ``name``, in libc's order."""
        if name.endswith("."):
            return [dns.name.from_text(name)]
        absolute = dns.name.from_text(name)
        searched = [dns.name.from_text(name, origin=s) for s in self.search]
        if name.count(".") >= self.ndots:
            return [absolute, *searched]
        return [*searched, absolute]

    async def _query(
        self, qname: dns.name.Name, rdtype: dns.rdatatype.RdataType
    ) -> dns.message.Message:
        q = dns.message.make_query(qname, rdtype)  # no EDNS: behave like the resolvers we meet
        last = "no nameserver configured"
        for host, port in self.nameservers:
            self.stats.queries += 1
            try:
                resp = await dns.asyncquery.udp(
                    q, host, timeout=self.timeout, port=port, ignore_unexpected=True
                )
                if resp.flags & dns.flags.TC:
                    # truncated: the full answer only comes over TCP
                    self.stats.tcp_retries += 1
                    resp = await dns.asyncquery.tcp(q, host, timeout=self.timeout, port=port)
            except (TimeoutError, dns.exception.Timeout):
                self.stats.timeouts += 1
                last = f"{host}:{port} timed out after {self.timeout} s"
                continue
            except (OSError, dns.exception.DNSException) as exc:
                last = f"{host}:{port}: {exc}"
                continue
            rcode = resp.rcode()
            if rcode in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
                return resp
            last = f"{host}:{port} answered {dns.rcode.to_text(rcode)}"
        raise LookupFailed(f"{qname} {dns.rdatatype.to_text(rdtype)}: {last}")

    async def lookup(
        self, name: str, rdtype: str
    ) -> tuple[list[dns.rrset.RRset], dns.message.Message | None]:
        """Answer RRsets of type ``rdtype`` for the first candidate name that exists.

        Returns ``([], None)`` when no candidate exists (NXDOMAIN everywhere): a real,
        empty answer. Raises :class:`LookupFailed` when a server could not answer.
        """
        rtype = dns.rdatatype.from_text(rdtype)
        for qname in self.candidates(name):
            resp = await self._query(qname, rtype)
            if resp.rcode() == dns.rcode.NXDOMAIN:
                continue
            return [r for r in resp.answer if r.rdtype == rtype], resp
        return [], None

    async def addresses(self, name: str) -> list[str]:
        """A and AAAA addresses of ``name`` (both queried at once)."""
        (a, _), (aaaa, _) = await asyncio.gather(self.lookup(name, "A"), self.lookup(name, "AAAA"))
        return [r.to_text() for rrset in (*a, *aaaa) for r in rrset]

    async def reverse(self, ip: str) -> str | None:
        """The PTR name of ``ip`` without the trailing dot, or None when it has none."""
        rrsets, _ = await self.lookup(dns.reversename.from_address(ip).to_text(), "PTR")
        for rrset in rrsets:
            for r in rrset:
                return str(r.to_text()).rstrip(".")
        return None

"""``rancher`` or ``rancher:URL`` — the Rancher 1.x metadata API's ``/latest/self/service``."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from typing import Any

from beamfleet.runtime.discovery.errors import SourceError
from beamfleet.runtime.discovery.peers import Peer, PeerNaming, is_ip
from beamfleet.runtime.discovery.sources.kind import BuildContext, SourceKind, SourceSpec

DEFAULT_URL = "http://rancher-metadata/latest/self/service"


def container_addresses(service: Any) -> list[str]:
    """Addresses of the service's running containers; containers missing fields are skipped.

    Rancher 1.6 gives ``primary_ip`` and sometimes ``ips``; a container being created
    may have neither (libcluster's strategy crashes on those).
    """
    if not isinstance(service, dict):
        return []
    out: list[str] = []
    for c in service.get("containers") or []:
        if not isinstance(c, dict):
            continue
        state = c.get("state")
        if state is not None and state not in ("running", "starting"):
            continue
        ip = c.get("primary_ip")
        if not (isinstance(ip, str) and is_ip(ip)):
            ips = c.get("ips")
            ip = (
                next((i for i in ips if isinstance(i, str) and is_ip(i)), None)
                if isinstance(ips, list)
                else None
            )
        if ip:
            out.append(ip)
    return sorted(set(out))


class RancherSource:
    """One GET per poll, JSON, with a timeout.

    Example::

        RancherSource(basename="app", naming=PeerNaming.parse("ip"))
    """

    def __init__(
        self, url: str | None = None, *, basename: str, naming: PeerNaming, timeout: float = 2.0
    ) -> None:
        self.url = url or DEFAULT_URL
        self.label = "rancher" if url is None else f"rancher:{url}"
        self.basename: str | None = basename
        self._naming = naming
        self._timeout = timeout
        self.empty_reason = ""
        self.resolver_stats = None  # HTTP, no DNS resolver of its own

    def _get(self) -> Any:
        req = urllib.request.Request(self.url, headers={"Accept": "application/json"})
        with urllib.request.urlopen(req, timeout=self._timeout) as resp:
            return json.loads(resp.read())

    async def poll(self) -> set[Peer]:
        try:
            service = await asyncio.wait_for(asyncio.to_thread(self._get), self._timeout + 1)
        except (OSError, urllib.error.URLError, TimeoutError, ValueError) as exc:
            raise SourceError(self.label, f"GET {self.url} failed: {exc}") from exc
        if not isinstance(service, dict):
            raise SourceError(self.label, f"GET {self.url}: expected a JSON object")
        assert self.basename is not None
        ips = container_addresses(service)
        self.empty_reason = "" if ips else "the service lists no container with an address"
        return {Peer(self._naming.name(self.basename, ip), ip) for ip in ips}


def _build(spec: SourceSpec, ctx: BuildContext) -> RancherSource:
    assert spec.basename  # validated: rancher needs a basename
    return RancherSource(
        spec.arg or None, basename=spec.basename, naming=ctx.naming, timeout=ctx.timeout
    )


SOURCE_KIND = SourceKind(
    kind="rancher",
    usage="rancher[:URL]",
    example=DEFAULT_URL,
    help=f"the running containers of the Rancher 1.x metadata API's service (JSON; default URL "
    f"{DEFAULT_URL})",
    needs_basename=True,
    arg_required=False,
    build=_build,
)

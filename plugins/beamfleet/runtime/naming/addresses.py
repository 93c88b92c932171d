"""The host's or container's own addresses, with interface and prefix length.

One robust approach, the same in the Python CLI and in the sh shim, so both see the same
candidates in the same order:

- When ``ip`` (iproute2) is on PATH: ``ip -j addr show`` here (the shim reads the same
  data as ``ip -o addr show``).
- Otherwise (slim images ship without iproute2) the kernel's own tables in /proc:
  IPv6 from ``/proc/net/if_inet6`` (address, prefix, scope, interface in one line);
  IPv4 from ``/proc/net/fib_trie`` (the ``/32 host LOCAL`` entries are this host's
  addresses) joined with ``/proc/net/route`` (the directly connected route that holds
  an address gives its interface and prefix length; longest prefix wins).
- ``BEAMFLEET_ADDRESSES=ip|proc`` forces one of the two (tests run both).

Addresses that peers can never dial are dropped: loopback, link-local (``169.254/16``,
``fe80::/10``), unspecified, multicast. The list is sorted (IPv4 first, then by numeric
address, then interface) so that the order does not depend on where it was read from.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from beamfleet.runtime.naming.errors import ProviderError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Address:
    """One address of an interface: ``Address.parse("10.0.9.4/24", "eth1")``."""

    ip: IPAddress
    prefixlen: int
    interface: str

    @classmethod
    def parse(cls, cidr: str, interface: str = "") -> Address:
        iface = ipaddress.ip_interface(cidr.strip())
        return cls(iface.ip, iface.network.prefixlen, interface)

    @property
    def network(self) -> IPNetwork:
        return ipaddress.ip_network(f"{self.ip}/{self.prefixlen}", strict=False)

    @property
    def sort_key(self) -> tuple[int, int, str]:
        return (self.ip.version, int(self.ip), self.interface)

    def __str__(self) -> str:
        where = f" on {self.interface}" if self.interface else ""
        return f"{self.ip}/{self.prefixlen}{where}"


def is_candidate(ip: IPAddress) -> bool:
    """Could a peer dial this address? (not loopback/link-local/unspecified/multicast)"""
    return not (ip.is_loopback or ip.is_link_local or ip.is_unspecified or ip.is_multicast)


def candidates(addresses: Iterable[Address]) -> list[Address]:
    """Dialable addresses, de-duplicated and in the canonical order."""
    return sorted({a for a in addresses if is_candidate(a.ip)}, key=lambda a: a.sort_key)


# -- reading them from the system ---------------------------------------------------------
def list_addresses(
    environ: Mapping[str, str] | None = None, proc: Path = Path("/proc")
) -> list[Address]:
    """This host's dialable addresses (see the module docstring for where they come from)."""
    env = os.environ if environ is None else environ
    method = env.get("BEAMFLEET_ADDRESSES", "")
    if method not in ("", "ip", "proc"):
        raise ProviderError(f"BEAMFLEET_ADDRESSES must be 'ip' or 'proc', not '{method}'")
    ip_cmd = shutil.which("ip")
    if method == "ip" and ip_cmd is None:
        raise ProviderError("BEAMFLEET_ADDRESSES=ip but no 'ip' command (iproute2) on PATH")
    if ip_cmd is not None and method != "proc":
        result = subprocess.run(
            [ip_cmd, "-j", "addr", "show"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        if result.returncode != 0:
            raise ProviderError(f"'ip -j addr show' failed: {result.stderr.strip()}")
        return candidates(parse_ip_json(result.stdout))
    try:
        fib_trie = (proc / "net" / "fib_trie").read_text()
        route = (proc / "net" / "route").read_text()
        if_inet6_path = proc / "net" / "if_inet6"
        if_inet6 = if_inet6_path.read_text() if if_inet6_path.exists() else ""
    except OSError as exc:
        raise ProviderError(f"cannot read the address tables in {proc}/net: {exc}") from exc
    return candidates([*parse_proc_ipv4(fib_trie, route), *parse_if_inet6(if_inet6)])


def parse_ip_json(text: str) -> list[Address]:
    """Addresses from ``ip -j addr show`` output (scope host/link entries dropped)."""
    out: list[Address] = []
    links: list[dict[str, Any]] = json.loads(text or "[]")
    for link in links:
        for info in link.get("addr_info", []):
            if info.get("scope") in ("host", "link") or "local" not in info:
                continue
            out.append(
                Address(
                    ipaddress.ip_address(info["local"]),
                    int(info["prefixlen"]),
                    str(link.get("ifname", "")),
                )
            )
    return out


def parse_if_inet6(text: str) -> list[Address]:
    """Addresses from /proc/net/if_inet6: ``hex ifindex plen(hex) scope(hex) flags ifname``."""
    out: list[Address] = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 6 or len(fields[0]) != 32:
            continue
        scope = int(fields[3], 16)
        if scope != 0:  # 0x00 global; 0x10 host, 0x20 link, ...
            continue
        out.append(
            Address(ipaddress.IPv6Address(int(fields[0], 16)), int(fields[2], 16), fields[5])
        )
    return out


def parse_proc_ipv4(fib_trie: str, route: str) -> list[Address]:
    """IPv4 addresses from /proc/net/fib_trie LOCAL entries, placed by /proc/net/route."""
    local: list[ipaddress.IPv4Address] = []
    last: str | None = None
    for line in fib_trie.splitlines():
        stripped = line.strip()
        if stripped.startswith("|--"):
            last = stripped[3:].strip()
        elif stripped.startswith("/32 host LOCAL") and last is not None:
            ip = ipaddress.IPv4Address(last)
            if ip not in local:
                local.append(ip)
    routes: list[tuple[str, ipaddress.IPv4Network]] = []
    for line in route.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 8 or fields[2] != "00000000":  # only directly connected routes
            continue
        dest = ipaddress.IPv4Address(int.from_bytes(bytes.fromhex(fields[1]), "little"))
        mask = int.from_bytes(bytes.fromhex(fields[7]), "little")
        routes.append((fields[0], ipaddress.IPv4Network(f"{dest}/{mask.bit_count()}")))
    out: list[Address] = []
    for ip in local:
        best = max(
            ((iface, net) for iface, net in routes if ip in net and net.prefixlen > 0),
            key=lambda r: r[1].prefixlen,
            default=None,
        )
        if best is not None:
            out.append(Address(ip, best[1].prefixlen, best[0]))
    return out


def from_network_devices(devices: Mapping[str, Mapping[str, Any]]) -> list[Address]:
    """Addresses from pyinfra's ``NetworkDevices`` fact (deploy-time templating)."""
    out: list[Address] = []
    for ifname, dev in devices.items():
        for family in ("ipv4", "ipv6"):
            block = dev.get(family)
            if not block:
                continue
            for entry in [block, *block.get("additional_ips", [])]:
                if "address" in entry and "mask_bits" in entry:
                    out.append(Address.parse(f"{entry['address']}/{entry['mask_bits']}", ifname))
    return candidates(out)

"""Network namespaces as "hosts" for tests: a bridge in the root namespace, one veth each.

Example::

    with Lab(prefix="bf231", v4="10.231", v6="fd00:231::") as lab:
        h = lab.add_host()            # netns "bf231-h1", 10.231.1.1 and fd00:231::1:1
        lab.run(h, "ip", "addr")      # commands inside it
        lab.remove_host(h)

The root namespace gets ``<v4>.0.1/16`` and ``<v6>1/64`` on the bridge, so a process in
the root namespace (the agent under test) reaches every host. Everything created is
removed by :meth:`Lab.close` (also after a failure), and stale leftovers of an earlier
run with the same prefix are removed first.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, check=check, timeout=30)


@dataclass
class Host:
    name: str  # netns name
    index: int
    ip4: str
    ip6: str
    veth: str  # root-side interface


@dataclass
class Lab:
    """A bridge plus network namespaces attached to it (see module docstring)."""

    prefix: str = "bf231"
    v4: str = "10.231"
    v6: str | None = "fd00:231::"  # None: IPv4 only
    hosts: dict[str, Host] = field(default_factory=dict)
    _next: int = 1

    @property
    def bridge(self) -> str:
        return f"{self.prefix}br"

    @property
    def gateway4(self) -> str:
        return f"{self.v4}.0.1"

    def __enter__(self) -> Lab:
        self.cleanup_stale()
        try:
            sh("ip", "link", "add", self.bridge, "type", "bridge")
            sh("ip", "addr", "add", f"{self.gateway4}/16", "dev", self.bridge)
            if self.v6:
                sh("ip", "-6", "addr", "add", f"{self.v6}1/64", "dev", self.bridge, "nodad")
            sh("ip", "link", "set", self.bridge, "up")
            # bridged traffic goes through iptables here (br_netfilter, Docker's FORWARD
            # DROP policy): let the hosts of this bridge talk to each other
            for tool in ("iptables", "ip6tables"):
                sh(tool, "-I", "FORWARD", "1", *self._fw_rule())
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _fw_rule(self) -> list[str]:
        return ["-i", self.bridge, "-o", self.bridge, "-j", "ACCEPT",
                "-m", "comment", "--comment", f"beamfleet-test-{self.prefix}"]

    def cleanup_stale(self) -> None:
        for tool in ("iptables", "ip6tables"):
            while sh(tool, "-D", "FORWARD", *self._fw_rule(), check=False).returncode == 0:
                pass
        out = sh("ip", "netns", "list", check=False).stdout
        for line in out.splitlines():
            name = line.split()[0] if line.split() else ""
            if name.startswith(f"{self.prefix}-"):
                self._kill_inside(name)
                sh("ip", "netns", "exec", name, "ip", "link", "del", "eth0", check=False)
                sh("ip", "netns", "del", name, check=False)
        sh("ip", "link", "del", self.bridge, check=False)

    def add_host(self, index: int | None = None) -> Host:
        """A new namespace with ``<v4>.<i // 250>.<i % 250 + 1>``-style addresses."""
        i = index if index is not None else self._next
        self._next = max(self._next, i + 1)
        name = f"{self.prefix}-h{i}"
        veth = f"{self.prefix}v{i}"
        ip4 = f"{self.v4}.{1 + i // 250}.{i % 250 + 1}"
        ip6 = f"{self.v6}{1 + i // 250:x}:{i % 250 + 1:x}" if self.v6 else ""
        host = Host(name, i, ip4, ip6, veth)
        self.hosts[name] = host
        sh("ip", "netns", "add", name)
        # a namespace deleted a moment ago may still be tearing down its veth (the kernel
        # does that asynchronously): retry for a bounded time
        deadline = time.monotonic() + 10
        while sh("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns",
                 name, check=False).returncode != 0:
            sh("ip", "link", "del", veth, check=False)
            if time.monotonic() > deadline:
                raise RuntimeError(f"cannot create veth {veth} for {name}")
            time.sleep(0.1)
        sh("ip", "link", "set", veth, "master", self.bridge, "up")
        self.run(host, "ip", "link", "set", "lo", "up")
        self.run(host, "ip", "addr", "add", f"{ip4}/16", "dev", "eth0")
        if ip6:
            self.run(host, "ip", "-6", "addr", "add", f"{ip6}/64", "dev", "eth0", "nodad")
        self.run(host, "ip", "link", "set", "eth0", "up")
        self.run(host, "ip", "route", "add", "default", "via", self.gateway4)
        return host

    def run(self, host: Host, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return sh("ip", "netns", "exec", host.name, *args, check=check)

    def blackhole(self, host: Host) -> None:
        """Drop every packet to and from ``host`` (a peer that never answers)."""
        self.run(host, "ip", "link", "set", "eth0", "down")
        # root-side: the address stays "on link", so SYNs go out and vanish
        sh("ip", "link", "set", host.veth, "down")

    @staticmethod
    def _kill_inside(name: str) -> None:
        """Kill what still runs in the namespace (a deleted netns lives on with them)."""
        for pid in sh("ip", "netns", "pids", name, check=False).stdout.split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)

    def remove_host(self, host: Host) -> None:
        self._kill_inside(host.name)
        sh("ip", "link", "del", host.veth, check=False)  # synchronous, unlike netns del
        sh("ip", "netns", "del", host.name, check=False)
        self.hosts.pop(host.name, None)

    def close(self) -> None:
        for host in list(self.hosts.values()):
            with contextlib.suppress(Exception):
                self.remove_host(host)
        self.cleanup_stale()

#!/usr/bin/env python3
"""Convergence of `beamfleet agent` on N = 10, 30 (and 100) real erl nodes, vs libcluster defaults.

Each node is one ``erl -name app@10.235.x.y`` in its own network namespace with its own
EPMD (10.235.0.0/16); a real dnsmasq on the bridge serves ``app.bench``; the agent is the
real CLI in the root namespace (``--ownership all``).

Measured, per N and per agent setting:
- join: a node is (re)started, then added to DNS (t0 = dnsmasq has reloaded); done when
  the new node's ``nodes()`` holds all N-1 others (connections are symmetric, so then
  every node sees every other). Watched through a hidden connection polled every 10 ms.
- removal (defaults only): a live node is dropped from DNS; done when it has no peer.
  This includes the grace period (>= 3 polls and >= 10 s) by design.
- peer loss: every node logs its nodeup/nodedown events from inside the VM; any
  ``nodedown`` of a node other than the one being replaced/removed is a lost peer.
- agent RSS and CPU (the largest N, defaults) over a quiet 20 s window, from /proc.

The baseline is the same agent with libcluster's defaults: 5 s interval, no jitter,
sequential connects (``--max-parallel 1``).

Usage: .venv/bin/python benchmarks/convergence.py [--events 20] [--sizes 10,30]
         [--baseline-sizes 10,30]
(root; needs ip netns, dnsmasq, erl; takes about 10 minutes on 2 cores; --sizes 10,30,100
--baseline-sizes 10,30 adds the 100-node row, about 5 minutes more and 3 GB of memory).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import os
import platform
import random
import signal
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.agent import AgentProcess  # noqa: E402
from tests.support.agent import node_events as events  # noqa: E402
from tests.support.agent import start_beam as start_beam_in  # noqa: E402
from tests.support.dnsmasq import Dnsmasq  # noqa: E402
from tests.support.erlang import ErlNode, random_cookie  # noqa: E402
from tests.support.netns import Host, Lab  # noqa: E402

from beamfleet.runtime.erlang_dist import connect  # noqa: E402

COOKIE = random_cookie()
NAME = "app.bench"
BEAM_FLAGS = ["+S", "1", "+A", "1", "+sbwt", "none", "+MMmcs", "30", "-kernel",
              "net_ticktime", "30"]
DEFAULTS: list[str] = []
BASELINE = ["--interval", "5", "--jitter", "0", "--max-parallel", "1"]


def start_beam(host: Host) -> ErlNode:
    return start_beam_in(host, COOKIE, beam_flags=BEAM_FLAGS, timeout=60)


def kill_beam(node: ErlNode) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(node.proc.pid, signal.SIGKILL)
    node.stop()


async def wait_peers(node: ErlNode, want: set[str] | None, timeout: float) -> float:
    """Seconds until ``node``'s nodes() covers ``want`` (None: until it is empty)."""
    t0 = time.monotonic()
    async with connect(node.name, COOKIE, timeout=5) as conn:
        while time.monotonic() - t0 < timeout:
            seen = set(await conn.nodes())
            if (want is None and not seen) or (want is not None and seen >= want):
                return time.monotonic() - t0
            await asyncio.sleep(0.01)
    raise TimeoutError(f"{node.name}: not converged within {timeout} s")


@dataclass
class Result:
    label: str
    n: int
    join: list[float] = field(default_factory=list)
    removal: list[float] = field(default_factory=list)
    lost: int = 0
    rss: float | None = None
    cpu: float | None = None


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def set_dns(dns: Dnsmasq, nodes: list[ErlNode]) -> None:
    dns.set_records({NAME: [n.host for n in nodes]})


def losses(nodes: list[ErlNode], before: dict[str, int], allowed: str) -> int:
    return sum(1 for n in nodes for e in events(n)[before.get(n.name, 0):]
               if e.startswith("nodedown") and e.split()[1] != allowed)


def full_mesh(nodes: list[ErlNode], timeout: float) -> None:
    async def all_nodes() -> None:
        await asyncio.gather(*(wait_peers(n, {m.name for m in nodes} - {n.name}, timeout)
                               for n in nodes))
    asyncio.run(all_nodes())


def run_phase(label: str, args: list[str], dns: Dnsmasq, hosts: list[Host],
              nodes: list[ErlNode], n: int, n_events: int, removals: int,
              measure_usage: bool) -> Result:
    res = Result(label, n)
    interval = float(args[args.index("--interval") + 1]) if "--interval" in args else 1.0
    members = nodes[:n]
    set_dns(dns, members)
    agent = AgentProcess("--source", f"dns:{NAME}", "--basename", "app", "--nameserver",
                         dns.listen, "--ownership", "all", *args, cookie=COOKIE)
    try:
        full_mesh(members, 120)
        for i in range(n_events):
            k = random.randrange(n)
            x = members[k]
            others = [m for m in members if m is not x]
            set_dns(dns, others)
            kill_beam(x)
            x = members[k] = nodes[k] = start_beam(hosts[k])
            before = {m.name: len(events(m)) for m in others}
            # a random phase against the agent's poll timer (one interval wide)
            time.sleep(random.uniform(0, interval))
            set_dns(dns, members)
            res.join.append(asyncio.run(wait_peers(x, {m.name for m in others}, 60)))
            res.lost += losses(others, before, x.name)
            print(f"  {label} N={n} join {i + 1}/{n_events}: {res.join[-1]:.3f} s",
                  file=sys.stderr)
        for i in range(removals):
            x = members[random.randrange(n)]
            others = [m for m in members if m is not x]
            before = {m.name: len(events(m)) for m in others}
            set_dns(dns, others)
            res.removal.append(asyncio.run(wait_peers(x, None, 60)))
            # only the removed node may go down, and it must go down everywhere
            res.lost += losses(others, before, x.name)
            print(f"  {label} N={n} removal {i + 1}/{removals}: {res.removal[-1]:.3f} s",
                  file=sys.stderr)
            set_dns(dns, members)
            full_mesh(members, 60)
        if measure_usage:
            time.sleep(3)
            c0, t0 = agent.cpu_seconds(), time.monotonic()
            time.sleep(20)
            res.cpu = 100 * (agent.cpu_seconds() - c0) / (time.monotonic() - t0)
            res.rss = agent.rss_mb()
    finally:
        agent.stop()
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=20)
    ap.add_argument("--removals", type=int, default=3)
    ap.add_argument("--sizes", default="10,30")
    ap.add_argument("--baseline-sizes", default=None,
                    help="sizes that also get the libcluster-defaults row (default: all)")
    opts = ap.parse_args()
    sizes = [int(s) for s in opts.sizes.split(",")]
    baseline_sizes = (sizes if opts.baseline_sizes is None
                      else [int(s) for s in opts.baseline_sizes.split(",")])
    random.seed(235)
    results: list[Result] = []
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    with Lab(prefix="bf235", v4="10.235", v6=None) as lab:
        dns = Dnsmasq(listen=lab.gateway4, domain="bench")
        nodes: list[ErlNode] = []
        try:
            dns.start()
            hosts = [lab.add_host() for _ in range(max(sizes))]
            with concurrent.futures.ThreadPoolExecutor(4) as pool:
                nodes.extend(pool.map(start_beam, hosts))
            for n in sizes:
                results.append(run_phase("beamfleet defaults", DEFAULTS, dns, hosts, nodes, n,
                                         opts.events, opts.removals, n == max(sizes)))
                if n in baseline_sizes:
                    results.append(run_phase("libcluster defaults", BASELINE, dns, hosts, nodes,
                                             n, opts.events, 0, False))
        finally:
            for node in nodes:
                with contextlib.suppress(Exception):
                    node.stop()
            dns.close()

    print(f"convergence: {started}, OTP 25 nodes in network namespaces, "
          f"Python {platform.python_version()}, {os.cpu_count()} cores, {opts.events} join "
          f"events per row")
    print(f"{'setting':<20} {'N':>3} {'join p50':>9} {'join p95':>9} {'join max':>9} "
          f"{'removal p50':>12} {'lost peers':>11} {'RSS':>8} {'CPU':>6}")
    ok = True
    by = {(r.label, r.n): r for r in results}
    for r in results:
        rem = f"{statistics.median(r.removal):.2f} s" if r.removal else "-"
        rss = f"{r.rss:.1f} MB" if r.rss is not None else "-"
        cpu = f"{r.cpu:.2f}%" if r.cpu is not None else "-"
        print(f"{r.label:<20} {r.n:>3} {pct(r.join, .5):>7.2f} s {pct(r.join, .95):>7.2f} s "
              f"{max(r.join):>7.2f} s {rem:>12} {r.lost:>11} {rss:>8} {cpu:>6}")
    print("targets:")
    for n in sizes:
        ours, base = by[("beamfleet defaults", n)], by.get(("libcluster defaults", n))
        line = f"  N={n}: join p95 {pct(ours.join, .95):.2f} s"
        good = True
        if base is not None:
            speed = pct(base.join, .5) / pct(ours.join, .5)
            line += f", {speed:.1f}x faster (p50) than libcluster defaults (>= 3x)"
            good = speed >= 3
        if n >= 30:
            line += f"; p95 <= 1.5 s: {'ok' if pct(ours.join, .95) <= 1.5 else 'MISSED'}"
            good &= pct(ours.join, .95) <= 1.5
        ok &= good
        print(line + ("  ok" if good else "  MISSED"))
    lost = sum(r.lost for r in results if r.label == "beamfleet defaults")
    print(f"  no remaining node lost a peer (beamfleet): {'ok' if lost == 0 else 'MISSED'}")
    ok &= lost == 0
    big = by[("beamfleet defaults", max(sizes))]
    if big.rss is not None and big.cpu is not None:
        # what one agent may cost, by the number of nodes it drives
        rss_max, cpu_max = (60.0, 5.0) if max(sizes) > 30 else (40.0, 2.0)
        good = big.rss <= rss_max and big.cpu < cpu_max
        ok &= good
        print(f"  agent RSS {big.rss:.1f} MB (<= {rss_max:g}) and CPU {big.cpu:.2f}% of one "
              f"core (< {cpu_max:g}%) polling {max(sizes)} peers every second: "
              f"{'ok' if good else 'MISSED'}")
    print("all targets met" if ok else "some targets MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

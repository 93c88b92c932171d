#!/usr/bin/env python3
"""Production safety against hostile peers: what a lying node, a connection storm and a
flood of slow HTTP clients cost, on loopback.

    .venv/bin/python benchmarks/hostile_peers.py [--bomb-runs 5] [--attempts 1000]
        [--probes 20] [--slow-clients 200]

Measured (all traffic on 127.0.0.1):
- bomb: a fake node that does not know the cookie answers our challenge reply with a
  bogus ack followed, in the same write, by a compression bomb (a term of a few dozen KB
  inflating to 20 million list cells). Time until ``connect()`` raises
  AuthenticationFailed, and this process's peak RSS growth (the peak is reset through
  /proc/self/clear_refs before each run). Targets: < 1 s and < 20 MB, every run.
- atoms: ``--attempts`` connections (right and wrong cookie mixed, 4 in flight, every
  wrong cookie new so no backoff spares the node) against a real node, OTP 25 (Debian's
  erl) and OTP 28 (the test runtime). Atoms added to the node (``atom_count`` before and
  after, asked over a separate connection) and the attempts' duration. The node's first
  "Invalid challenge reply" loads its logger's code (some 200 atoms, once per node
  lifetime), so 100 uncounted attempts warm the node up first. Target: <= 10 atoms.
- livez: the real ``beamfleet agent`` (static source of two real OTP 25 nodes, cookie in
  a 0400 file) with ``--slow-clients`` connections that send a partial request and never
  finish, opened afresh before each of ``--probes`` ``GET /livez``. Latency p50 and max.
  Target: max < 100 ms.
Exit status 0 when every target is met, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import secrets
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.agent import AgentProcess  # noqa: E402
from tests.support.erlang import Epmd, ErlNode, ErlRuntime, runtime, start_node  # noqa: E402
from tests.support.fake_dist import (  # noqa: E402
    FAKE,
    Peer,
    Script,
    compression_bomb,
    drain_rest,
    fake_node,
    frame32,
    up_to_reply,
)

from beamfleet.runtime.erlang_dist import (  # noqa: E402
    Atom,
    AuthenticationFailed,
    connect,
    handshake,
)
from beamfleet.runtime.erlang_dist import connection as dist_connection  # noqa: E402

BOMB_CELLS = 20_000_000
IN_FLIGHT = 4
WARM_UP = 100


@dataclass
class Row:
    measure: str
    result: str
    target: str = ""
    ok: bool | None = None


def status_kib(field: str) -> int:
    """A ``Vm*`` figure of this process in KiB, from /proc/self/status."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS; False where the kernel does not allow it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def spread(values: list[float], unit: str, fmt: str = ".1f") -> str:
    return f"{min(values):{fmt}} / {statistics.median(values):{fmt}} / {max(values):{fmt}} {unit}"


# ---------------------------------------------------------------- 1. bomb behind a bogus ack


def bogus_ack_then(payload: bytes) -> Script:
    """A fake node that acks our reply with a random digest and sends ``payload`` (framed)
    in the same write. The payload is built beforehand: zlib-compressing the bomb costs
    the fake some 200 ms and 70 MB, which must not be counted against the client."""
    frames = handshake.frame16(b"a" + secrets.token_bytes(16)) + frame32(b"p" + payload)

    async def script(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: Peer
    ) -> None:
        await up_to_reply(reader, writer, peer)
        writer.write(frames)
        await writer.drain()
        await drain_rest(reader, peer)

    return script


async def bomb_once(bomb: bytes) -> tuple[float, float, bool]:
    """(seconds to rejection, peak RSS growth in MB, whether we answered the fake)."""
    dist_connection.backoff.clear()  # each run must reach the fake, not a remembered failure
    async with fake_node(bogus_ack_then(bomb)) as fake:
        peak = reset_peak_rss()
        before = status_kib("VmHWM" if peak else "VmRSS")
        start = time.perf_counter()
        try:
            await connect(FAKE, "COOKIE", epmd_port=fake.epmd_port, timeout=20)
        except AuthenticationFailed:
            pass
        else:
            raise RuntimeError("the fake node's bogus ack was accepted")
        elapsed = time.perf_counter() - start
        growth = status_kib("VmHWM" if peak else "VmRSS") - before
        await asyncio.wait_for(fake.peers[0].finished.wait(), 5)
        answered = bool(fake.peers[0].after_reply)
    return elapsed, growth / 1024, answered


async def bomb_rows(runs: int) -> list[Row]:
    times: list[float] = []
    growths: list[float] = []
    answered = 0
    bomb = compression_bomb(BOMB_CELLS)
    for _ in range(runs):
        elapsed, growth, said = await bomb_once(bomb)
        times.append(elapsed * 1000)
        growths.append(growth)
        answered += said
    return [
        Row(
            f"bomb: time to rejection, min/median/max of {runs}",
            spread(times, "ms"),
            "< 1000 ms",
            max(times) < 1000,
        ),
        Row(
            "bomb: peak RSS growth, min/median/max",
            spread(growths, "MB"),
            "< 20 MB",
            max(growths) < 20,
        ),
        Row(
            "bomb: runs where we wrote to the peer after its ack",
            f"{answered} of {runs} runs",
            "0",
            answered == 0,
        ),
    ]


# ---------------------------------------------------------------- 2. atoms under a storm


async def storm(node: ErlNode, attempts: int) -> tuple[int, float, dict[str, int]]:
    """(atoms added, seconds, outcomes) for ``attempts`` connects after the warm-up."""
    rng = random.Random(1)
    plan = [rng.random() < 0.5 for _ in range(attempts)]  # True: the right cookie
    sem = asyncio.Semaphore(IN_FLIGHT)
    outcomes = {"ok": 0, "auth": 0, "backoff": 0}

    async def attempt(i: int, good: bool) -> None:
        cookie = node.cookie if good else f"WRONG{i}"  # new each time: no backoff
        async with sem:
            try:
                async with connect(node.name, cookie, epmd_port=node.epmd_port, timeout=10):
                    pass
                outcomes["ok"] += 1
            except AuthenticationFailed as exc:
                outcomes["backoff" if exc.retry_after else "auth"] += 1

    async with connect(
        node.name, node.cookie, epmd_port=node.epmd_port, identity="observer"
    ) as observer:
        await asyncio.gather(*(attempt(-1 - i, i % 2 == 0) for i in range(WARM_UP)))
        outcomes = dict.fromkeys(outcomes, 0)
        before = await observer.rpc("erlang", "system_info", [Atom("atom_count")])
        start = time.perf_counter()
        await asyncio.gather(*(attempt(i, good) for i, good in enumerate(plan)))
        elapsed = time.perf_counter() - start
        after = await observer.rpc("erlang", "system_info", [Atom("atom_count")])
    expected = {"ok": sum(plan), "auth": attempts - sum(plan), "backoff": 0}
    if outcomes != expected:
        raise RuntimeError(f"unexpected outcomes {outcomes}, wanted {expected}")
    return int(after) - int(before), elapsed, outcomes


def atom_row(rt: ErlRuntime, attempts: int) -> Row:
    dist_connection.backoff.clear()
    epmd = Epmd.start()
    try:
        node = start_node(rt, epmd=epmd)
        try:
            added, elapsed, outcomes = asyncio.run(storm(node, attempts))
        finally:
            node.stop()
    finally:
        epmd.stop()
    return Row(
        f"atoms: OTP {rt.release}, {attempts} attempts ({outcomes['ok']} good, "
        f"{outcomes['auth']} wrong cookie) in {elapsed:.1f} s",
        f"+{added} atoms",
        "<= 10",
        added <= 10,
    )


# ---------------------------------------------------------------- 3. livez behind slow clients


async def probe_livez(port: int, slow_clients: int, probes: int) -> tuple[list[float], set[int]]:
    """Latencies (ms) and statuses of ``probes`` GET /livez, each behind fresh slow clients."""
    latencies: list[float] = []
    statuses: set[int] = set()
    for _ in range(probes):
        slow: list[asyncio.StreamWriter] = []
        try:
            for _ in range(slow_clients):
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(b"GET /livez HTTP/1.0\r\nX-Slow: ")  # never finished
                slow.append(writer)
            # the server keeps the newest 64 and resets the oldest: a reset is its answer
            await asyncio.gather(*(w.drain() for w in slow), return_exceptions=True)
            start = time.perf_counter()
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /livez HTTP/1.0\r\n\r\n")
            data = await asyncio.wait_for(reader.read(), 5)
            latencies.append((time.perf_counter() - start) * 1000)
            writer.close()
            statuses.add(int(data.split()[1]) if data else 0)
        finally:
            for w in slow:
                w.close()
        await asyncio.sleep(0.05)  # let the closes settle before the next round
    return latencies, statuses


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not within {timeout} s")
        time.sleep(0.05)


def livez_rows(slow_clients: int, probes: int) -> list[Row]:
    rt = runtime("otp25")
    epmd = Epmd.start()
    nodes: list[ErlNode] = []
    agent: AgentProcess | None = None
    try:
        first = start_node(rt, epmd=epmd)
        nodes.append(first)
        nodes.append(start_node(rt, epmd=epmd, cookie=first.cookie))
        agent = AgentProcess(
            "--source",
            "static:" + ",".join(n.name for n in nodes),
            "--epmd-port",
            str(epmd.port),
            cookie=first.cookie,
        )
        running = agent
        # the agent is up once it answers; it is working once it has meshed the two nodes
        wait_for(lambda: running.get("/livez")[0] == 200, 30, "agent /livez 200")
        wait_for(lambda: running.get("/readyz")[0] == 200, 30, "agent /readyz 200")
        latencies, statuses = asyncio.run(probe_livez(agent.port, slow_clients, probes))
        if agent.proc.poll() is not None:
            raise RuntimeError(f"the agent exited with {agent.proc.returncode}")
    finally:
        if agent is not None:
            agent.stop()
        for node in nodes:
            with suppress(Exception):
                node.stop()
        epmd.stop()
    return [
        Row(
            f"livez: p50 with {slow_clients} slow clients ({probes} probes)",
            f"{pct(latencies, 0.5):.1f} ms",
        ),
        Row("livez: max", f"{max(latencies):.1f} ms", "< 100 ms", max(latencies) < 100),
        Row("livez: statuses", ",".join(map(str, sorted(statuses))), "200", statuses == {200}),
    ]


# ---------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bomb-runs", type=int, default=5)
    parser.add_argument("--attempts", type=int, default=1000)
    parser.add_argument("--probes", type=int, default=20)
    parser.add_argument("--slow-clients", type=int, default=200)
    opts = parser.parse_args()
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    rows = asyncio.run(bomb_rows(opts.bomb_runs))
    rows += [atom_row(runtime(name), opts.attempts) for name in ("otp25", "otp28")]
    rows += livez_rows(opts.slow_clients, opts.probes)

    load = os.getloadavg()[0]
    print(
        f"hostile_peers: {started}, loopback, Python {platform.python_version()}, "
        f"{platform.machine()}, {os.cpu_count()} cores, load average {load:.1f}"
    )
    print(
        f"(atoms rows: after {WARM_UP} uncounted warm-up attempts per node, which load "
        f"the node's logger code once)"
    )
    print(
        f"(livez rows: {opts.slow_clients} fresh slow clients before each probe; the agent "
        f"serves the newest 64 connections and resets the oldest)"
    )
    width = max(len(r.measure) for r in rows)
    print(f"{'measure':<{width}}  {'result':>26}  target")
    for r in rows:
        mark = "" if r.ok is None else ("  ok" if r.ok else "  MISSED")
        print(f"{r.measure:<{width}}  {r.result:>26}  {r.target}{mark}")
    missed = any(r.ok is False for r in rows)
    print("some targets MISSED" if missed else "all targets met")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())

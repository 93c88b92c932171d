"""The Erlang distribution client on loopback: handshake latency, RPC throughput, erl_call
comparison, RSS.

    .venv/bin/python benchmarks/dist_rpc.py [--runtime otp25|otp28]

Starts one real erl node (private EPMD, random cookie in a 0400 file) and prints a table:
- connect (EPMD lookup + TCP + v6 handshake) p50/p95 over 200 sequential connects;
- RPC throughput, sequential and with 64 calls in flight, of ``erlang:abs(-1)``;
- the same call by spawning ``erl_call`` (what a shell script would do), per call,
  next to ours on an open connection (alternating rounds, so both see the same load),
  ours with 64 in flight, and ours with connect+call+close each time;
- RSS of this process with 100 open connections (VmRSS from /proc/self/status);
- the same connect and sequential/in-flight RPC figures over TLS distribution, against
  an OTP 25 node started with ``-proto_dist inet_tls`` (throw-away CA and certificates;
  OTP 25 because it is the runtime here that has the ssl application), next to TCP.
Targets: handshake p50 <= 5 ms; >= 5,000 RPC/s with 64 in flight; per call
>= 20x faster than erl_call; 100 connections <= 50 MB RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import platform
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.erlang import Epmd, ErlNode, NodeTls, runtime, start_node  # noqa: E402
from tests.support.tls_certs import make_pki  # noqa: E402

from beamfleet.runtime.erlang_dist import Atom, NodeConnection, TlsConfig, connect  # noqa: E402

CONNECTS = 200
SEQ_CALLS = 3000
PAR_CALLS = 30000
IN_FLIGHT = 64
ERL_CALLS = 20
ROUND_CALLS = 200
OPEN_CONNECTIONS = 100


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]



async def rpc_rates(conn: NodeConnection) -> tuple[float, float]:
    """RPCs per second over ``conn``: one at a time, then IN_FLIGHT at once."""
    t0 = time.perf_counter()
    for _ in range(SEQ_CALLS):
        assert await conn.rpc("erlang", "abs", [-1]) == 1
    seq_rate = SEQ_CALLS / (time.perf_counter() - t0)
    remaining = PAR_CALLS

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            assert await conn.rpc("erlang", "abs", [-1]) == 1

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))
    return seq_rate, PAR_CALLS / (time.perf_counter() - t0)

async def bench(node: ErlNode) -> list[tuple[str, str, str, bool | None]]:
    rows: list[tuple[str, str, str, bool | None]] = []
    cookie, port = node.cookie, node.epmd_port

    # warm up imports, caches, the node's accept path
    for _ in range(5):
        async with connect(node.name, cookie, epmd_port=port) as conn:
            await conn.rpc("erlang", "abs", [-1])

    lat = []
    for _ in range(CONNECTS):
        t0 = time.perf_counter()
        conn = await connect(node.name, cookie, epmd_port=port)
        lat.append((time.perf_counter() - t0) * 1000)
        await conn.close()
    p50, p95 = pct(lat, 0.5), pct(lat, 0.95)
    rows.append((f"connect p50 ({CONNECTS} connects)", f"{p50:.2f} ms", "<= 5 ms", p50 <= 5))
    rows.append(("connect p95", f"{p95:.2f} ms", "", None))

    async with connect(node.name, cookie, epmd_port=port) as conn:
        seq_rate, par_rate = await rpc_rates(conn)
        rows.append((f"RPC sequential ({SEQ_CALLS} calls)", f"{seq_rate:,.0f} RPC/s", "", None))
        rows.append((f"RPC {IN_FLIGHT} in flight ({PAR_CALLS} calls)",
                     f"{par_rate:,.0f} RPC/s", ">= 5,000 RPC/s", par_rate >= 5000))
        assert await conn.rpc("erlang", "system_info", [Atom("otp_release")])

    fresh = []
    for _ in range(ERL_CALLS):
        t0 = time.perf_counter()
        async with connect(node.name, cookie, epmd_port=port) as conn:
            await conn.rpc("erlang", "abs", [-1])
        fresh.append((time.perf_counter() - t0) * 1000)
    fresh_ms = statistics.median(fresh)

    # erl_call and our calls alternate, round by round, so both see the same machine load
    spawned: list[float] = []
    ours: list[float] = []
    async with connect(node.name, cookie, epmd_port=port) as conn:
        for _ in range(ERL_CALLS):
            t0 = time.perf_counter()
            out = subprocess.run(
                [node.runtime.erl_call, "-name", node.name, "-a", "erlang abs [-1]"],
                env=node.env, capture_output=True, text=True, check=False)
            spawned.append((time.perf_counter() - t0) * 1000)
            if out.stdout.strip() != "1":
                raise RuntimeError(f"erl_call failed ({out.returncode}): {out.stderr.strip()}")
            t0 = time.perf_counter()
            for _ in range(ROUND_CALLS):
                await conn.rpc("erlang", "abs", [-1])
            ours.append((time.perf_counter() - t0) * 1000 / ROUND_CALLS)
    erl_call_ms = statistics.median(spawned)
    per_call_ms = statistics.median(ours)
    ratio = erl_call_ms / per_call_ms
    rows.append((f"erl_call per call (median of {ERL_CALLS})", f"{erl_call_ms:.2f} ms", "",
                 None))
    rows.append((f"beamfleet per call, open connection (median of {ERL_CALLS} x {ROUND_CALLS})",
                 f"{per_call_ms:.3f} ms",
                 f"{ratio:,.0f}x faster (>= 20x)", ratio >= 20))
    par_ms = 1000 / par_rate
    rows.append((f"beamfleet per call, {IN_FLIGHT} in flight", f"{par_ms:.3f} ms",
                 f"{erl_call_ms / par_ms:,.0f}x faster", None))
    rows.append(("beamfleet connect+call+close (median)", f"{fresh_ms:.2f} ms",
                 f"{erl_call_ms / fresh_ms:,.1f}x faster", None))

    gc.collect()
    before = rss_mb()
    # one identity per connection: an identity has a pool of only NAME_POOL_SIZE names
    conns = [await connect(node.name, cookie, epmd_port=port, identity=f"bench{i}")
             for i in range(OPEN_CONNECTIONS)]
    results = await asyncio.gather(*(c.rpc("erlang", "abs", [-1]) for c in conns))
    assert results == [1] * OPEN_CONNECTIONS
    after = rss_mb()
    rows.append((f"RSS with {OPEN_CONNECTIONS} open connections", f"{after:.1f} MB",
                 "<= 50 MB", after <= 50))
    rows.append(("  of which the connections", f"{after - before:.1f} MB", "", None))
    await asyncio.gather(*(c.close() for c in conns))
    return rows


async def bench_tls(node: ErlNode, tcp: dict[str, float],
                    context: ssl.SSLContext) -> list[tuple[str, str, str, bool | None]]:
    """Connect and RPC figures over TLS, with the TCP ones of this run beside them."""
    rows: list[tuple[str, str, str, bool | None]] = []
    cookie, port = node.cookie, node.epmd_port
    for _ in range(5):
        async with connect(node.name, cookie, epmd_port=port, tls=context) as conn:
            await conn.rpc("erlang", "abs", [-1])
    lat = []
    for _ in range(CONNECTS):
        t0 = time.perf_counter()
        conn = await connect(node.name, cookie, epmd_port=port, tls=context)
        lat.append((time.perf_counter() - t0) * 1000)
        await conn.close()
    p50, p95 = pct(lat, 0.5), pct(lat, 0.95)
    rows.append((f"TLS connect p50 ({CONNECTS} connects)", f"{p50:.2f} ms",
                 f"TCP {tcp['connect_p50']:.2f} ms", None))
    rows.append(("TLS connect p95", f"{p95:.2f} ms", f"TCP {tcp['connect_p95']:.2f} ms", None))
    async with connect(node.name, cookie, epmd_port=port, tls=context) as conn:
        seq_rate, par_rate = await rpc_rates(conn)
        rows.append((f"TLS RPC sequential ({SEQ_CALLS} calls)", f"{seq_rate:,.0f} RPC/s",
                     f"TCP {tcp['seq_rate']:,.0f} RPC/s", None))
        rows.append((f"TLS RPC {IN_FLIGHT} in flight ({PAR_CALLS} calls)",
                     f"{par_rate:,.0f} RPC/s", f"TCP {tcp['par_rate']:,.0f} RPC/s", None))
        assert conn.tls_version == "TLSv1.3"
    return rows


def tcp_figures(rows: list[tuple[str, str, str, bool | None]]) -> dict[str, float]:
    """The TCP connect and RPC figures of this run, read back from its rows."""
    def number(prefix: str) -> float:
        value = next(r[1] for r in rows if r[0].startswith(prefix))
        return float(value.split()[0].replace(",", ""))

    return {"connect_p50": number("connect p50"), "connect_p95": number("connect p95"),
            "seq_rate": number("RPC sequential"), "par_rate": number(f"RPC {IN_FLIGHT} in")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runtime", choices=["otp25", "otp28"], default="otp25")
    args = parser.parse_args()
    rt = runtime(args.runtime)
    epmd = Epmd.start()
    node = start_node(rt, epmd=epmd)
    tls_node: ErlNode | None = None
    try:
        rows = asyncio.run(bench(node))
        node.stop()
        with tempfile.TemporaryDirectory(prefix="beamfleet-bench-pki-") as tmp:
            pki = make_pki(Path(tmp))
            tls_node = start_node(runtime("otp25"), epmd=epmd,
                                  tls=NodeTls(pki.node.cert, pki.node.key, pki.ca.cert))
            context = TlsConfig(pki.client.cert, pki.client.key, pki.ca.cert).client_context()
            rows += asyncio.run(bench_tls(tls_node, tcp_figures(rows), context))
    finally:
        node.stop()
        if tls_node is not None:
            tls_node.stop()
        epmd.stop()
    print(f"dist_rpc: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
          f"OTP {rt.release} node on loopback, Python {platform.python_version()}, "
          f"{platform.machine()}")
    width = max(len(r[0]) for r in rows)
    print(f"{'measure':<{width}}  {'result':>14}  target")
    for name, value, target, ok in rows:
        mark = "" if ok is None else ("  ok" if ok else "  MISSED")
        print(f"{name:<{width}}  {value:>14}  {target}{mark}")
    missed = [r[0] for r in rows if r[3] is False]
    print("all targets met" if not missed else f"targets missed: {', '.join(missed)}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())

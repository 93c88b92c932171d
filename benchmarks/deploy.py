"""Deploy-time benchmark on a fresh lab: prints seconds per phase (and changes reported).

    .venv/bin/python benchmarks/deploy.py [--name bench] [--keep]

Phases (each a real `pyinfra -y --json` run against bare lab hosts, timed wall clock):
  swarm-cold     3 bare hosts (1 manager, 2 workers): Docker engine install to a formed
                 swarm with an attachable overlay (deploys/swarm.py)
  swarm-rerun    the same deploy again, unchanged inventory (must report 0 changes)
  swarm-add-host one more worker host added to the inventory, deploy again
Anchor (Ansible community.docker on such hosts): 32 s cold, 8 s unchanged re-run.

Extending: append a Phase to PHASES (e.g. the cluster deploy's phases); each gets the
Bench context (lab handle, `bench.pyinfra(deploy, *args)`) and returns a PhaseResult.
The lab (hosts booting, not part of any phase) is created before and removed after,
unless --keep.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))

from beamfleet.lab import Lab  # noqa: E402

PYINFRA = str(ROOT / ".venv" / "bin" / "pyinfra")


@dataclass
class PhaseResult:
    seconds: float
    changes: int  # operations x hosts that changed something
    note: str = ""


@dataclass
class Bench:
    lab: Lab

    def pyinfra(self, deploy: str, *args: str) -> tuple[float, dict[str, Any]]:
        """Run ``pyinfra -y --json`` on the lab; (seconds, parsed json). Exits on failure."""
        argv = [PYINFRA, "-y", "--json", str(self.lab.inventory_path), deploy, *args]
        start = time.monotonic()
        proc = subprocess.run(
            argv, cwd=ROOT, capture_output=True, text=True, timeout=900, check=False
        )
        seconds = time.monotonic() - start
        if proc.returncode != 0:
            sys.exit(f"{' '.join(argv)} failed:\n{proc.stderr[-3000:]}")
        return seconds, json.loads(proc.stdout)


def changes(payload: dict[str, Any]) -> int:
    return int(payload["results"]["totals"]["success"])


def swarm_cold(bench: Bench) -> PhaseResult:
    seconds, payload = bench.pyinfra("deploys/swarm.py")
    return PhaseResult(seconds, changes(payload))


def swarm_rerun(bench: Bench) -> PhaseResult:
    seconds, payload = bench.pyinfra("deploys/swarm.py")
    return PhaseResult(seconds, changes(payload))


def swarm_add_host(bench: Bench) -> PhaseResult:
    host = bench.lab.add_host("workers")  # container boot: not timed
    seconds, payload = bench.pyinfra("deploys/swarm.py")
    return PhaseResult(seconds, changes(payload), note=f"{host.name} joined")


@dataclass
class Phase:
    name: str
    run: Callable[[Bench], PhaseResult]
    target: str


PHASES: list[Phase] = [
    Phase("swarm-cold", swarm_cold, "<= 30 s (Ansible 32 s)"),
    Phase("swarm-rerun", swarm_rerun, "<= 4 s, 0 changes (Ansible 8 s)"),
    Phase("swarm-add-host", swarm_add_host, "-"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--name", default="bench", help="lab name (default: bench)")
    parser.add_argument("--hosts", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="leave the lab running")
    parser.add_argument("--only", nargs="*", help="run only these phases (in order)")
    args = parser.parse_args()

    phases = [p for p in PHASES if not args.only or p.name in args.only]
    lab = Lab(args.name, root=ROOT / "benchmarks" / "out")
    lab.down()
    start = time.monotonic()
    lab.up(hosts=args.hosts, managers=1)
    print(
        f"lab {args.name!r}: {args.hosts} hosts up in {time.monotonic() - start:.1f} s "
        "(not part of any phase)",
        flush=True,
    )
    rows: list[tuple[str, PhaseResult, str]] = []
    try:
        bench = Bench(lab)
        for phase in phases:
            result = phase.run(bench)
            rows.append((phase.name, result, phase.target))
            print(f"{phase.name}: {result.seconds:.1f} s, {result.changes} changes", flush=True)
    finally:
        if not args.keep:
            lab.down()
    print()
    print("| phase | seconds | changes | target | note |")
    print("|---|---:|---:|---|---|")
    for name, result, target in rows:
        print(f"| {name} | {result.seconds:.1f} | {result.changes} | {target} | {result.note} |")


if __name__ == "__main__":
    main()

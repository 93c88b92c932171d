"""Deploy-time benchmark on a fresh lab: prints seconds per phase (and changes reported).

    .venv/bin/python benchmarks/deploy.py [--name bench] [--keep]

Phases (each a real `pyinfra -y --json` run against bare lab hosts, timed wall clock):
  swarm-cold     3 bare hosts (1 manager, 2 workers): Docker engine install to a formed
                 swarm with an attachable overlay (deploys/swarm.py)
  swarm-rerun    the same deploy again, unchanged inventory (must report 0 changes)
  swarm-add-host one more worker host added to the inventory, deploy again
For comparison, Ansible community.docker on such hosts: 32 s cold, 8 s unchanged re-run.

  cluster-*      deploys/cluster.py + deploys/check.py on a lab of their own (bare hosts):
                 cold on 3 hosts to a complete mesh, unchanged re-run, scale 3 -> 6,
                 a 4th host added (targets: re-run <= 6 s, add-a-host <= 90 s)

  host-*         host mode (cluster_mode: host) on a Debian 13 lab of its own: the demo
                 release under systemd, no Docker. cold on 3 bare hosts to a complete mesh
                 (erlang-base installed), unchanged re-run (target <= 4 s, 0 changes), a 4th
                 host added to a complete mesh (target <= 30 s), a new release rolled one
                 host at a time behind the mesh gate (seconds per host), every host rebooted
                 by deploys/maintenance.py one at a time (seconds per host)
  cluster-maintenance  the Swarm workers drained, rebooted and brought back one at a time
  cluster-roll   a new version of the demo (its image plus one small layer) rolled over the
                 6 tasks, one at a time, each new node in the complete mesh before the next
                 (seconds in all and per task, as cluster.py prints them);
                 cluster-roll-swarm: Swarm's own roll of the same tasks, for comparison

Extending: append a Phase to PHASES (e.g. the cluster deploy's phases); each gets the
Bench context (lab handle, `bench.pyinfra(deploy, *args)`) and returns a PhaseResult.
The lab (hosts booting, not part of any phase) is created before and removed after,
unless --keep.
"""

from __future__ import annotations

import argparse
import atexit
import json
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))
sys.path.insert(0, str(ROOT))

from tests.support.releases import release_variant  # noqa: E402

from beamfleet.controller.deploys import images  # noqa: E402
from beamfleet.controller.host_release import export_from_image  # noqa: E402
from beamfleet_lab import Lab  # noqa: E402

PYINFRA = str(ROOT / ".venv" / "bin" / "pyinfra")


@dataclass
class PhaseResult:
    seconds: float
    changes: int  # operations x hosts that changed something
    note: str = ""


@dataclass
class Bench:
    lab: Lab
    extra: tuple[str, ...] = ()  # pyinfra arguments every run of this bench adds
    app_image: str = ""  # the demo's image, as built before the cluster phases
    last_stderr: str = ""  # what the last run printed besides its JSON

    def pyinfra(self, deploy: str, *args: str) -> tuple[float, dict[str, Any]]:
        """Run ``pyinfra -y --json`` on the lab; (seconds, parsed json). Exits on failure."""
        argv = [PYINFRA, "-y", "--json", str(self.lab.inventory_path), deploy, *args]
        start = time.monotonic()
        proc = subprocess.run(
            argv, cwd=ROOT, capture_output=True, text=True, timeout=900, check=False
        )
        seconds = time.monotonic() - start
        self.last_stderr = proc.stderr
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


# -- cluster phases (deploys/cluster.py + deploys/check.py) -------------------------------
# They run on a lab of their own, "<name>-cluster", so that "cold" means bare hosts. Its
# host boots and the image builds on the controller are done before the timed phase
# (images are built once per content and cached); each phase is timed from the start of
# cluster.py to check.py reporting a complete mesh.
_cluster_bench: list[Bench] = []


def _cluster(bench: Bench) -> Bench:
    if not _cluster_bench:
        lab = Lab(f"{bench.lab.name}-cluster", root=bench.lab.root)
        lab.down()
        lab.up(hosts=3, managers=1)
        atexit.register(lab.down)
        app = images.build(images.APP_REPO_DEFAULT, images.app_context(ROOT / "examples" / "demo"))
        agent = images.build(images.AGENT_REPO, images.agent_context())
        # pinned: the source tree may be edited while the benchmark runs
        _cluster_bench.append(
            Bench(lab, extra=("--data", f"agent_image={agent.ref}"), app_image=app.ref)
        )
    return _cluster_bench[0]


def _cluster_to_mesh(bench: Bench, *data: str) -> PhaseResult:
    b = _cluster(bench)
    extra: list[str] = []
    for item in data:
        extra += ["--data", item]
    deploy_s, payload = b.pyinfra("deploys/cluster.py", *b.extra, *extra)
    check_s, _ = b.pyinfra("deploys/check.py", *b.extra, *extra)
    return PhaseResult(
        deploy_s + check_s,
        changes(payload),
        note=f"cluster.py {deploy_s:.1f} s + check.py {check_s:.1f} s",
    )


def _restarts(bench: Bench) -> int:
    """Tasks of the cluster's services that ended (failed/restarted) so far."""
    argv = bench.lab.ssh_argv(
        bench.lab.load().hosts[0].name,
        ["docker service ps -q --filter desired-state=shutdown demo demo-agent | wc -l"],
    )
    out = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False).stdout
    return int(out.strip() or 0)


def cluster_cold(bench: Bench) -> PhaseResult:
    result = _cluster_to_mesh(bench)
    result.note += f"; {_restarts(_cluster(bench))} task restarts"
    return result


def cluster_rerun(bench: Bench) -> PhaseResult:
    b = _cluster(bench)
    seconds, payload = b.pyinfra("deploys/cluster.py", *b.extra)
    return PhaseResult(seconds, changes(payload), note="cluster.py only")


def cluster_scale(bench: Bench) -> PhaseResult:
    return _cluster_to_mesh(bench, "app_replicas=6")


def cluster_add_host(bench: Bench) -> PhaseResult:
    host = _cluster(bench).lab.add_host("workers")  # container boot: not timed
    result = _cluster_to_mesh(bench, "app_replicas=6")
    result.note = f"{host.name} joined; {result.note}"
    return result


# -- host mode phases (cluster_mode: host) ------------------------------------------------
# A Debian 13 lab of its own, "<name>-host". The demo's release is exported from its image
# before the timed phases (v1), and a second release (v2, one file changed) made from it.
_host_bench: list[tuple[Bench, Path, Path]] = []


def _host(bench: Bench) -> tuple[Bench, Path, Path]:
    if not _host_bench:
        lab = Lab(f"{bench.lab.name}-host", root=bench.lab.root)
        lab.down()
        lab.up(hosts=3, managers=1, suite="trixie")
        atexit.register(lab.down)
        built = images.build(
            images.APP_REPO_DEFAULT, images.app_context(ROOT / "examples" / "demo"), archive=False
        )
        assert built.image_id is not None
        out = bench.lab.root / "releases"
        v1 = export_from_image(built.image_id, "/app", out)
        v2 = release_variant(v1, out / "v2.tar.gz", "export DEMO_RELEASE_MARK=2")
        _host_bench.append((Bench(lab, extra=("--data", "cluster_mode=host")), v1, v2))
    return _host_bench[0]


def _host_to_mesh(release: Path) -> PhaseResult:
    b, _, _ = _host_bench[0]
    data = ("--data", f"app_release={release}")
    deploy_s, payload = b.pyinfra("deploys/cluster.py", *b.extra, *data)
    check_s, _ = b.pyinfra("deploys/check.py", *b.extra)
    return PhaseResult(
        deploy_s + check_s,
        changes(payload),
        note=f"cluster.py {deploy_s:.1f} s + check.py {check_s:.1f} s",
    )


def host_cold(bench: Bench) -> PhaseResult:
    _, v1, _ = _host(bench)
    return _host_to_mesh(v1)


def host_rerun(bench: Bench) -> PhaseResult:
    b, v1, _ = _host(bench)
    seconds, payload = b.pyinfra("deploys/cluster.py", *b.extra, "--data", f"app_release={v1}")
    return PhaseResult(seconds, changes(payload), note="cluster.py only")


def host_add_host(bench: Bench) -> PhaseResult:
    b, v1, _ = _host(bench)
    host = b.lab.add_host("workers")  # container boot: not timed
    result = _host_to_mesh(v1)
    result.note = f"{host.name} joined; {result.note}"
    return result


def host_maintenance(bench: Bench) -> PhaseResult:
    b, _, _ = _host(bench)
    hosts = len(b.lab.load().hosts)
    seconds, payload = b.pyinfra("deploys/maintenance.py", *b.extra, "--data", "maintenance=reboot")
    return PhaseResult(
        seconds, changes(payload), note=f"{seconds / hosts:.1f} s per host ({hosts} hosts)"
    )


def cluster_maintenance(bench: Bench) -> PhaseResult:
    b = _cluster(bench)
    workers = [h.name for h in b.lab.load().hosts if h.group == "workers"]
    seconds, payload = b.pyinfra(
        "deploys/maintenance.py", *b.extra, "--data", "maintenance=reboot",
        "--data", f"maintain={','.join(workers)}",
    )  # fmt: skip
    return PhaseResult(
        seconds,
        changes(payload),
        note=f"{seconds / len(workers):.1f} s per worker ({len(workers)}: drain, reboot, back)",
    )


def cluster_roll(bench: Bench) -> PhaseResult:
    b = _cluster(bench)
    context = b.lab.root / "roll-v2"
    context.mkdir(parents=True, exist_ok=True)
    (context / "VERSION").write_text("v2\n")
    (context / "Dockerfile").write_text(f"FROM {b.app_image}\nCOPY VERSION /VERSION\n")
    v2 = "beamfleet-demo-bench:v2"
    subprocess.run(["docker", "build", "-q", "-t", v2, str(context)], check=True, timeout=600)
    seconds, payload = b.pyinfra(
        "deploys/cluster.py", *b.extra, "--data", "app_replicas=6", "--data", f"app_image={v2}"
    )
    steps = [
        float(s) for s in re.findall(r"demo: \d+/\d+ replaced: .* \(([\d.]+) s\)", b.last_stderr)
    ]
    rolled = re.search(
        r"demo: rolled (\d+) tasks, each gated on the mesh, in ([\d.]+) s", b.last_stderr
    )
    if not rolled or not steps:
        sys.exit(f"cluster-roll: no gated roll in the output:\n{b.last_stderr[-3000:]}")
    return PhaseResult(
        seconds,
        changes(payload),
        note=f"{rolled.group(1)} tasks rolled in {rolled.group(2)} s: per task "
        f"{min(steps):.1f}/{statistics.median(steps):.1f}/{max(steps):.1f} s (min/median/max); "
        "the rest of cluster.py's run is images and checks",
    )


def cluster_roll_swarm(bench: Bench) -> PhaseResult:
    """For comparison: Swarm's own rolling update of the same 6 tasks (start-first, 2 s
    apart, each watched 15 s; `docker service update --force` returns when it converged),
    gated on nothing but each task's healthcheck."""
    b = _cluster(bench)
    manager = b.lab.load().hosts[0].name
    argv = b.lab.ssh_argv(manager, ["docker service update --force --quiet demo >/dev/null"])
    start = time.monotonic()
    subprocess.run(argv, check=True, timeout=900)
    seconds = time.monotonic() - start
    return PhaseResult(seconds, 0, note=f"{seconds / 6:.1f} s per task, no mesh gate")


def host_roll(bench: Bench) -> PhaseResult:
    b, _, v2 = _host(bench)
    hosts = len(b.lab.load().hosts)
    result = _host_to_mesh(v2)
    result.note = f"{result.seconds / hosts:.1f} s per host ({hosts} hosts); {result.note}"
    return result


@dataclass
class Phase:
    name: str
    run: Callable[[Bench], PhaseResult]
    target: str


PHASES: list[Phase] = [
    Phase("swarm-cold", swarm_cold, "<= 30 s (Ansible 32 s)"),
    Phase("swarm-rerun", swarm_rerun, "<= 4 s, 0 changes (Ansible 8 s)"),
    Phase("swarm-add-host", swarm_add_host, "-"),
    Phase("cluster-cold", cluster_cold, "3 bare hosts to a complete mesh (-)"),
    Phase("cluster-rerun", cluster_rerun, "<= 6 s, 0 changes (Ansible swarm-only 8 s)"),
    Phase("cluster-scale", cluster_scale, "3 -> 6 nodes to a complete mesh (-)"),
    Phase("cluster-add-host", cluster_add_host, "<= 90 s to a complete mesh"),
    Phase("cluster-maintenance", cluster_maintenance, "workers one at a time (-)"),
    Phase("cluster-roll", cluster_roll, "6 tasks, each in the complete mesh before the next"),
    Phase("cluster-roll-swarm", cluster_roll_swarm, "the same by Swarm alone (comparison)"),
    Phase("host-cold", host_cold, "3 bare hosts to a complete mesh (-)"),
    Phase("host-rerun", host_rerun, "<= 4 s, 0 changes"),
    Phase("host-add-host", host_add_host, "<= 30 s to a complete mesh"),
    Phase("host-roll", host_roll, "one host at a time, each back in the mesh (-)"),
    Phase("host-maintenance", host_maintenance, "reboots one host at a time (-)"),
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

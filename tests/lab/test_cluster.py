"""The BEAM cluster on Swarm, end to end on a lab of its own (3 hosts, then 4).

cluster -> check -> scale 3 -> 6 (replicas in the inventory data) -> check -> add a 4th
host -> cluster -> check -> unchanged re-run: zero changes, no task restarted -> kill an
app task -> the mesh heals -> check. And the cookie shows nowhere: pyinfra output, logs,
`ps` on any host, `docker inspect`, image history. Last, 40 tasks on the 4 hosts: a complete
mesh with no agent task restarted.

The tests run in file order and share the lab (each step builds on the previous one).
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from tests.lab.conftest import LabHandle, lab_fixture, run_pyinfra, wait_until

pytestmark = pytest.mark.lab

lab = lab_fixture("tcluster", hosts=3, managers=1)

APP = "demo"
AGENT = "demo-agent"
MANAGER = "host1"
CHECK_ROW = re.compile(r"^demo@(10\.234\.\d+\.\d+)\s+((?:[-x.?]\s*)+)$", re.MULTILINE)


# After the first (all defaults) run: the images it deployed, pinned for the later runs
# (`app_image`/`agent_image` data), so that they compare like with like even when the
# source tree (the demo's build context, the package) is edited while the module runs.
_PINNED: dict[str, str] = {}


def inventory(lab: LabHandle, replicas: int) -> Path:
    """The lab's generated inventory, with ``app_replicas`` (and the pinned images) set
    in every host's data."""
    return lab.inventory_with(f"cluster-{replicas}.py", {"app_replicas": replicas, **_PINNED})


def pin_images(lab: LabHandle) -> None:
    fmt = "'{{.Spec.TaskTemplate.ContainerSpec.Image}}'"
    app, agent = lab.ssh(MANAGER, f"docker service inspect --format {fmt} {APP} {AGENT}").split()
    _PINNED.update(app_image=app, agent_image=agent)


def deploy(lab: LabHandle, replicas: int, name: str = "deploys/cluster.py"):
    run = run_pyinfra(inventory(lab, replicas), name)
    lab.runs.append(run)
    return run


def deploy_with(lab: LabHandle, replicas: int, name: str, *data: str):
    args = [arg for item in data for arg in ("--data", item)]
    run = run_pyinfra(inventory(lab, replicas), name, *args)
    lab.runs.append(run)
    return run


def check(lab: LabHandle, replicas: int) -> dict[str, str]:
    """Run deploys/check.py; return its table as {node ip: row marks}; assert complete."""
    run = deploy(lab, replicas, "deploys/check.py")
    assert run.ok, run.output
    rows = dict(CHECK_ROW.findall(run.stderr))
    assert len(rows) == replicas, run.stderr
    for ip, marks in rows.items():
        cells = marks.split()
        assert cells.count("-") == 1 and cells.count("x") == replicas - 1, (ip, run.stderr)
    assert f"{replicas} desired, {replicas} running, {replicas} in DNS, complete" in run.stderr
    return rows


def task_ids(lab: LabHandle) -> set[str]:
    out = lab.ssh(MANAGER, f"docker service ps -q --filter desired-state=running {APP} {AGENT}")
    return set(out.split())


def running_app_tasks(lab: LabHandle) -> int:
    out = lab.ssh(
        MANAGER,
        f"docker service ps --filter desired-state=running --format '{{{{.CurrentState}}}}' {APP}",
    )
    return sum(1 for line in out.splitlines() if line.startswith("Running"))


def agent_exec(lab: LabHandle, host: str, script: str) -> str:
    """Run a Python script (on stdin) inside the agent container of ``host``."""
    cid = lab.ssh(
        host, f"docker ps -q --filter label=com.docker.swarm.service.name={AGENT} | head -n1"
    ).strip()
    assert cid, f"no agent container on {host}"
    return lab.ssh(host, f"docker exec -i {cid} python3 - <<'EOF'\n{script}\nEOF")


def test_cold_cluster_then_check(lab: LabHandle) -> None:
    run = deploy(lab, 3)
    assert run.ok, run.output
    pin_images(lab)
    rows = check(lab, 3)
    # Independently of the check's probe: :global works across the nodes. A value put
    # through one node is read back through another (beamfleet.runtime.erlang_dist RPCs).
    first, last = sorted(rows)[0], sorted(rows)[-1]
    script = f"""
import asyncio
from beamfleet.runtime.erlang_dist import connect, read_cookie_file
cookie = read_cookie_file('/run/secrets/erlang_cookie')
async def main():
    async with connect('demo@{first}', cookie) as a:
        await a.rpc('Elixir.Demo', 'put', [b'from-{first}'])
    async with connect('demo@{last}', cookie) as b:
        print((await b.rpc('Elixir.Demo', 'get', [])).decode())
asyncio.run(main())
"""
    assert agent_exec(lab, MANAGER, script).strip() == f"from-{first}"


def test_scale_to_six(lab: LabHandle) -> None:
    before = task_ids(lab)
    run = deploy(lab, 6)
    assert run.ok, run.output
    # only the application service changed (its replica count)
    changed = list(run.changed_ops)
    assert len(changed) == 1, changed
    assert changed[0].startswith(f"Application service | Service {APP} (6 x "), changed
    check(lab, 6)
    assert before <= task_ids(lab), "scaling up restarted running tasks"


def test_add_a_host(lab: LabHandle) -> None:
    lab.add_host("workers")
    run = deploy(lab, 6)
    assert run.ok, run.output
    nodes = lab.ssh(MANAGER, "docker node ls --format '{{.Hostname}} {{.Status}}'").split("\n")
    assert sum(1 for n in nodes if n.endswith(" Ready")) == 4, nodes
    agents_on_host4 = f"docker ps -q --filter label=com.docker.swarm.service.name={AGENT}"
    wait_until(
        lambda: len(lab.ssh("host4", agents_on_host4).split()) == 1, 120, "the agent on host4"
    )
    check(lab, 6)


def test_unchanged_rerun_changes_and_restarts_nothing(lab: LabHandle) -> None:
    before = task_ids(lab)
    run = deploy(lab, 6)
    assert run.ok, run.output
    assert run.changed_ops == {}
    assert task_ids(lab) == before


def test_killed_task_heals(lab: LabHandle) -> None:
    before = task_ids(lab)
    victim = lab.ssh(
        "host2", f"docker ps -q --filter label=com.docker.swarm.service.name={APP} | head -n1"
    ).strip()
    assert victim, "no app task on host2"
    lab.ssh("host2", f"docker kill {victim}")
    wait_until(
        lambda: task_ids(lab) != before and running_app_tasks(lab) == 6,
        120,
        "swarm to replace the killed task",
    )
    check(lab, 6)


def test_cookie_shows_nowhere(lab: LabHandle) -> None:
    cid = lab.ssh(
        MANAGER, f"docker ps -q --filter label=com.docker.swarm.service.name={APP} | head -n1"
    ).strip()
    cookie = lab.ssh(MANAGER, f"docker exec {cid} cat /run/secrets/erlang_cookie").strip()
    assert len(cookie) >= 32
    places: dict[str, str] = {}
    for i, run in enumerate(lab.runs):
        places[f"pyinfra run {i} {run.argv[-1]}"] = run.output
    places["service logs"] = lab.ssh(
        MANAGER, f"docker service logs --raw {APP} 2>&1; docker service logs --raw {AGENT} 2>&1"
    )
    images = lab.ssh(
        MANAGER,
        f"docker service inspect --format '{{{{.Spec.TaskTemplate.ContainerSpec.Image}}}}' "
        f"{APP} {AGENT}",
    ).split()
    places["image history"] = lab.ssh(
        MANAGER, " && ".join(f"docker history --no-trunc {shlex.quote(i)}" for i in images)
    )
    places["image inspect"] = lab.ssh(MANAGER, "docker image inspect " + " ".join(images))
    places["service inspect"] = lab.ssh(MANAGER, f"docker service inspect {APP} {AGENT}")
    for host in [h.name for h in lab.hosts()]:
        places[f"ps on {host}"] = lab.ssh(host, "ps -eo args")
        places[f"docker inspect on {host}"] = lab.ssh(host, "docker inspect $(docker ps -aq)")
        places[f"docker journal on {host}"] = lab.ssh(
            host, "journalctl -u docker --no-pager 2>/dev/null || true"
        )
    assert json.loads(places["service inspect"])  # the places were really read
    leaks = [where for where, text in places.items() if cookie in text]
    assert leaks == []


def agent_task_history(lab: LabHandle) -> set[str]:
    """Every task the agent service ever had (running or not): a new ID is a restart."""
    return set(lab.ssh(MANAGER, f"docker service ps -q {AGENT}").split())


def boot_mark(lab: LabHandle, host: str) -> str:
    return lab.ssh(host, "cut -d' ' -f22 /proc/1/stat").strip()


def test_maintenance_drains_reboots_and_brings_back_a_worker(lab: LabHandle) -> None:
    before = boot_mark(lab, "host2")
    run = deploy_with(lab, 6, "deploys/maintenance.py", "maintenance=reboot", "maintain=host2")
    assert run.ok, run.output
    assert boot_mark(lab, "host2") != before, "host2 was not rebooted"
    state = lab.ssh(
        MANAGER, "docker node inspect -f '{{.Spec.Availability}} {{.Status.State}}' host2"
    )
    assert state.split() == ["active", "ready"]
    print(f"maintenance (drain, reboot, back) of host2: {run.seconds:.1f} s")
    check(lab, 6)


def app_tasks_on(lab: LabHandle, host: str) -> int:
    out = lab.ssh(host, f"docker ps -q --filter label=com.docker.swarm.service.name={APP}")
    return len(out.split())


def test_rebalance_spreads_the_tasks_back_onto_the_maintained_host(lab: LabHandle) -> None:
    # drained for its maintenance, host2 got no task back by itself
    assert app_tasks_on(lab, "host2") == 0
    run = deploy_with(lab, 6, "deploys/cluster.py", "rebalance=true")
    assert run.ok, run.output
    assert app_tasks_on(lab, "host2") >= 1
    check(lab, 6)


def test_forty_tasks_mesh_and_no_agent_restarts(lab: LabHandle) -> None:
    """At 40 tasks the agents' own health must not depend on the application: before
    liveness was split from readiness, every agent was killed as unhealthy while the
    nodes started, ownership moved, and the mesh never formed."""
    agents_before = agent_task_history(lab)
    run = deploy(lab, 40)
    assert run.ok, run.output
    check(lab, 40)
    restarted = agent_task_history(lab) - agents_before
    assert restarted == set(), f"agent tasks restarted while 40 nodes started: {restarted}"

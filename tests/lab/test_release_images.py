"""Standard release images deployed unmodified, each as its own application, on one lab.

Four images with nothing of beamfleet in them (tests/lab/images/): a default `mix release`
(ERTS bundled), the same with `include_erts: false`, a rebar3 release run in the
foreground, and a plain `erl -noinput`. Each is built once on this machine's Docker, then
deployed with `app_image` (own `app_name` and `app_subnet`, 2 replicas): beamfleet derives
a thin image from it. For each: a complete mesh (check.py), no task restarted, the cookie
in no `ps` line of any host, and the derived layer small.
"""

from __future__ import annotations

import ipaddress
import json
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from tests.lab.conftest import ROOT, LabHandle, lab_fixture, run_pyinfra, wait_until
from tests.lab.swarm_watch import SwarmWatcher
from tests.support.mesh_watch import lasting_gaps, offending_samples

pytestmark = pytest.mark.lab

lab = lab_fixture("trelease", hosts=2, managers=1)

MANAGER = "host1"
REPLICAS = 2
IMAGES = ROOT / "tests" / "lab" / "images"
# kind: (app name, its subnet, docker build arguments relative to tests/lab/images)
KINDS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "mix": ("imgmix", "10.234.40.0/24", ("mix",)),
    "mix-noerts": ("imgnoerts", "10.234.41.0/24", ("-f", "mix-noerts/Dockerfile", "mix")),
    "rebar3": ("imgrebar", "10.234.42.0/24", ("rebar3",)),
    "erl": ("imgerl", "10.234.43.0/24", ("erl",)),
}
# The derived image adds the shim, the entrypoint and an edited start script: kilobytes.
LAYER_MAX_BYTES = 200_000


def build_image(kind: str) -> str:
    """``docker build`` the kind's image (cached by Docker when nothing changed)."""
    tag = f"beamfleet-imgtest-{kind}:latest"
    subprocess.run(
        ["docker", "build", "-q", "-t", tag, *KINDS[kind][2]],
        cwd=IMAGES,
        check=True,
        capture_output=True,
        timeout=900,
    )
    return tag


def inventory(lab: LabHandle, kind: str, image: str) -> Path:
    app, subnet, _ = KINDS[kind]
    extra = {
        "app_name": app,
        "app_subnet": subnet,
        "app_image": image,
        "app_replicas": REPLICAS,
        # root-run images: the secret's owner does not matter; the erl image runs as 10001
        "app_user_id": 10001,
    }
    return lab.inventory_with(f"images-{kind}.py", extra)


def check_mesh(lab: LabHandle, kind: str, image: str) -> None:
    app = KINDS[kind][0]
    run = run_pyinfra(inventory(lab, kind, image), "deploys/check.py")
    lab.runs.append(run)
    assert run.ok, run.output
    rows = re.findall(rf"^{app}@(10\.234\.\d+\.\d+)\s+((?:[-x.?]\s*)+)$", run.stderr, re.M)
    assert len(rows) == REPLICAS, run.stderr
    for _ip, marks in rows:
        cells = marks.split()
        assert cells.count("-") == 1 and cells.count("x") == REPLICAS - 1, run.stderr
    assert f"{REPLICAS} desired, {REPLICAS} running, {REPLICAS} in DNS, complete" in run.stderr


def task_history(lab: LabHandle, app: str) -> set[str]:
    """Every task the service ever had: more than its replicas means one was restarted."""
    return set(lab.ssh(MANAGER, f"docker service ps -q {app}").split())


def _history_sizes(image: str) -> list[int]:
    out = subprocess.run(
        ["docker", "history", "--format", "{{.Size}}", "--human=false", image],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [int(line) for line in out.split()]


def derived_layer_bytes(derived: str, base: str) -> int:
    """Bytes the derived image adds on top of its input image (its newest history rows)."""
    mine, theirs = _history_sizes(derived), _history_sizes(base)
    assert len(mine) > len(theirs), (derived, base)
    return sum(mine[: len(mine) - len(theirs)])


@pytest.mark.parametrize("kind", list(KINDS))
def test_release_image_unmodified(lab: LabHandle, kind: str) -> None:
    app = KINDS[kind][0]
    image = build_image(kind)
    run = run_pyinfra(inventory(lab, kind, image), "deploys/cluster.py")
    lab.runs.append(run)
    assert run.ok, run.output

    deployed = lab.ssh(
        MANAGER,
        f"docker service inspect --format '{{{{.Spec.TaskTemplate.ContainerSpec.Image}}}}' {app}",
    ).strip()
    assert deployed.startswith(f"beamfleet-imgtest-{kind}-beamfleet:"), deployed
    check_mesh(lab, kind, image)

    # No task restarted: the service has had exactly its replicas, all running (the
    # healthcheck, EPMD where the image has it, passes).
    statuses = (
        f"docker ps --filter label=com.docker.swarm.service.name={app} --format '{{{{.Status}}}}'"
    )
    wait_until(
        lambda: "(healthy)" in lab.ssh(MANAGER, statuses),
        60,
        f"a healthy {app} task on {MANAGER}",
    )
    assert len(task_history(lab, app)) == REPLICAS, lab.ssh(MANAGER, f"docker service ps {app}")

    cid = lab.ssh(
        MANAGER, f"docker ps -q --filter label=com.docker.swarm.service.name={app} | head -n1"
    ).strip()
    cookie = lab.ssh(MANAGER, f"docker exec {cid} cat /run/secrets/erlang_cookie").strip()
    assert len(cookie) >= 32
    for host in [h.name for h in lab.hosts()]:
        ps = lab.ssh(host, "ps -eo args")
        assert "epmd" in ps, f"no BEAM node in ps on {host}"
        assert cookie not in ps, f"the cookie is on a command line on {host}"
        # no cookie flag either (the agent's `--cookie-file` names a path)
        assert not re.search(r"(-setcookie|--cookie)\s", ps), ps

    layer = derived_layer_bytes(deployed, image)
    print(f"{kind}: derived image {deployed}, layer {layer} bytes")
    assert 0 < layer < LAYER_MAX_BYTES, layer


def apps_inventory(
    lab: LabHandle,
    env: dict[str, dict[str, str]] | None = None,
    images: dict[str, str] | None = None,
) -> Path:
    """The four applications above as one inventory (`apps`), each as it was deployed
    (``images``: other images for some)."""
    apps = {
        app: {
            "image": (images or {}).get(app, f"beamfleet-imgtest-{kind}:latest"),
            "subnet": subnet,
            "replicas": REPLICAS,
            "user_id": 10001,
            **({"env": env[app]} if env and app in env else {}),
        }
        for kind, (app, subnet, _) in KINDS.items()
    }
    return lab.inventory_with("images-apps.py", {"apps": apps})


def peers_of_one_node(lab: LabHandle, app: str) -> list[str]:
    """``nodes()`` of one of ``app``'s nodes, asked from its agent (with its cookie)."""
    agent = lab.ssh(
        MANAGER, f"docker ps -q --filter label=com.docker.swarm.service.name={app}-agent"
    ).split()[0]
    task = lab.ssh(
        MANAGER,
        f"docker service ps -q --filter desired-state=running {app} | head -n1 | "
        "xargs docker inspect --format "
        "'{{range .NetworksAttachments}}{{range .Addresses}}{{.}} {{end}}{{end}}'",
    )
    subnet = ipaddress.ip_network(next(k[1] for k in KINDS.values() if k[0] == app))
    ip = next(
        a.split("/")[0] for a in task.split() if ipaddress.ip_address(a.split("/")[0]) in subnet
    )
    out = lab.ssh(
        MANAGER,
        f"docker exec {agent} python3 -m beamfleet node nodes {app}@{ip} --json "
        "--cookie-file /run/secrets/erlang_cookie",
    )
    return list(json.loads(out)["nodes"])


def test_the_four_as_applications_of_one_inventory(lab: LabHandle) -> None:
    """`apps`: the same four applications in one inventory are what runs already (no
    change); each has its own cookie and mesh, no node connects to another application's;
    changing one application's environment rolls it alone."""
    for kind in KINDS:
        build_image(kind)  # present: deployed by the tests above
    run = run_pyinfra(apps_inventory(lab), "deploys/cluster.py")
    lab.runs.append(run)
    assert run.ok, run.output
    assert run.changed_ops == {}, run.changed_ops

    check = run_pyinfra(apps_inventory(lab), "deploys/check.py")
    lab.runs.append(check)
    assert check.ok, check.output
    assert check.stderr.count(f"{REPLICAS} desired, {REPLICAS} running") == len(KINDS)

    cookies = set()
    for app, _, _ in KINDS.values():
        cid = lab.ssh(
            MANAGER, f"docker ps -q --filter label=com.docker.swarm.service.name={app} | head -n1"
        ).strip()
        cookies.add(lab.ssh(MANAGER, f"docker exec {cid} cat /run/secrets/erlang_cookie").strip())
        peers = peers_of_one_node(lab, app)
        assert len(peers) == REPLICAS - 1 and all(p.startswith(f"{app}@") for p in peers), peers
    assert len(cookies) == len(KINDS)

    before = {app: task_history(lab, app) for app, _, _ in KINDS.values()}
    rolled = "imgerl"
    changed = run_pyinfra(apps_inventory(lab, env=LATER_ENV), "deploys/cluster.py")
    lab.runs.append(changed)
    assert changed.ok, changed.output
    after = {app: task_history(lab, app) for app, _, _ in KINDS.values()}
    for app, tasks in before.items():
        if app == rolled:
            assert after[app] > tasks, "the changed application did not roll"
        else:
            assert after[app] == tasks, f"{app} was touched"
    check = run_pyinfra(apps_inventory(lab, env=LATER_ENV), "deploys/check.py")
    assert check.ok, check.output


# From the test above on, imgerl runs with this environment.
LATER_ENV = {"imgerl": {"RELEASE": "2"}}
ROLLED = "imgmix"  # the application whose image changes below
ROLLED_NETWORK = "beamfleet-imgmix"


def version_image(tmp_path: Path, tag: str, dockerfile_tail: str) -> str:
    """A new version of the mix image: its image with ``dockerfile_tail`` on top."""
    (tmp_path / "VERSION").write_text(f"{tag}\n")
    (tmp_path / "Dockerfile").write_text("FROM beamfleet-imgtest-mix:latest\n" + dockerfile_tail)
    ref = f"beamfleet-imgtest-mix:{tag}"
    subprocess.run(
        ["docker", "build", "-q", "-t", ref, str(tmp_path)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    return ref


def service_image(lab: LabHandle, app: str) -> str:
    fmt = "'{{.Spec.TaskTemplate.ContainerSpec.Image}}'"
    return lab.ssh(MANAGER, f"docker service inspect --format {fmt} {app}").strip()


def test_a_new_image_rolls_one_task_at_a_time_each_in_the_mesh(
    lab: LabHandle, tmp_path: Path
) -> None:
    """Changing one application's image in the inventory rolls it, gated on the mesh: a
    watcher sampling every second sees no node but the replaced one miss a peer, and no
    gap lasting two samples; the other applications keep their tasks."""
    new = version_image(tmp_path, "v2", "COPY VERSION /VERSION\n")
    before = {app: task_history(lab, app) for app, _, _ in KINDS.values()}
    old_image = service_image(lab, ROLLED)
    with SwarmWatcher(lab, MANAGER, ROLLED, ROLLED_NETWORK) as watcher:
        run = run_pyinfra(
            apps_inventory(lab, env=LATER_ENV, images={ROLLED: new}), "deploys/cluster.py"
        )
        lab.runs.append(run)
    assert run.ok, run.output
    assert f"{ROLLED}: rolled {REPLICAS} tasks, each gated on the mesh" in run.output, run.output
    for step in range(1, REPLICAS + 1):
        assert f"{ROLLED}: {step}/{REPLICAS} replaced: {ROLLED}@10.234.40." in run.output
    assert service_image(lab, ROLLED) != old_image
    for app, tasks in before.items():
        if app != ROLLED:
            assert task_history(lab, app) == tasks, f"{app} was touched"
    assert len(watcher.samples) >= 5, "the watcher took too few samples"
    assert offending_samples(watcher.samples) == [], watcher.samples
    assert lasting_gaps(watcher.samples) == [], watcher.samples
    assert watcher.samples[-1] == {}, "the mesh is not complete after the roll"
    print(f"gated roll of {REPLICAS} tasks: {run.seconds:.1f} s, {len(watcher.samples)} samples")


def test_a_version_that_cannot_join_is_rolled_back_and_the_run_fails(
    lab: LabHandle, tmp_path: Path
) -> None:
    """A version whose node starts (its healthcheck passes) but cannot join (another
    cookie): the roll stops at its first node, puts the previous version back, and the
    run fails naming the node and what it saw."""
    good = service_image(lab, ROLLED)
    bad = version_image(tmp_path, "cannot-join", 'ENV ERL_AFLAGS="-setcookie not-this-one"\n')
    run = run_pyinfra(
        apps_inventory(lab, env=LATER_ENV, images={ROLLED: bad}),
        "deploys/cluster.py", "--data", "roll_timeout=20",
    )  # fmt: skip
    lab.runs.append(run)
    assert not run.ok
    failed = re.findall(
        rf"({ROLLED}@10\.234\.40\.\d+) \(slot \d+ on host\d\) did not join the complete mesh "
        r"within 20 s",
        run.output,
    )
    assert len(failed) == 1, run.output[-4000:]
    assert f"{failed[0]} could not be asked: AuthenticationFailed" in run.output
    assert "the cookies differ" in run.output
    assert f"{ROLLED}: rolled back: the previous version is in the complete mesh" in run.output
    assert service_image(lab, ROLLED) == good


# Printed by the manager's gate while a task of the new version runs (see below).
GATE_GARBAGE = "beamfleet-test: this line stands where the mesh report should be"


def garbling_python3(app: str, good_image: str) -> str:
    """A ``python3`` for the manager's ``/usr/local/bin`` (before ``/usr/bin`` in root's
    PATH): ``app``'s mesh gate (``python3 -c <mesh_check.py> '{"app": ...}' ...``) prints
    :data:`GATE_GARBAGE` while a task meant to run runs another image than
    ``good_image``; every other call is the real python3."""
    gate_config = shlex.quote(f'{{"app": "{app}", "basename": ') + "*"
    return f"""#!/bin/sh
case "$3" in
{gate_config})
    if docker service ps --no-trunc --filter desired-state=running --format '{{{{.Image}}}}' \\
        {shlex.quote(app)} | grep -qvF {shlex.quote(good_image)}; then
        echo {shlex.quote(GATE_GARBAGE)}
        exit 0
    fi
    ;;
esac
exec /usr/bin/python3 "$@"
"""


def running_images(lab: LabHandle, app: str) -> list[str]:
    """The image of each task of ``app`` meant to run (with its digest when pinned)."""
    fmt = "'{{.Image}}'"
    out = lab.ssh(
        MANAGER, f"docker service ps --no-trunc --filter desired-state=running --format {fmt} {app}"
    )
    return out.split()


def test_a_gate_that_answers_garbage_mid_roll_puts_the_previous_version_back(
    lab: LabHandle, tmp_path: Path
) -> None:
    """A version that would join, but the mesh gate on the manager answers a line that is
    not its report once the first new task runs: the roll puts the previous version back,
    the run fails naming that line, and no task of the new version is left."""
    good = service_image(lab, ROLLED).split("@")[0]
    new = version_image(tmp_path, "v3", "COPY VERSION /VERSION\n")
    before = task_history(lab, ROLLED)
    wrapper = garbling_python3(ROLLED, good)
    lab.ssh(
        MANAGER,
        f"printf '%s' {shlex.quote(wrapper)} > /usr/local/bin/python3 "
        "&& chmod 755 /usr/local/bin/python3",
    )
    try:
        assert lab.ssh(MANAGER, "command -v python3").strip() == "/usr/local/bin/python3"
        run = run_pyinfra(
            apps_inventory(lab, env=LATER_ENV, images={ROLLED: new}), "deploys/cluster.py"
        )
        lab.runs.append(run)
    finally:
        lab.ssh(MANAGER, "rm -f /usr/local/bin/python3")
    assert not run.ok, run.output[-4000:]
    assert (
        f"{ROLLED}: the mesh gate answered something that is not JSON: {GATE_GARBAGE!r}"
        in run.output
    ), run.output[-4000:]
    assert f"{ROLLED}: putting the previous version back" in run.output
    assert f"{ROLLED}: rolled back: the previous version is in the complete mesh" in run.output
    # mid-roll: a task of the new version had started (and is gone again)
    history = lab.ssh(
        MANAGER, f"docker service ps --no-trunc --format '{{{{.Image}}}}' {ROLLED}"
    ).split()
    assert task_history(lab, ROLLED) - before, "no task was started"  # Swarm keeps 5 per slot
    assert any(not image.startswith(f"{good}@") and image != good for image in history), history
    # the previous version, in the complete mesh, and nothing held
    assert service_image(lab, ROLLED).split("@")[0] == good
    images = running_images(lab, ROLLED)
    assert len(images) == REPLICAS and all(i.split("@")[0] == good for i in images), images
    delay = lab.ssh(
        MANAGER, f"docker service inspect --format '{{{{.Spec.UpdateConfig.Delay}}}}' {ROLLED}"
    ).strip()
    assert not delay.startswith("1h"), f"the service is held by a step's delay: {delay}"
    check_mesh(lab, "mix", new)
    said = [line for line in run.output.splitlines() if f"{ROLLED}: " in line]
    print(f"garbled gate: run failed and rolled back in {run.seconds:.1f} s", *said, sep="\n")

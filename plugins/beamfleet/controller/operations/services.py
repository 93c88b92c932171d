"""Swarm services from a declarative spec: created, updated only when it changed.

:func:`service` takes the whole desired ``ServiceSpec`` (the Docker Engine API's JSON
shape) and compares it with the running service's spec, on every field the desired spec
sets (:func:`beamfleet.controller.spec_drift.spec_drift`): a service edited by hand
(``docker service update --no-healthcheck``, ``--network-add``, ``scale``) is put back.
When they match, nothing is sent: an unchanged deploy restarts nothing and reports no
change. The hash of the spec stays in the service's :data:`LABEL_SPEC_HASH` label as a
hint (a changed spec changes the label, which is one of the compared fields). Otherwise
the engine gets the new spec as one update, so it only rolls the tasks if the task
template changed (scaling a replicated service adds or removes tasks and leaves the
others alone), following the service's ``UpdateConfig`` (and ``RollbackConfig`` on
failure).

The spec (``app_env`` values included) reaches the Engine API on
``/var/run/docker.sock`` on the manager through the SSH channel's standard input when the
operation runs: it is never part of a command line (``ps`` on the manager, pyinfra's
output). Secrets are named in the spec (``SecretName``) and resolved to their IDs on the
manager when the operation runs, so a secret created earlier in the same run works.
"""

from __future__ import annotations

import copy
import hashlib
import json
import shlex
from collections.abc import Generator, Mapping
from typing import Any

from pyinfra import logger
from pyinfra.api.command import FunctionCommand, StringCommand
from pyinfra.api.exceptions import OperationValueError
from pyinfra.api.host import Host
from pyinfra.api.operation import operation
from pyinfra.api.state import State
from pyinfra.context import host

from beamfleet.controller import swarm_roll
from beamfleet.controller.facts.services import SwarmServices
from beamfleet.controller.facts.swarm import SwarmNetworks
from beamfleet.controller.operations.engine_api import engine_api_command, run_with_secret_stdin
from beamfleet.controller.spec_drift import spec_drift
from beamfleet.controller.swarm_roll import MeshGate

LABEL_SPEC_HASH = "io.beamfleet.spec-hash"
SECOND = 1_000_000_000  # the Engine API counts durations in nanoseconds


def secret_file(secret: str, target: str, uid: str, mode: int = 0o400) -> dict[str, Any]:
    """A secret mounted as ``/run/secrets/<target>``, owned by ``uid`` (default: readable
    by it only, 0400)."""
    return {
        "SecretName": secret,
        "File": {"Name": target, "UID": uid, "GID": uid, "Mode": mode},
    }


def limits(cpus: float, memory_mb: int) -> dict[str, Any]:
    """The ``Resources`` of a task template: a CPU share and a memory cap."""
    return {"Limits": {"NanoCPUs": int(cpus * SECOND), "MemoryBytes": memory_mb * 1024 * 1024}}


def spec_hash(spec: Mapping[str, Any]) -> str:
    """A stable hash of a service spec (without its own hash label)."""
    clean = copy.deepcopy(dict(spec))
    labels = dict(clean.get("Labels") or {})
    labels.pop(LABEL_SPEC_HASH, None)
    clean["Labels"] = labels
    encoded = json.dumps(clean, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(encoded).hexdigest()[:16]


def with_spec_hash(spec: Mapping[str, Any]) -> dict[str, Any]:
    """``spec`` with its :data:`LABEL_SPEC_HASH` label set."""
    result = copy.deepcopy(dict(spec))
    result["Labels"] = {**(result.get("Labels") or {}), LABEL_SPEC_HASH: spec_hash(spec)}
    return result


def _validate(spec: Mapping[str, Any]) -> None:
    name = spec.get("Name")
    if not isinstance(name, str) or not name:
        raise OperationValueError("the service spec needs a `Name`")
    template = spec.get("TaskTemplate") or {}
    container = template.get("ContainerSpec") or {}
    if not container.get("Image"):
        raise OperationValueError(f"service {name}: TaskTemplate.ContainerSpec.Image is empty")
    for ref in container.get("Secrets") or []:
        if "SecretName" not in ref or "File" not in ref:
            raise OperationValueError(
                f"service {name}: each secret needs `SecretName` and `File` (target name, "
                "UID, GID, Mode)"
            )
    mode = spec.get("Mode") or {}
    if len(mode) != 1 or next(iter(mode)) not in ("Replicated", "Global"):
        raise OperationValueError(f"service {name}: Mode must be Replicated or Global")


@operation()
def service(
    spec: Mapping[str, Any],
    wait_rollout: float | None = None,
    gate: MeshGate | None = None,
) -> Generator[StringCommand | FunctionCommand, None, None]:
    """
    Ensure a swarm service runs with exactly ``spec`` (run on a manager).

    + spec: the Docker Engine API ``ServiceSpec`` (``Name``, ``Labels``, ``TaskTemplate``,
      ``Mode``, ``UpdateConfig``, ``RollbackConfig``, ``EndpointSpec``...); secrets are
      given by ``SecretName`` (their IDs are looked up on the manager)
    + wait_rollout: after an update, wait up to this many seconds for the rolling update
      to complete, and fail if it was rolled back or paused (default: do not wait)
    + gate: for a BEAM application, the mesh its nodes form: a change of the task
      template then rolls one task at a time, each new node in the complete mesh before
      the next starts, and puts the previous spec back when one does not join
      (:mod:`beamfleet.controller.swarm_roll`)

    No change when the running service has every field of ``spec`` as given (fields the
    engine adds are ignored); a field changed by hand is put back. Otherwise one create
    or update call; whether tasks restart is then the engine's rule (only when the task
    template changed, rolling per ``UpdateConfig``), or, with ``gate``, the gated roll.

    **Example:**

    .. code:: python

        services.service(spec={
            "Name": "web",
            "TaskTemplate": {"ContainerSpec": {"Image": "nginx:1.27"}},
            "Mode": {"Replicated": {"Replicas": 2}},
        })
    """
    _validate(spec)
    desired = with_spec_hash(spec)
    name = str(spec["Name"])
    current = host.get_fact(SwarmServices).get(name)
    drift: list[str] = []
    if current is not None:
        live = current.get("Spec") or {}
        drift = spec_drift(desired, live, network_names(host.get_fact(SwarmNetworks)))
        if not drift:
            host.noop(f"service {name} is up to date")
            return
        if (live.get("Labels") or {}).get(LABEL_SPEC_HASH) == desired["Labels"][LABEL_SPEC_HASH]:
            # Same spec applied last time: someone changed the service since.
            logger.warning(
                f"{host.name}: service {name} was changed outside beamfleet "
                f"({', '.join(drift[:6])}{', ...' if len(drift) > 6 else ''}): "
                "putting its spec back"
            )
    if gate is not None and current is not None:
        live = current.get("Spec") or {}
        networks = network_names(host.get_fact(SwarmNetworks))
        template_drift = [d for d in drift if d.startswith("TaskTemplate")]
        if template_drift or swarm_roll.is_held(live):
            reason = swarm_roll.ungated_reason(desired, live)
            if reason is None:
                yield swarm_roll.gated_roll_command(desired, dict(live), gate, networks)
                return
            logger.warning(f"{host.name}: service {name} rolls without the mesh gate: {reason}")
            # Swarm's own roll then; wait for its outcome, so the run reports a rollback
            # (and a later change does not land in the middle of it).
            replicas = int(((desired.get("Mode") or {}).get("Replicated") or {}).get("Replicas", 1))
            wait_rollout = wait_rollout or float(60 + replicas * gate.timeout)
    yield apply_service_command(desired)
    if wait_rollout is not None and current is not None:
        yield engine_api_command("wait-rollout", name, f"{wait_rollout:g}")


def secrets_in_use() -> set[str]:
    """The secrets some service of the swarm mounts (read on a manager)."""
    used: set[str] = set()
    for svc in host.get_fact(SwarmServices).values():
        template = (svc.get("Spec") or {}).get("TaskTemplate") or {}
        for ref in (template.get("ContainerSpec") or {}).get("Secrets") or []:
            used.add(str(ref.get("SecretName")))
    return used


def network_names(networks: dict[str, dict[str, Any]]) -> dict[str, str]:
    """``{network ID: name}`` from :class:`~beamfleet.controller.facts.swarm.SwarmNetworks`."""
    return {str(net["Id"]): name for name, net in networks.items() if net.get("Id")}


def _apply_on_stdin(state: State, host: Host, *, body: str) -> bool:
    """Execution-time half of :func:`service`: the spec goes on standard input."""
    return run_with_secret_stdin(host, engine_api_command("apply-service"), body, show_stdout=True)


def apply_service_command(desired: Mapping[str, Any]) -> FunctionCommand:
    """The command that creates or updates the service to ``desired``.

    A ``FunctionCommand``: the spec reaches the manager on standard input when the
    operation runs, so it is in no process argument list (``sh -c`` included) and not in
    pyinfra's output; ``app_env`` values may be secrets.
    """
    return FunctionCommand(_apply_on_stdin, (), {"body": json.dumps(desired, sort_keys=True)})


@operation()
def absent(service_name: str) -> Generator[StringCommand, None, None]:
    """
    Remove a swarm service (run on a manager).

    + service_name: the service's name

    **Example:**

    .. code:: python

        services.absent(service_name="web")
    """
    if service_name not in host.get_fact(SwarmServices):
        host.noop(f"service {service_name} is absent")
        return
    yield StringCommand("docker", "service", "rm", shlex.quote(service_name), "> /dev/null")


@operation(is_idempotent=False)
def rebalanced(service_name: str, gate: MeshGate) -> Generator[FunctionCommand, None, None]:
    """
    Replace every task of ``service_name`` through the gated roll, one at a time, each
    new node in the complete mesh before the next, so the scheduler places them over every
    host again (Swarm does not move running tasks by itself when hosts are added or come
    back). Fails, with the previous tasks back, when a new node does not join.

    + service_name: the service
    + gate: its mesh (:class:`beamfleet.controller.swarm_roll.MeshGate`)

    **Example:**

    .. code:: python

        services.rebalanced(service_name="demo", gate=MeshGate(...))
    """
    yield swarm_roll.rebalance_command(
        service_name, gate, network_names(host.get_fact(SwarmNetworks))
    )

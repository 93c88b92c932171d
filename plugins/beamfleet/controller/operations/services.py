"""Swarm services from a declarative spec: created, updated only when it changed.

:func:`service` takes the whole desired ``ServiceSpec`` (the Docker Engine API's JSON
shape), hashes it, and stores the hash in the service's :data:`LABEL_SPEC_HASH` label.
When the running service carries the same hash, nothing is sent: an unchanged deploy
restarts nothing and reports no change. When the spec changed, the engine gets the new
spec as one update, so it only rolls the tasks if the task template changed (scaling a
replicated service adds or removes tasks and leaves the others alone), following the
service's ``UpdateConfig`` (and ``RollbackConfig`` on failure).

The spec reaches the Engine API on ``/var/run/docker.sock`` on the manager through
standard input; secrets are named in the spec (``SecretName``) and resolved to their IDs
on the manager when the operation runs, so a secret created earlier in the same run works.
"""

from __future__ import annotations

import copy
import hashlib
import json
import shlex
from collections.abc import Generator, Mapping
from typing import Any

from pyinfra.api.command import StringCommand
from pyinfra.api.exceptions import OperationValueError
from pyinfra.api.operation import operation
from pyinfra.context import host

from beamfleet.controller.facts.services import SwarmServices
from beamfleet.controller.operations.engine_api import engine_api_command

LABEL_SPEC_HASH = "io.beamfleet.spec-hash"


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
    spec: Mapping[str, Any], wait_rollout: float | None = None
) -> Generator[StringCommand, None, None]:
    """
    Ensure a swarm service runs with exactly ``spec`` (run on a manager).

    + spec: the Docker Engine API ``ServiceSpec`` (``Name``, ``Labels``, ``TaskTemplate``,
      ``Mode``, ``UpdateConfig``, ``RollbackConfig``, ``EndpointSpec``...); secrets are
      given by ``SecretName`` (their IDs are looked up on the manager)
    + wait_rollout: after an update, wait up to this many seconds for the rolling update
      to complete, and fail if it was rolled back or paused (default: do not wait)

    No change when the service's spec-hash label matches ``spec``. Otherwise one create
    or update call; whether tasks restart is then the engine's rule (only when the task
    template changed, rolling per ``UpdateConfig``).

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
    if current is not None:
        have = ((current.get("Spec") or {}).get("Labels") or {}).get(LABEL_SPEC_HASH)
        if have == desired["Labels"][LABEL_SPEC_HASH]:
            host.noop(f"service {name} is up to date")
            return
    body = json.dumps(desired, sort_keys=True)
    # The spec travels on stdin (a heredoc), not as an argument: it can be long, and the
    # command line stays readable in pyinfra's output.
    yield StringCommand(
        engine_api_command("apply-service"), f"<<'BEAMFLEET_SPEC'\n{body}\nBEAMFLEET_SPEC"
    )
    if wait_rollout is not None and current is not None:
        yield engine_api_command("wait-rollout", name, f"{wait_rollout:g}")


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

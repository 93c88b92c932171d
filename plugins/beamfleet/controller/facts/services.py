"""Facts about swarm services and their tasks (read on a manager).

:class:`SwarmServices` gives each service's spec as the engine stores it, which
:mod:`beamfleet.controller.operations.services` compares with the desired spec (through the
spec-hash label) to decide whether anything must change. :class:`ServiceTasks` gives
the tasks of one service with their state and addresses, used by the check deploy and the
tests to see which tasks run and whether any was restarted.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from typing import Any

from pyinfra.api.facts import FactBase
from typing_extensions import override

from beamfleet.controller.facts.docker_objects import SwarmObjects
from beamfleet.controller.image_archive import present_chains
from beamfleet.controller.remote_scripts import script_shell


class SwarmServices(SwarmObjects):
    """
    Every service of the swarm by name, as ``docker service inspect`` returns it
    (``ID``, ``Version.Index``, ``Spec`` with ``Labels``, ``Mode``, ``TaskTemplate``...).

    ``{}`` on a host that is not a manager or has no Docker.

    .. code:: python

        svc = host.get_fact(SwarmServices).get("demo")
        replicas = svc["Spec"]["Mode"]["Replicated"]["Replicas"] if svc else 0
    """

    kind = "services"

    @override
    def by_name(self, inspected: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        return {str(s["Spec"]["Name"]): s for s in inspected}


@dataclass(frozen=True)
class Task:
    """One task of a service, reduced to what beamfleet looks at."""

    id: str
    node_id: str
    slot: int | None
    state: str  # Status.State: new, pending, ..., running, failed, shutdown
    desired_state: str
    container_id: str | None
    # network name -> the task's IPv4 addresses on it (without prefix length)
    addresses: dict[str, list[str]]


def parse_tasks(inspected: list[dict[str, Any]]) -> list[Task]:
    """Reduce ``docker inspect <task>...`` output to :class:`Task` objects."""
    tasks = []
    for item in inspected:
        status = item.get("Status") or {}
        addresses: dict[str, list[str]] = {}
        for attachment in item.get("NetworksAttachments") or []:
            net = str((attachment.get("Network") or {}).get("Spec", {}).get("Name", ""))
            addresses[net] = [a.split("/")[0] for a in attachment.get("Addresses") or []]
        tasks.append(
            Task(
                id=str(item["ID"]),
                node_id=str(item.get("NodeID") or ""),
                slot=item.get("Slot"),
                state=str(status.get("State") or ""),
                desired_state=str(item.get("DesiredState") or ""),
                container_id=(status.get("ContainerStatus") or {}).get("ContainerID"),
                addresses=addresses,
            )
        )
    return tasks


class ServiceTasks(FactBase[list[Task]]):
    """
    The tasks of one service whose desired state is ``running`` (the ones the
    orchestrator wants up right now, whatever their current state).

    + service: the service name

    .. code:: python

        running = [t for t in host.get_fact(ServiceTasks, service="demo")
                   if t.state == "running"]
    """

    @override
    def requires_command(self, service: str) -> str:
        return "docker"

    @override
    def command(self, service: str) -> str:
        return script_shell("docker_read.sh", "service-tasks", service)

    @override
    @staticmethod
    def default() -> list[Task]:
        return []

    @override
    def process(self, output: list[str]) -> list[Task]:
        return parse_tasks(json.loads("".join(output)))


class ImageId(FactBase[str | None]):
    """
    The ID (``sha256:...``) of a local image on the host, or ``None`` when the host does
    not have it (or has no Docker yet).

    + image: an image reference (``repo:tag``)

    .. code:: python

        if host.get_fact(ImageId, image="demo:1") != wanted_id: ...
    """

    @override
    def requires_command(self, image: str) -> str:
        return "docker"

    @override
    def command(self, image: str) -> str:
        ref = shlex.quote(image)
        return f"docker image inspect --format '{{{{.Id}}}}' {ref} 2>/dev/null || true"

    @override
    @staticmethod
    def default() -> str | None:
        return None

    @override
    def process(self, output: list[str]) -> str | None:
        lines = [line.strip() for line in output if line.strip().startswith("sha256:")]
        return lines[0] if lines else None


class LayerChains(FactBase[frozenset[str]]):
    """
    The chain IDs of every image layer the host's engine holds (empty without Docker):
    what :mod:`beamfleet.controller.image_archive` leaves out of an archive it ships.

    .. code:: python

        present = host.get_fact(LayerChains)
    """

    @override
    def requires_command(self) -> str:
        return "docker"

    @override
    def command(self) -> str:
        # The containerd image store (an engine option since Docker 24) loads archives its
        # own way: its hosts are reported as holding nothing, so they get whole archives.
        return (
            "if docker info --format '{{json .DriverStatus}}' 2>/dev/null | "
            "grep -q io.containerd.snapshotter; then echo containerd-store; exit 0; fi; "
            "docker image ls -q --no-trunc | sort -u | "
            "xargs -r docker image inspect --format '{{json .RootFS.Layers}}' 2>/dev/null || true"
        )

    @override
    @staticmethod
    def default() -> frozenset[str]:
        return frozenset()

    @override
    def process(self, output: list[str]) -> frozenset[str]:
        if "containerd-store" in output:
            return frozenset()
        lists = []
        for line in output:
            try:
                layers = json.loads(line)
            except ValueError:
                continue
            if isinstance(layers, list):
                lists.append([str(x) for x in layers])
        return present_chains(lists)

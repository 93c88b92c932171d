"""Every lab host runs the Docker engine and is an active node of the swarm."""

from __future__ import annotations

import lab_state
from testinfra.host import Host

testinfra_hosts = lab_state.hosts()


def test_docker_engine_running_and_enabled(host: Host) -> None:
    docker = host.service("docker")
    assert docker.is_running
    assert docker.is_enabled


def test_host_is_active_swarm_node_in_its_role(host: Host) -> None:
    name = host.backend.get_hostname()
    state = host.check_output(
        "docker info --format '{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}'"
    )
    is_manager = name in lab_state.hosts("managers")
    assert state == f"active {'true' if is_manager else 'false'}"

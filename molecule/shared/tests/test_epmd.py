"""EPMD as Swarm mode configures it: inside each application task, never on the host.

Each task runs its own EPMD in its own network namespace, reachable only on the overlay;
the host's interfaces expose no port mapper. A task is healthy only once its node is up
and registered in that EPMD (the service's healthcheck), so every task must be healthy.
"""

from __future__ import annotations

import lab_state
import pytest
from testinfra.host import Host

testinfra_hosts = lab_state.hosts()

EPMD_PORT = 4369


def test_no_port_mapper_listens_on_the_host(host: Host) -> None:
    listening = host.check_output("ss -Hltn")
    assert listening  # the listing really covers the host (sshd listens)
    ports = {line.split()[3].rsplit(":", 1)[-1] for line in listening.splitlines()}
    assert str(EPMD_PORT) not in ports, listening


def test_every_app_task_is_up_and_registered_in_its_epmd(host: Host) -> None:
    containers = lab_state.app_containers(host)
    if not containers:
        pytest.skip(f"no {lab_state.APP} task scheduled on this host")
    for container in containers:
        health = host.check_output(
            "docker inspect --format '{{.State.Health.Status}}' %s", container
        )
        assert health == "healthy", container

"""Reusable deploy: the Docker engine from the distribution's packages (Debian/Ubuntu).

``apt`` installs ``docker.io`` (no recommends), ``/etc/docker/daemon.json`` comes from
the host's ``docker_daemon`` data and is written *before* the install so the engine's
first start already uses it, and ``docker.service`` is enabled and running. A later
change of ``docker_daemon`` restarts the engine once.
"""

from __future__ import annotations

import json
from io import StringIO
from typing import Any

from pyinfra.api.deploy import deploy
from pyinfra.api.exceptions import DeployError
from pyinfra.context import host
from pyinfra.facts.docker import DockerVersion
from pyinfra.facts.server import LinuxDistribution
from pyinfra.operations import apt, files, systemd

SUPPORTED_DISTRIBUTIONS = ("Debian", "Ubuntu")
DAEMON_JSON = "/etc/docker/daemon.json"
# Re-read the package lists at most once a day: an unchanged re-run stays offline.
APT_CACHE_SECONDS = 24 * 3600


def daemon_json(config: dict[str, Any]) -> str:
    """The daemon.json text for ``config`` (stable key order, so re-runs compare equal)."""
    return json.dumps(config, indent=2, sort_keys=True) + "\n"


@deploy("Docker engine")
def docker_engine() -> None:
    """Install and start the Docker engine on a Debian or Ubuntu host.

    Host data: ``docker_daemon`` (dict, the content of /etc/docker/daemon.json; the file
    is left alone when the key is absent).
    """
    distro = host.get_fact(LinuxDistribution)
    if distro["name"] not in SUPPORTED_DISTRIBUTIONS:
        raise DeployError(
            f"{host.name}: the Docker engine deploy supports Debian and Ubuntu, not "
            f"{distro['name']!r}: install Docker there yourself, then run the swarm deploy"
        )
    # A docker client already there means an engine that may run with an old daemon.json.
    installed = bool(host.get_fact(DockerVersion))
    config: dict[str, Any] | None = host.data.get("docker_daemon")
    conf = None
    if config is not None:
        conf = files.put(
            name="Write /etc/docker/daemon.json",
            src=StringIO(daemon_json(config)),
            dest=DAEMON_JSON,
            mode="644",
            create_remote_dir=True,
        )
    apt.packages(
        name="Install docker.io",
        packages=["docker.io"],
        no_recommends=True,
        update=True,
        cache_time=APT_CACHE_SECONDS,
    )
    systemd.service(
        name="docker.service enabled and running",
        service="docker.service",
        running=True,
        enabled=True,
    )
    if conf is not None and installed:
        # Only an engine that was running before this run has an outdated daemon.json;
        # a fresh install started with the new file already.
        systemd.service(
            name="Restart docker.service for the new daemon.json",
            service="docker.service",
            restarted=True,
            _if=conf.did_change,
        )

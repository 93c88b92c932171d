"""The application service: BEAM nodes on their own overlay, named at container start.

One replicated swarm service per application, on an attachable overlay network with an
explicit subnet (default ``10.234.0.0/24``). Each task gets

* the cookie secret at ``/run/secrets/erlang_cookie`` (owner-only, for the image's user);
* ``BEAMFLEET_CIDR`` = the overlay's subnet and ``BEAMFLEET_BASENAME``: the image's
  entrypoint runs the naming shim with them (``beamfleet-nodename --basename ...
  --cidr $BEAMFLEET_CIDR --format env --exec -- bin/app start``), so the node is
  ``<basename>@<its address on this overlay>`` even when the task is on other networks;
* resource limits, a healthcheck (default: the node is registered in its EPMD), and an
  ``UpdateConfig``/``RollbackConfig`` that rolls one task at a time, starting the new one
  first, and rolls back by itself when new tasks fail.

The spec is applied with :func:`beamfleet.controller.operations.services.service`: unchanged spec,
nothing sent, nothing restarted; a replica count change only adds or removes tasks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pyinfra.api.deploy import deploy

from beamfleet.controller.deploys.cookie import COOKIE_TARGET
from beamfleet.controller.operations import services, swarm

SECOND = 1_000_000_000  # the Engine API counts durations in nanoseconds
LABEL_STACK = "com.docker.stack.namespace"  # `docker stack ls/ps/services` show both services


@dataclass(frozen=True)
class AppSettings:
    """What the application service looks like (inventory data keys ``app_*``)."""

    name: str = "demo"
    basename: str = "demo"
    image: str = ""
    replicas: int = 3
    env: dict[str, str] = field(default_factory=dict)
    network: str = "beamfleet-demo"
    subnet: str = "10.234.0.0/24"
    user_id: int = 10001
    cpus: float = 0.5
    memory_mb: int = 256
    healthcheck: str | None = None
    update_parallelism: int = 1
    update_delay_s: int = 2
    update_monitor_s: int = 15


def default_healthcheck(basename: str) -> str:
    """Healthy once the node's distribution is up: its name is registered in EPMD."""
    return f"epmd -names | grep -q '^name {basename} at'"


def rolling(settings: AppSettings) -> dict[str, Any]:
    """UpdateConfig (and, same numbers, RollbackConfig) for one app."""
    return {
        "Parallelism": settings.update_parallelism,
        "Delay": settings.update_delay_s * SECOND,
        "Monitor": settings.update_monitor_s * SECOND,
        "MaxFailureRatio": 0,
        "Order": "start-first",
    }


def app_spec(settings: AppSettings, cookie_secret: str) -> dict[str, Any]:
    """The Engine API ``ServiceSpec`` of the application (pure: unit-tested)."""
    env = {
        **settings.env,
        "BEAMFLEET_CIDR": settings.subnet,
        "BEAMFLEET_BASENAME": settings.basename,
        "BEAMFLEET_COOKIE_FILE": f"/run/secrets/{COOKIE_TARGET}",
    }
    uid = str(settings.user_id)
    check = settings.healthcheck or default_healthcheck(settings.basename)
    update = rolling(settings)
    return {
        "Name": settings.name,
        "Labels": {LABEL_STACK: settings.name, "io.beamfleet.role": "app"},
        "TaskTemplate": {
            "ContainerSpec": {
                "Image": settings.image,
                "Env": [f"{k}={v}" for k, v in sorted(env.items())],
                "Init": True,
                "StopGracePeriod": 10 * SECOND,
                "Secrets": [
                    {
                        "SecretName": cookie_secret,
                        "File": {"Name": COOKIE_TARGET, "UID": uid, "GID": uid, "Mode": 0o400},
                    }
                ],
                "Healthcheck": {
                    "Test": ["CMD-SHELL", check],
                    "Interval": 5 * SECOND,
                    "Timeout": 3 * SECOND,
                    "Retries": 3,
                    "StartPeriod": 30 * SECOND,
                },
            },
            "Resources": {
                "Limits": {
                    "NanoCPUs": int(settings.cpus * SECOND),
                    "MemoryBytes": settings.memory_mb * 1024 * 1024,
                },
            },
            "RestartPolicy": {"Condition": "any", "Delay": 2 * SECOND, "MaxAttempts": 0},
            "Networks": [{"Target": settings.network}],
        },
        "Mode": {"Replicated": {"Replicas": settings.replicas}},
        "UpdateConfig": {**update, "FailureAction": "rollback"},
        "RollbackConfig": {**update, "FailureAction": "pause"},
        # dnsrr: `<name>` and `tasks.<name>` both answer with the task addresses (no VIP).
        "EndpointSpec": {"Mode": "dnsrr"},
    }


@deploy("Application service")
def app_service(
    settings: AppSettings, cookie_secret: str, wait_rollout: float | None = None
) -> None:
    """The overlay network and the application service (run on the acting manager).

    ``wait_rollout``: seconds to wait for a rolling update to complete (rollout.py).
    """
    swarm.overlay_network(
        name=f"Overlay network {settings.network} ({settings.subnet})",
        network=settings.network,
        subnet=settings.subnet,
        attachable=True,
    )
    services.service(
        name=f"Service {settings.name} ({settings.replicas} x {settings.image})",
        spec=app_spec(settings, cookie_secret),
        wait_rollout=wait_rollout,
    )

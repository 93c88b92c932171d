"""The application service: BEAM nodes on their own overlay, named at container start.

One replicated swarm service per application, on its own overlay network with an
explicit subnet (default ``10.234.0.0/24``), encrypted between hosts and not attachable by
standalone containers unless the inventory says otherwise (``app_network_encrypted``,
``app_network_attachable``). Each task gets

* the cookie secret at :data:`~beamfleet.runtime.constants.COOKIE_MOUNT_PATH`
  (``/run/secrets/erlang_cookie``; owner-only, for the image's user);
* ``BEAMFLEET_CIDR`` = the overlay's subnet and ``BEAMFLEET_BASENAME``: the image's
  entrypoint (beamfleet's own in an image derived from a standard release image, see
  :mod:`beamfleet.controller.release_image`) runs the naming shim with them
  (``beamfleet-nodename --basename ... --cidr $BEAMFLEET_CIDR --format env --exec --
  bin/app start``), so the node is ``<basename>@<its address on this overlay>`` even
  when the task is on other networks;
* resource limits, a healthcheck (default: the node is registered in its EPMD, the
  binary found in the image by inspection), and an
  ``UpdateConfig``/``RollbackConfig`` that rolls one task at a time, starting the new one
  first, and rolls back by itself when new tasks fail.

The spec is applied with :func:`beamfleet.controller.operations.services.service`: unchanged spec,
nothing sent, nothing restarted; a replica count change only adds or removes tasks.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pyinfra.api.deploy import deploy

from beamfleet.controller.deploys.dist_tls import CA_PATH, NODE_BUNDLE_PATH, DistTlsSecrets
from beamfleet.controller.inventory import (
    KeySpec,
    KeyTable,
    cidr,
    docker_name,
    image_reference,
    not_negative,
    positive,
    register_data_check,
)
from beamfleet.controller.operations import services, swarm
from beamfleet.controller.safe_text import ENV_NAME, has_control_character
from beamfleet.controller.swarm_roll import MeshGate
from beamfleet.runtime.constants import COOKIE_MOUNT_PATH, COOKIE_SECRET_TARGET
from beamfleet.runtime.node_names import ALIVE_MAX, is_alive

# Names reach Docker and hosts' commands: checked at planning time. The application's
# name is shorter, so `<app>-agent` and `<app>_cookie.v<N>` fit Docker's 63/64 too.
NAME_MAX = 63
APP_NAME_MAX = 48
SECOND = services.SECOND
LABEL_STACK = "com.docker.stack.namespace"  # `docker stack ls/ps/services` show both services


def default_healthcheck(basename: str, epmd: str = "epmd") -> str:
    """Healthy once the node's distribution is up: its name is registered in EPMD.

    ``epmd``: the binary, found in the image by inspection (a release's ERTS keeps it in
    ``erts-*/bin``, off the PATH).
    """
    return f"{shlex.quote(epmd)} -names | grep -q '^name {basename} at'"


def default_network(app_name: str) -> str:
    """The application's overlay network unless ``app_network`` names one."""
    return f"beamfleet-{app_name}"


def _env(value: Any) -> str | None:
    """``app_env``: names a shell and an EnvironmentFile read as names, values without a
    control character (they become lines of a unit's environment file or a spec)."""
    if not all(isinstance(k, str) and isinstance(v, str | int) for k, v in value.items()):
        return "give {NAME: value} with string names"
    for key, item in value.items():
        if not ENV_NAME.fullmatch(key):
            return (
                f"{key!r} is not a variable name: a letter or `_`, then letters, digits or `_`"
            )
        if isinstance(item, str) and has_control_character(item):
            return f"the value of {key} has a control character (a newline?): give one line"
    return None


def _basename(value: Any) -> str | None:
    if not is_alive(value):
        return (
            f"{value!r}: a node's basename (the part before `@`) is 1-{ALIVE_MAX} letters, "
            "digits, `_` or `-`"
        )
    return None


def basename_problem(name: str, basename: str | None, where: str = "`app_name`") -> str | None:
    """Why nodes named after ``name`` could not start, when no basename is given (``app_name``
    is the basename then; Docker allows dots in it, node names do not)."""
    if basename or is_alive(name):
        return None
    suggestion = re.sub(r"[^A-Za-z0-9_-]", "_", name)[:ALIVE_MAX] or "app"
    return (
        f"{where} {name!r} is also the nodes' basename (`<basename>@<host>`), which takes "
        f"letters, digits, `_` and `-` only: set `app_basename` (e.g. {suggestion!r}) or "
        "give the application such a name"
    )


@register_data_check
def _app_basename_problems(data: Mapping[str, Any]) -> list[str]:
    name, basename = data.get("app_name"), data.get("app_basename")
    if not isinstance(name, str) or not isinstance(basename, str | None):
        return []  # a wrong type is reported by the key checks
    problem = basename_problem(name, basename)
    return [problem] if problem else []


APP_KEYS = KeyTable(
    "Application",
    (
        KeySpec(
            "app_name",
            (str,),
            "the application's service name (also the stack label, and `tasks.<app_name>` in DNS)",
            "demo",
            docker_name(APP_NAME_MAX),
        ),
        KeySpec(
            "app_basename",
            (str,),
            "node basename: nodes are `<basename>@<overlay ip>`",
            check=_basename,
            default_doc="= `app_name`",
        ),
        KeySpec(
            "app_image",
            (str,),
            'the image to run (see "Your own image")',
            check=image_reference,
            default_doc="built from `app_build`",
        ),
        KeySpec(
            "app_build",
            (str,),
            "directory with the app's Dockerfile, relative to where pyinfra runs",
            "examples/demo",
        ),
        KeySpec("app_replicas", (int,), "number of nodes", 3, not_negative),
        KeySpec("app_env", (dict,), "extra environment, `{NAME: value}`", {}, _env),
        KeySpec(
            "app_network",
            (str,),
            "the overlay network",
            check=docker_name(NAME_MAX),
            default_doc=f"`{default_network('<app_name>')}`",
        ),
        KeySpec(
            "app_network_encrypted",
            (bool,),
            "encrypt the overlay's traffic between hosts (IPsec; the firewall must pass ESP, "
            "see Firewall)",
            True,
        ),
        KeySpec(
            "app_network_attachable",
            (bool,),
            "let standalone containers join the overlay (`docker run --network`); beamfleet "
            "itself needs no such container",
            False,
        ),
        KeySpec(
            "app_subnet",
            (str,),
            "its subnet (explicit, so it never collides with your networks)",
            "10.234.0.0/24",
            cidr("10.234.0.0/24"),
            type_doc="str (CIDR)",
        ),
        KeySpec(
            "app_user_id",
            (int,),
            "UID (and GID) the image runs as: owner of the cookie file",
            10001,
        ),
        KeySpec("app_cpus", (int, float), "CPU limit per task", 0.5, positive),
        KeySpec("app_memory_mb", (int,), "memory limit per task (MiB)", 256, positive),
        KeySpec(
            "app_dist_tls",
            (bool,),
            "TLS distribution between the nodes, the agent and the checks: certificates "
            "from a CA on the first manager (see TLS distribution); the subnet must be a "
            "/22 or smaller",
            False,
        ),
        KeySpec(
            "app_dist_tls_days",
            (int,),
            "lifetime of the nodes' and the agent's certificates (a new one is issued, and "
            "the nodes roll to it, when a third is left)",
            30,
            positive,
        ),
        KeySpec(
            "app_healthcheck",
            (str,),
            "shell healthcheck of a task",
            default_doc=f"`{default_healthcheck('<basename>')}` (EPMD where the image has it)",
        ),
    ),
)


@dataclass(frozen=True)
class AppSettings:
    """What the application service looks like (inventory data keys ``app_*``).

    The defaults are :data:`APP_KEYS`'; ``basename`` and ``network`` left empty are derived
    from ``name``.
    """

    name: str = APP_KEYS.default("app_name")
    basename: str = ""
    # Set by the deploy to the image it built or was given: no default reference.
    image: str = ""
    replicas: int = APP_KEYS.default("app_replicas")
    env: dict[str, str] = field(default_factory=lambda: APP_KEYS.default("app_env"))
    network: str = ""
    network_encrypted: bool = APP_KEYS.default("app_network_encrypted")
    network_attachable: bool = APP_KEYS.default("app_network_attachable")
    subnet: str = APP_KEYS.default("app_subnet")
    user_id: int = APP_KEYS.default("app_user_id")
    cpus: float = APP_KEYS.default("app_cpus")
    memory_mb: int = APP_KEYS.default("app_memory_mb")
    healthcheck: str | None = APP_KEYS.default("app_healthcheck")
    dist_tls: bool = APP_KEYS.default("app_dist_tls")
    dist_tls_days: int = APP_KEYS.default("app_dist_tls_days")
    # Not an inventory key: the certificates' secrets, set by the deploy with dist_tls.
    tls: DistTlsSecrets | None = None
    # Not inventory keys: the rolling update's pace.
    update_parallelism: int = 1
    update_delay_s: int = 2
    update_monitor_s: int = 15
    # Not an inventory key: the image's EPMD binary (found by inspecting the image).
    epmd: str = "epmd"

    def __post_init__(self) -> None:
        # frozen: the derived defaults are set the way dataclasses set fields.
        if not self.basename:
            object.__setattr__(self, "basename", self.name)
        if not self.network:
            object.__setattr__(self, "network", default_network(self.name))


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
        "BEAMFLEET_COOKIE_FILE": COOKIE_MOUNT_PATH,
    }
    uid = str(settings.user_id)
    check = settings.healthcheck or default_healthcheck(settings.basename, settings.epmd)
    update = rolling(settings)
    secrets = [services.secret_file(cookie_secret, COOKIE_SECRET_TARGET, uid)]
    if settings.tls is not None:
        # the entrypoint turns these into the node's -ssl_dist_optfile (paths only)
        env["BEAMFLEET_DIST_TLS_CERT"] = NODE_BUNDLE_PATH
        env["BEAMFLEET_DIST_TLS_CA"] = CA_PATH
        secrets += [
            services.secret_file(settings.tls.node, NODE_BUNDLE_PATH.rsplit("/", 1)[1], uid),
            services.secret_file(settings.tls.ca, CA_PATH.rsplit("/", 1)[1], uid, mode=0o444),
        ]
    return {
        "Name": settings.name,
        "Labels": {LABEL_STACK: settings.name, "io.beamfleet.role": "app"},
        "TaskTemplate": {
            "ContainerSpec": {
                "Image": settings.image,
                "Env": [f"{k}={v}" for k, v in sorted(env.items())],
                "Init": True,
                "StopGracePeriod": 10 * SECOND,
                "Secrets": secrets,
                "Healthcheck": {
                    "Test": ["CMD-SHELL", check],
                    "Interval": 5 * SECOND,
                    "Timeout": 3 * SECOND,
                    "Retries": 3,
                    "StartPeriod": 30 * SECOND,
                },
            },
            "Resources": services.limits(settings.cpus, settings.memory_mb),
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
    settings: AppSettings,
    cookie_secret: str,
    wait_rollout: float | None = None,
    gate: MeshGate | None = None,
) -> None:
    """The overlay network and the application service (run on the acting manager).

    ``wait_rollout``: seconds to wait for a rolling update to complete (rollout.py).
    ``gate``: roll a new version one task at a time, each node in the complete mesh
    before the next (:mod:`beamfleet.controller.swarm_roll`).
    """
    swarm.overlay_network(
        name=f"Overlay network {settings.network} ({settings.subnet})",
        network=settings.network,
        subnet=settings.subnet,
        attachable=settings.network_attachable,
        encrypted=settings.network_encrypted,
        setting_keys={
            "attachable": "app_network_attachable",
            "encrypted": "app_network_encrypted",
        },
    )
    services.service(
        name=f"Service {settings.name} ({settings.replicas} x {settings.image})",
        spec=app_spec(settings, cookie_secret),
        wait_rollout=wait_rollout,
        gate=gate,
    )

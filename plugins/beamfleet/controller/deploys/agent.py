"""The discovery agent as a global swarm service next to an application.

One agent task per swarm node (``Mode: Global``), on the application's overlay, with the
same cookie secret. The agents find the application's nodes with DNS
(``tasks.<app>``), find each other with ``tasks.<app>-agent``, and split the nodes
between them by rendezvous hashing (``--ownership rendezvous``): each node is driven by
exactly one live agent, and a host joining or leaving just moves a share of them.

Its ``/livez`` (the poll loop ends rounds) is the service's healthcheck: never its
readiness (``/readyz``: every owned node reachable), or Swarm would restart agents while
the application's tasks start, moving ownership and restarting the wait, round after round.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyinfra.api.deploy import deploy

from beamfleet.controller.deploys.app import LABEL_STACK, SECOND, AppSettings
from beamfleet.controller.deploys.dist_tls import AGENT_BUNDLE_PATH, CA_PATH
from beamfleet.controller.inventory import KeySpec, KeyTable, image_reference, positive
from beamfleet.controller.operations import services
from beamfleet.runtime.constants import AGENT_PORT, COOKIE_MOUNT_PATH, COOKIE_SECRET_TARGET

AGENT_UID = 10002  # the `beamfleet` user of the agent image (assets/agent/Dockerfile)

# The container healthcheck: liveness only. Written for a busy host: `python3 -S` and a raw
# socket start in a few milliseconds within the agent's small CPU share, where importing
# urllib took long enough to time out while 40 application nodes started beside it.
_LIVEZ = (
    "import socket, sys; "
    "s = socket.create_connection(('127.0.0.1', {port}), 5); "
    "s.sendall(b'GET /livez HTTP/1.0\\r\\n\\r\\n'); "
    "sys.exit(0 if s.recv(64).split(b' ')[1:2] == [b'200'] else 1)"
)


AGENT_KEYS = KeyTable(
    "Discovery agent",
    (
        KeySpec(
            "agent_image",
            (str,),
            "the agent image",
            check=image_reference,
            default_doc="built from `beamfleet/assets/agent`",
        ),
        KeySpec("agent_interval", (int, float), "agent poll interval, seconds", 1, positive),
        KeySpec(
            "agent_port",
            (int,),
            "agent `/livez`, `/readyz`, `/metrics` port (inside the overlay)",
            AGENT_PORT,
            positive,
        ),
    ),
)


@dataclass(frozen=True)
class AgentSettings:
    """How the agent runs (inventory data keys ``agent_*``; defaults from :data:`AGENT_KEYS`)."""

    # Set by the deploy to the image it built or was given: no default reference.
    image: str = ""
    interval: float = AGENT_KEYS.default("agent_interval")
    port: int = AGENT_KEYS.default("agent_port")
    # Not inventory keys: the agent's resource limits.
    cpus: float = 0.25
    memory_mb: int = 96


def agent_name(app: AppSettings) -> str:
    return f"{app.name}-agent"


def agent_args(app: AppSettings, agent: AgentSettings) -> list[str]:
    """The ``beamfleet agent`` command line (no secret: the cookie is a file).

    With the app's overlay subnet, the agent keeps only the ``tasks.<app>`` addresses on
    that overlay: a foreign address in the answer is never connected.
    """
    subnet = ["--subnet", app.subnet] if app.subnet else []
    tls = (
        ["--tls-cert", AGENT_BUNDLE_PATH, "--tls-key", AGENT_BUNDLE_PATH, "--tls-ca", CA_PATH]
        if app.tls is not None
        else []
    )
    return [
        "agent",
        "--source", f"dns:tasks.{app.name}",
        "--basename", app.basename,
        *subnet,
        "--ownership", "rendezvous",
        "--agents-dns", f"tasks.{agent_name(app)}",
        "--interval", f"{agent.interval:g}",
        "--cookie-file", COOKIE_MOUNT_PATH,
        "--listen", f"0.0.0.0:{agent.port}",
        *tls,
    ]  # fmt: skip


def agent_spec(app: AppSettings, agent: AgentSettings, cookie_secret: str) -> dict[str, object]:
    """The Engine API ``ServiceSpec`` of the agent (pure: unit-tested)."""
    uid = str(AGENT_UID)
    secrets = [services.secret_file(cookie_secret, COOKIE_SECRET_TARGET, uid)]
    if app.tls is not None:
        secrets += [
            services.secret_file(app.tls.agent, AGENT_BUNDLE_PATH.rsplit("/", 1)[1], uid),
            services.secret_file(app.tls.ca, CA_PATH.rsplit("/", 1)[1], uid, mode=0o444),
        ]
    return {
        "Name": agent_name(app),
        "Labels": {LABEL_STACK: app.name, "io.beamfleet.role": "agent"},
        "TaskTemplate": {
            "ContainerSpec": {
                "Image": agent.image,
                "Args": agent_args(app, agent),
                "Init": True,
                "StopGracePeriod": 5 * SECOND,
                "Secrets": secrets,
                "Healthcheck": {
                    "Test": ["CMD", "python3", "-S", "-c", _LIVEZ.format(port=agent.port)],
                    # /livez fails only after 30 s without a round; then five misses in a
                    # row (a minute) before Swarm replaces the agent: a probe delayed by a
                    # start storm on the host is not a stuck agent
                    "Interval": 10 * SECOND,
                    "Timeout": 10 * SECOND,
                    "Retries": 5,
                    "StartPeriod": 30 * SECOND,
                },
            },
            "Resources": services.limits(agent.cpus, agent.memory_mb),
            "RestartPolicy": {"Condition": "any", "Delay": 2 * SECOND, "MaxAttempts": 0},
            "Networks": [{"Target": app.network}],
        },
        "Mode": {"Global": {}},
        "UpdateConfig": {
            "Parallelism": 1,
            "Delay": 1 * SECOND,
            "FailureAction": "rollback",
            "Monitor": 10 * SECOND,
            "Order": "stop-first",
        },
        "EndpointSpec": {"Mode": "dnsrr"},
    }


@deploy("Discovery agent")
def agent_service(app: AppSettings, agent: AgentSettings, cookie_secret: str) -> None:
    """The agent's global service (run on the acting manager, after the app's network)."""
    services.service(
        name=f"Service {agent_name(app)} (global, rendezvous over tasks.{app.name})",
        spec=agent_spec(app, agent, cookie_secret),
    )

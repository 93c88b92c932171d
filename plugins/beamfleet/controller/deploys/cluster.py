"""The whole cluster from an inventory: swarm, images, cookie, application, agent.

:func:`cluster` is what ``deploys/cluster.py`` runs on every host:

1. the swarm (:func:`beamfleet.controller.deploys.swarm.swarm_cluster`: inventory validation,
   Docker engine, swarm formation);
2. the images, built once on the controller and loaded on each host, or pulled;
3. on the acting manager: the cookie secret, the application service on its overlay, and
   the agent as a global service.

Every setting is an inventory data key (see :data:`CLUSTER_KEYS` and docs/cluster.md),
read from the acting manager's data (``--data key=value`` overrides it for a run).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyinfra.api.exceptions import PyinfraError
from pyinfra.api.host import Host
from pyinfra.context import host, state

from beamfleet.controller.deploys import images
from beamfleet.controller.deploys.agent import AgentSettings, agent_service
from beamfleet.controller.deploys.app import AppSettings, app_service
from beamfleet.controller.deploys.cookie import cookie_secret
from beamfleet.controller.deploys.swarm import swarm_cluster, swarm_plan
from beamfleet.controller.inventory import KeySpec, register_keys


def _cidr(value: Any) -> str | None:
    try:
        ipaddress.ip_network(value)
    except ValueError:
        return f"{value!r} is not a network in CIDR form (e.g. 10.234.0.0/24)"
    return None


def _positive(value: Any) -> str | None:
    return None if value > 0 else "must be greater than 0"


def _not_negative(value: Any) -> str | None:
    return None if value >= 0 else "must be 0 or more"


def _env(value: Any) -> str | None:
    if not all(isinstance(k, str) and isinstance(v, str | int) for k, v in value.items()):
        return "give {NAME: value} with string names"
    return None


# key -> (spec, default) — the defaults are documented in docs/cluster.md
CLUSTER_KEYS: dict[str, tuple[KeySpec, Any]] = {
    "app_name": (KeySpec((str,), "the application's service name"), "demo"),
    "app_basename": (KeySpec((str,), "node basename (default: app_name)"), None),
    "app_image": (KeySpec((str,), "the application image (default: built from app_build)"), None),
    "app_build": (KeySpec((str,), "directory with the app's Dockerfile"), "examples/demo"),
    "app_replicas": (KeySpec((int,), "number of application nodes", _not_negative), 3),
    "app_env": (KeySpec((dict,), "extra environment of the app", _env), {}),
    "app_network": (KeySpec((str,), "the app's overlay network"), None),
    "app_subnet": (KeySpec((str,), "the overlay's subnet", _cidr), "10.234.0.0/24"),
    "app_user_id": (KeySpec((int,), "UID the app image runs as (owns the cookie)"), 10001),
    "app_cpus": (KeySpec((int, float), "CPU limit per app task", _positive), 0.5),
    "app_memory_mb": (KeySpec((int,), "memory limit per app task (MiB)", _positive), 256),
    "app_healthcheck": (KeySpec((str,), "shell healthcheck of an app task"), None),
    "image_registry": (KeySpec((bool,), "hosts pull app_image/agent_image"), False),
    "agent_image": (KeySpec((str,), "the agent image (default: built here)"), None),
    "agent_interval": (KeySpec((int, float), "agent poll interval (s)", _positive), 1),
    "agent_port": (KeySpec((int,), "agent /healthz and /metrics port", _positive), 9568),
    "cookie_file": (KeySpec((str,), "a cookie file on the controller to use"), None),
    "rotate_cookie": (KeySpec((bool,), "make a new cookie and roll the services"), False),
    "check_timeout": (KeySpec((int,), "seconds check.py waits for the mesh", _positive), 120),
    "image": (KeySpec((str,), "rollout.py: the new application image"), None),
}
register_keys({key: spec for key, (spec, _) in CLUSTER_KEYS.items()})


def _get(data_host: Host, key: str) -> Any:
    value = data_host.data.get(key)
    return CLUSTER_KEYS[key][1] if value is None else value


@dataclass(frozen=True)
class ClusterSettings:
    app: AppSettings
    agent: AgentSettings
    build: str
    registry: bool
    cookie_file: str | None
    rotate_cookie: bool
    check_timeout: int


def acting_manager() -> Host:
    """The manager that runs the swarm-wide operations (see beamfleet.controller.deploys.swarm)."""
    return state.inventory.get_host(swarm_plan(state).acting_manager)


def cluster_settings(data_host: Host | None = None, image: str | None = None) -> ClusterSettings:
    """Read the cluster's settings from a host's data (default: the acting manager)."""
    h = data_host or acting_manager()
    name = str(_get(h, "app_name"))
    subnet = str(_get(h, "app_subnet"))
    app = AppSettings(
        name=name,
        basename=str(_get(h, "app_basename") or name),
        image=image or str(_get(h, "app_image") or ""),
        replicas=int(_get(h, "app_replicas")),
        env={str(k): str(v) for k, v in dict(_get(h, "app_env")).items()},
        network=str(_get(h, "app_network") or f"beamfleet-{name}"),
        subnet=subnet,
        user_id=int(_get(h, "app_user_id")),
        cpus=float(_get(h, "app_cpus")),
        memory_mb=int(_get(h, "app_memory_mb")),
        healthcheck=_get(h, "app_healthcheck"),
    )
    agent = AgentSettings(
        image=str(_get(h, "agent_image") or ""),
        interval=float(_get(h, "agent_interval")),
        port=int(_get(h, "agent_port")),
    )
    return ClusterSettings(
        app=app,
        agent=agent,
        build=str(_get(h, "app_build")),
        registry=bool(_get(h, "image_registry")),
        cookie_file=_get(h, "cookie_file"),
        rotate_cookie=bool(_get(h, "rotate_cookie")),
        check_timeout=int(_get(h, "check_timeout")),
    )


def _image(ref: str, registry: bool) -> images.Image:
    return images.Image(ref=ref) if registry else images.local_image(ref)


def resolve_images(settings: ClusterSettings) -> tuple[images.Image, images.Image]:
    """The app and agent images: given (pulled, or loaded from this machine) or built."""
    if settings.app.image:
        app = _image(settings.app.image, settings.registry)
    else:
        app = images.build(images.APP_REPO_DEFAULT, images.app_context(Path(settings.build)))
    if settings.agent.image:
        agent = _image(settings.agent.image, settings.registry)
    else:
        agent = images.build(images.AGENT_REPO, images.agent_context())
    return app, agent


def deploy_services(
    settings: ClusterSettings,
    app_image: str,
    agent_image: str,
    wait_rollout: float | None = None,
) -> None:
    """Cookie, application and agent services (call on the acting manager only)."""
    secret = cookie_secret(
        app=settings.app.name, rotate=settings.rotate_cookie, cookie_file=settings.cookie_file
    )
    app = AppSettings(**{**settings.app.__dict__, "image": app_image})
    agent = AgentSettings(**{**settings.agent.__dict__, "image": agent_image})
    app_service(settings=app, cookie_secret=secret, wait_rollout=wait_rollout)
    agent_service(app=app, agent=agent, cookie_secret=secret)


def cluster() -> None:
    """Everything for the current host (call from a deploy file)."""
    swarm_cluster()
    settings = cluster_settings()
    app_image, agent_image = resolve_images(settings)
    images.distribute(wanted=[app_image, agent_image])
    if host.name == acting_manager().name:
        deploy_services(settings, app_image.ref, agent_image.ref)


class RolloutError(PyinfraError):
    """rollout.py was not told what to roll out."""


def rollout() -> None:
    """Roll the application to ``image`` (``--data image=app:2.0``), one task at a time.

    The image is loaded on every host first (or pulled, with ``image_registry``); the
    service then updates per its ``UpdateConfig`` (start-first, one task at a time) and
    rolls back by itself if new tasks fail; this waits for the outcome and fails on a
    rollback. Put the same image in ``app_image`` afterwards, or the next cluster.py run
    rolls back to the inventory's image.
    """
    image = host.data.get("image")
    if not image or not isinstance(image, str):
        raise RolloutError(
            "give the image to roll out: pyinfra INVENTORY deploys/rollout.py --data image=app:2.0"
        )
    settings = cluster_settings(image=image)
    app_image = _image(image, settings.registry)
    agent_image = resolve_images(settings)[1]
    images.distribute(wanted=[app_image, agent_image])
    if host.name == acting_manager().name:
        per_task = settings.app.update_delay_s + settings.app.update_monitor_s + 30
        deploy_services(
            settings, app_image.ref, agent_image.ref,
            wait_rollout=60 + settings.app.replicas * per_task,
        )  # fmt: skip

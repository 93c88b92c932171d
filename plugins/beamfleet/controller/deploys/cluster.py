"""The whole cluster from an inventory: swarm, images, cookie, application, agent.

:func:`cluster` is what ``deploys/cluster.py`` runs on every host:

1. the swarm (:func:`beamfleet.controller.deploys.swarm.swarm_cluster`: inventory validation,
   Docker engine, swarm formation);
2. the images, built once on the controller and loaded on each host, or pulled;
3. on the acting manager: the cookie secret, the application service on its overlay, and
   the agent as a global service.

Every setting is an inventory data key (:data:`~beamfleet.controller.deploys.app.APP_KEYS`,
:data:`~beamfleet.controller.deploys.agent.AGENT_KEYS`, :data:`CLUSTER_KEYS`; docs/cluster.md),
read from the acting manager's data (``--data key=value`` overrides it for a run).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyinfra.api.exceptions import PyinfraError
from pyinfra.api.host import Host
from pyinfra.context import host, state

from beamfleet.controller.deploys import host_mode, images
from beamfleet.controller.deploys.agent import AGENT_KEYS, AgentSettings, agent_name, agent_service
from beamfleet.controller.deploys.app import APP_KEYS, AppSettings, app_service
from beamfleet.controller.deploys.cookie import cookie_secret
from beamfleet.controller.deploys.swarm import (
    removal_targets,
    remove_swarm_hosts,
    swarm_cluster,
    swarm_plan,
)
from beamfleet.controller.facts.beam import MeshReport, render_mesh
from beamfleet.controller.inventory import (
    KeySpec,
    KeyTable,
    image_reference,
    positive,
    register_keys,
    validate_state,
)
from beamfleet.runtime.constants import COOKIE_MOUNT_PATH

CLUSTER_KEYS = KeyTable(
    "Images, cookie, checks",
    (
        KeySpec(
            "image_registry",
            (bool,),
            "`true`: hosts `docker pull` `app_image`/`agent_image` instead of loading archives",
            False,
        ),
        KeySpec(
            "cookie_file",
            (str,),
            "a cookie file **on the controller** (mode 600) to use instead of a generated one",
        ),
        KeySpec(
            "rotate_cookie",
            (bool,),
            "`true` for one run: make a new cookie and roll the services",
            False,
        ),
        KeySpec(
            "check_timeout",
            (int,),
            "seconds `check.py` waits for a complete mesh",
            120,
            positive,
        ),
        KeySpec("image", (str,), "`rollout.py` only: the image to roll out", check=image_reference),
    ),
)
# The keys a cluster run reads, in the order docs/cluster.md lists them.
CLUSTER_RUN_KEYS = (APP_KEYS, AGENT_KEYS, CLUSTER_KEYS)
for _table in CLUSTER_RUN_KEYS:
    register_keys(_table)


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
    data = (data_host or acting_manager()).data

    def app(key: str) -> Any:
        return APP_KEYS.value(data, key)

    # basename and network left empty are derived from the name by AppSettings.
    app_settings = AppSettings(
        name=str(app("app_name")),
        basename=str(app("app_basename") or ""),
        image=image or str(app("app_image") or ""),
        replicas=int(app("app_replicas")),
        env={str(k): str(v) for k, v in dict(app("app_env")).items()},
        network=str(app("app_network") or ""),
        network_encrypted=bool(app("app_network_encrypted")),
        network_attachable=bool(app("app_network_attachable")),
        subnet=str(app("app_subnet")),
        user_id=int(app("app_user_id")),
        cpus=float(app("app_cpus")),
        memory_mb=int(app("app_memory_mb")),
        healthcheck=app("app_healthcheck"),
    )
    agent_settings = AgentSettings(
        image=str(AGENT_KEYS.value(data, "agent_image") or ""),
        interval=float(AGENT_KEYS.value(data, "agent_interval")),
        port=int(AGENT_KEYS.value(data, "agent_port")),
    )
    return ClusterSettings(
        app=app_settings,
        agent=agent_settings,
        build=str(app("app_build")),
        registry=bool(CLUSTER_KEYS.value(data, "image_registry")),
        cookie_file=CLUSTER_KEYS.value(data, "cookie_file"),
        rotate_cookie=bool(CLUSTER_KEYS.value(data, "rotate_cookie")),
        check_timeout=int(CLUSTER_KEYS.value(data, "check_timeout")),
    )


def _image(ref: str, registry: bool) -> images.Image:
    return images.Image(ref=ref) if registry else images.local_image(ref)


def _app_image(ref: str, registry: bool) -> images.Image:
    """A given application image: pulled as it is, or adapted and loaded from this machine."""
    return images.Image(ref=ref) if registry else images.app_image(ref)


class ImageUserError(PyinfraError):
    """The application image runs as a user that cannot read the cookie secret."""


def check_image_user(image: images.Image, settings: AppSettings) -> None:
    """The secret is owned by ``app_user_id``: the image's user must be it (or root)."""
    uid = image.layout.uid if image.layout is not None else None
    if uid not in (None, 0, settings.user_id):
        raise ImageUserError(
            f"image {image.ref} runs as UID {uid} but the cookie secret is given to "
            f"UID {settings.user_id}: set `app_user_id: {uid}`"
        )


def resolve_images(settings: ClusterSettings) -> tuple[images.Image, images.Image]:
    """The app and agent images: given (pulled, or loaded from this machine) or built.

    An application image that does not name itself is adapted (images.app_image)."""
    if settings.app.image:
        app = _app_image(settings.app.image, settings.registry)
    else:
        built = images.build(
            images.APP_REPO_DEFAULT, images.app_context(Path(settings.build)), archive=False
        )
        app = images.app_image(built.ref, built)
    check_image_user(app, settings.app)
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
    epmd: str = "epmd",
) -> None:
    """Cookie, application and agent services (call on the acting manager only).

    ``epmd``: the EPMD binary of the application image, for the default healthcheck."""
    secret = cookie_secret(
        app=settings.app.name, rotate=settings.rotate_cookie, cookie_file=settings.cookie_file
    )
    app = AppSettings(**{**settings.app.__dict__, "image": app_image, "epmd": epmd})
    agent = AgentSettings(**{**settings.agent.__dict__, "image": agent_image})
    app_service(settings=app, cookie_secret=secret, wait_rollout=wait_rollout)
    agent_service(app=app, agent=agent, cookie_secret=secret)


def cluster() -> None:
    """Everything for the current host (call from a deploy file); in host mode
    (``cluster_mode: host``), :func:`beamfleet.controller.deploys.host_mode.host_cluster`."""
    if host_mode.cluster_mode(state) == "host":
        host_mode.host_cluster()
        return
    swarm_cluster()
    settings = cluster_settings()
    app_image, agent_image = resolve_images(settings)
    images.distribute(wanted=[app_image, agent_image])
    if host.name == acting_manager().name:
        deploy_services(settings, app_image.ref, agent_image.ref, epmd=app_image.epmd)


class MeshIncompleteError(PyinfraError):
    """The application's nodes are not all connected to each other."""


def check_mesh() -> None:
    """``check.py``: print the mesh table (on one host) and fail unless it is complete."""
    if host_mode.cluster_mode(state) == "host":
        report = host_mode.check_host_mesh()
        timeout = host_mode.host_settings().check_timeout
    elif host.name == acting_manager().name:
        settings = cluster_settings()
        app = settings.app
        report = host.get_fact(
            MeshReport,
            app=app.name,
            basename=app.basename,
            network=app.network,
            agent=agent_name(app),
            cookie_file=COOKIE_MOUNT_PATH,
            timeout=settings.check_timeout,
        )
        timeout = settings.check_timeout
    else:
        return
    if report is None:
        return
    # stderr: stdout stays clean for `pyinfra --json`
    print(render_mesh(report), file=sys.stderr, flush=True)
    if not report.get("complete"):
        raise MeshIncompleteError(
            f"the {report.get('app')} mesh is not complete after {timeout} s: "
            + "; ".join(report.get("problems") or ["no report"])
        )


def remove_hosts(raw: str) -> None:
    """``remove_host.py``: take the hosts named in ``raw`` (``a,b``) out of the cluster."""
    if host_mode.cluster_mode(state) == "host":
        host_mode.remove_from_hosts(set(removal_targets(raw)))
    else:
        remove_swarm_hosts(raw=raw)


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
    validate_state(state)  # the image reference too, before any host is touched
    image = host.data.get("image")
    if not image or not isinstance(image, str):
        raise RolloutError(
            "give the image to roll out: pyinfra INVENTORY deploys/rollout.py --data image=app:2.0"
        )
    settings = cluster_settings(image=image)
    app_image = _app_image(image, settings.registry)
    check_image_user(app_image, settings.app)
    agent_image = resolve_images(settings)[1]
    images.distribute(wanted=[app_image, agent_image])
    if host.name == acting_manager().name:
        per_task = settings.app.update_delay_s + settings.app.update_monitor_s + 30
        deploy_services(
            settings, app_image.ref, agent_image.ref,
            wait_rollout=60 + settings.app.replicas * per_task, epmd=app_image.epmd,
        )  # fmt: skip

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
import time
from dataclasses import dataclass
from pathlib import Path

from pyinfra.api.exceptions import PyinfraError
from pyinfra.api.host import Host
from pyinfra.context import host, state

from beamfleet.controller.deploys import host_mode, images, maintenance
from beamfleet.controller.deploys.agent import AGENT_KEYS, AgentSettings, agent_name, agent_service
from beamfleet.controller.deploys.app import APP_KEYS, AppSettings, app_service
from beamfleet.controller.deploys.apps import APPS_KEYS, AppEntry, app_entries
from beamfleet.controller.deploys.cookie import cookie_secret
from beamfleet.controller.deploys.dist_tls import (
    describe_certificates,
    dist_tls_secrets,
    probe_tls,
    tls_directory,
)
from beamfleet.controller.deploys.swarm import (
    removal_targets,
    remove_swarm_hosts,
    swarm_cluster,
    swarm_plan,
)
from beamfleet.controller.facts.beam import MeshReport, render_mesh
from beamfleet.controller.facts.dist_tls import DistTlsState
from beamfleet.controller.inventory import (
    KeySpec,
    KeyTable,
    positive,
    register_keys,
    validate_state,
)
from beamfleet.controller.operations import services
from beamfleet.controller.swarm_roll import MeshGate
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
            "rotate_dist_tls",
            (bool,),
            "`true` for one run: issue new TLS distribution certificates (same CA) and roll "
            "the nodes and agents to them, gated on the mesh",
            False,
        ),
        KeySpec(
            "renew_dist_ca",
            (bool,),
            "`true` for one run: give the TLS distribution CA a new certificate (same key: "
            "what it signed stays valid), issue new certificates and roll to them, gated",
            False,
        ),
        KeySpec(
            "rebalance",
            (bool,),
            "`true` for one run: replace the applications' tasks one at a time so they "
            "spread over every host (hosts added or back from maintenance included)",
            False,
        ),
        KeySpec(
            "check_timeout",
            (int,),
            "seconds `check.py` waits for a complete mesh",
            120,
            positive,
        ),
    ),
)
# The keys a cluster run reads, in the order docs/cluster.md lists them.
CLUSTER_RUN_KEYS = (APP_KEYS, APPS_KEYS, AGENT_KEYS, CLUSTER_KEYS)
for _table in CLUSTER_RUN_KEYS:
    register_keys(_table)
# maintenance.py's keys, known to every deploy's validation
register_keys(maintenance.MAINTENANCE_KEYS)


@dataclass(frozen=True)
class ClusterSettings:
    apps: tuple[AppEntry, ...]  # one, or the inventory's `apps`
    agent: AgentSettings
    registry: bool
    cookie_file: str | None
    rotate_cookie: bool
    rotate_dist_tls: bool
    renew_dist_ca: bool
    check_timeout: int
    roll_timeout: int

    @property
    def app(self) -> AppSettings:
        """The first (with the short form, the only) application."""
        return self.apps[0].settings


def acting_manager() -> Host:
    """The manager that runs the swarm-wide operations (see beamfleet.controller.deploys.swarm)."""
    return state.inventory.get_host(swarm_plan(state).acting_manager)


def cluster_settings(
    data_host: Host | None = None, image: str | None = None, only: str | None = None
) -> ClusterSettings:
    """Read the cluster's settings from a host's data (default: the acting manager).

    ``only``: that application of ``apps``; ``image``: its image instead of the inventory's.
    """
    data = (data_host or acting_manager()).data
    agent_settings = AgentSettings(
        image=str(AGENT_KEYS.value(data, "agent_image") or ""),
        interval=float(AGENT_KEYS.value(data, "agent_interval")),
        port=int(AGENT_KEYS.value(data, "agent_port")),
    )
    return ClusterSettings(
        apps=tuple(app_entries(data, image=image, only=only)),
        agent=agent_settings,
        registry=bool(CLUSTER_KEYS.value(data, "image_registry")),
        cookie_file=CLUSTER_KEYS.value(data, "cookie_file"),
        rotate_cookie=bool(CLUSTER_KEYS.value(data, "rotate_cookie")),
        rotate_dist_tls=bool(CLUSTER_KEYS.value(data, "rotate_dist_tls")),
        renew_dist_ca=bool(CLUSTER_KEYS.value(data, "renew_dist_ca")),
        check_timeout=int(CLUSTER_KEYS.value(data, "check_timeout")),
        # one key for both modes' rolls (declared with the host-mode keys)
        roll_timeout=int(host_mode.HOST_KEYS.value(data, "roll_timeout")),
    )


def _image(ref: str, registry: bool) -> images.Image:
    return images.Image(ref=ref) if registry else images.local_image(ref)


def _app_image(ref: str, registry: bool) -> images.Image:
    """A given application image: pulled as it is, or adapted and loaded from this machine."""
    return images.Image(ref=ref) if registry else images.app_image(ref)


class ImageUserError(PyinfraError):
    """The application image runs as a user that cannot read the cookie secret."""


def check_image_tls(image: images.Image, settings: AppSettings) -> None:
    """``app_dist_tls`` needs TLS distribution's module (the ssl application) in the image."""
    if settings.dist_tls and image.layout is not None and not image.layout.tls_dist:
        raise ImageTlsError(
            f"application {settings.name}: `app_dist_tls` needs the ssl application, and image "
            f"{image.ref} has none (no inet_tls_dist.beam): add `:ssl` to the release "
            "(extra_applications) with the OTP it runs on carrying it (Debian: erlang-ssl), "
            "or leave app_dist_tls off"
        )


class ImageTlsError(PyinfraError):
    """The application image cannot run TLS distribution."""


def check_image_user(image: images.Image, settings: AppSettings) -> None:
    """The secret is owned by ``app_user_id``: the image's user must be it (or root)."""
    uid = image.layout.uid if image.layout is not None else None
    if uid not in (None, 0, settings.user_id):
        raise ImageUserError(
            f"image {image.ref} runs as UID {uid} but the cookie secret is given to "
            f"UID {settings.user_id}: set `app_user_id: {uid}`"
        )


def app_image_of(entry: AppEntry, registry: bool) -> images.Image:
    """An application's image: given (pulled, or loaded from this machine) or built; one
    that does not name itself is adapted (images.app_image)."""
    if entry.settings.image:
        app = _app_image(entry.settings.image, registry)
    else:
        built = images.build(
            images.APP_REPO_DEFAULT, images.app_context(Path(entry.build)), archive=False
        )
        app = images.app_image(built.ref, built)
    check_image_user(app, entry.settings)
    check_image_tls(app, entry.settings)
    return app


def resolve_images(settings: ClusterSettings) -> tuple[list[images.Image], images.Image]:
    """Every application's image (in the order of ``settings.apps``) and the agent's."""
    apps = [app_image_of(entry, settings.registry) for entry in settings.apps]
    if settings.agent.image:
        agent = _image(settings.agent.image, settings.registry)
    else:
        agent = images.build(images.AGENT_REPO, images.agent_context())
    return apps, agent


def mesh_gate(settings: ClusterSettings, app: AppSettings) -> MeshGate:
    """The mesh an application's rolls wait on (looked at from its agent on the manager)."""
    return MeshGate(
        app=app.name,
        basename=app.basename,
        network=app.network,
        agent=agent_name(app),
        cookie_file=COOKIE_MOUNT_PATH,
        timeout=settings.roll_timeout,
        tls=probe_tls(app.dist_tls),
    )


def deploy_services(
    settings: ClusterSettings,
    entry: AppEntry,
    app_image: images.Image,
    agent_image: str,
    wait_rollout: float | None = None,
) -> None:
    """One application's cookie, service and agent (call on the acting manager only)."""
    secret = cookie_secret(
        app=entry.settings.name,
        rotate=settings.rotate_cookie,
        cookie_file=entry.cookie_file or settings.cookie_file,
    )
    tls = (
        dist_tls_secrets(
            entry.settings.name,
            entry.settings.subnet,
            entry.settings.dist_tls_days,
            rotate=settings.rotate_dist_tls,
            renew_ca=settings.renew_dist_ca,
        )
        if entry.settings.dist_tls
        else None
    )
    app = AppSettings(
        **{**entry.settings.__dict__, "image": app_image.ref, "epmd": app_image.epmd, "tls": tls}
    )
    agent = AgentSettings(**{**settings.agent.__dict__, "image": agent_image})
    app_service(
        settings=app,
        cookie_secret=secret,
        wait_rollout=wait_rollout,
        gate=mesh_gate(settings, app),
    )
    agent_service(app=app, agent=agent, cookie_secret=secret)


def cluster() -> None:
    """Everything for the current host (call from a deploy file); in host mode
    (``cluster_mode: host``), :func:`beamfleet.controller.deploys.host_mode.host_cluster`."""
    if host_mode.cluster_mode(state) == "host":
        host_mode.host_cluster()
        return
    swarm_cluster()
    settings = cluster_settings()
    app_images, agent_image = resolve_images(settings)
    images.distribute(wanted=[*app_images, agent_image])
    if host.name == acting_manager().name:
        for entry, image in zip(settings.apps, app_images, strict=True):
            deploy_services(settings, entry, image, agent_image.ref)
        if CLUSTER_KEYS.value(host.data, "rebalance"):
            for entry in settings.apps:
                services.rebalanced(
                    name=f"Rebalance {entry.settings.name} over every host",
                    service_name=entry.settings.name,
                    gate=mesh_gate(settings, entry.settings),
                )


class MeshIncompleteError(PyinfraError):
    """The application's nodes are not all connected to each other."""


def check_mesh() -> None:
    """``check.py``: print each application's mesh table (from one host) and fail unless
    every one is complete (``--data app=NAME``: that one)."""
    if host_mode.cluster_mode(state) == "host":
        report = host_mode.check_host_mesh()
        reports = [report] if report is not None else []
        timeout = host_mode.host_settings().check_timeout
    elif host.name == acting_manager().name:
        only = APPS_KEYS.value(host.data, "app")
        settings = cluster_settings(only=str(only) if only else None)
        timeout = settings.check_timeout
        reports = [
            host.get_fact(
                MeshReport,
                app=entry.settings.name,
                basename=entry.settings.basename,
                network=entry.settings.network,
                agent=agent_name(entry.settings),
                cookie_file=COOKIE_MOUNT_PATH,
                timeout=timeout,
                tls=probe_tls(entry.settings.dist_tls),
            )
            for entry in settings.apps
        ]
        for entry, report in zip(settings.apps, reports, strict=True):
            if entry.settings.dist_tls:
                certs = host.get_fact(DistTlsState, directory=tls_directory(entry.settings.name))
                report["tls"] = describe_certificates(certs, now=time.time())
    else:
        return
    incomplete = []
    for report in reports:
        # stderr: stdout stays clean for `pyinfra --json`
        print(render_mesh(report), file=sys.stderr, flush=True)
        if report.get("tls"):
            print(f"{report.get('app')}: {report['tls']}", file=sys.stderr, flush=True)
        if not report.get("complete"):
            incomplete.append(
                f"the {report.get('app')} mesh is not complete after {timeout} s: "
                + "; ".join(report.get("problems") or ["no report"])
            )
    if incomplete:
        raise MeshIncompleteError("\n".join(incomplete))


def remove_hosts(raw: str) -> None:
    """``remove_host.py``: take the hosts named in ``raw`` (``a,b``) out of the cluster."""
    if host_mode.cluster_mode(state) == "host":
        host_mode.remove_from_hosts(set(removal_targets(raw)))
    else:
        remove_swarm_hosts(raw=raw)


def rollout() -> None:
    """Roll the applications to what the inventory says, and wait for the outcome.

    The inventory is the truth: change an application's image (``app_image``, or
    ``apps.NAME.image``), build, environment, limits or replicas there, then run this (or
    ``cluster.py``, which also provisions the swarm). Only the applications whose service
    changed roll, one task at a time, each new node in the complete mesh before the next
    (:mod:`beamfleet.controller.swarm_roll`); a node that does not join puts the previous
    version back and fails the run. A new cookie rolls the Swarm way, and this waits for
    it. ``--data app=NAME``: that application only.
    """
    # a one-off `--data image=...` is refused by the validation (unknown key: it would
    # leave the inventory and the cluster disagreeing); set `app_image` instead
    validate_state(state)
    only = APPS_KEYS.value(host.data, "app")
    settings = cluster_settings(only=str(only) if only else None)
    app_images, agent_image = resolve_images(settings)
    images.distribute(wanted=[*app_images, agent_image])
    if host.name == acting_manager().name:
        for entry, image in zip(settings.apps, app_images, strict=True):
            app = entry.settings
            per_task = app.update_delay_s + app.update_monitor_s + 30
            deploy_services(
                settings, entry, image, agent_image.ref,
                wait_rollout=60 + app.replicas * per_task,
            )  # fmt: skip

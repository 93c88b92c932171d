"""Prove the cluster is one mesh: desired replicas = running tasks = DNS answers, and
every node sees every other node. Prints one table (node x peers seen); exits non-zero,
naming which node misses which peer, when the mesh is not complete within
``check_timeout`` seconds (default 120).

    pyinfra -y inventories/lab.py deploys/check.py

Changes nothing. The looking is done on the acting manager, from inside an agent
container (the controller cannot reach the overlay network): see beamfleet.controller.facts.beam.
"""

import sys

from pyinfra.api.exceptions import PyinfraError
from pyinfra.context import host

from beamfleet.controller.deploys.agent import agent_name
from beamfleet.controller.deploys.cluster import acting_manager, cluster_settings
from beamfleet.controller.facts.beam import MeshReport, render_mesh
from beamfleet.runtime.constants import COOKIE_MOUNT_PATH


class MeshIncompleteError(PyinfraError):
    """The application's nodes are not all connected to each other."""


if host.name == acting_manager().name:
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
    # stderr: stdout stays clean for `pyinfra --json`
    print(render_mesh(report), file=sys.stderr, flush=True)
    if not report.get("complete"):
        raise MeshIncompleteError(
            f"the {app.name} mesh is not complete after {settings.check_timeout} s: "
            + "; ".join(report.get("problems") or ["no report"])
        )

"""Issue an application's TLS distribution certificates on a swarm manager."""

from __future__ import annotations

import shlex
from collections.abc import Generator

from pyinfra.api.command import StringCommand
from pyinfra.api.operation import operation

from beamfleet.controller.remote_scripts import script_text


@operation(is_idempotent=False)
def certificates_issued(
    *, app: str, directory: str, version: int, subnet: str, days: int, ca_days: int
) -> Generator[StringCommand, None, None]:
    """
    Make version ``version`` of ``app``'s node and agent certificates (and the CA, the
    first time) on this manager, as Docker secrets ``<app>_dist_{ca,node,agent}.v<N>``.
    The deploy decides when (:func:`beamfleet.controller.deploys.dist_tls.plan_dist_tls`).

    + app: the application
    + directory: where the CA and the certificates are kept (root only)
    + version: the version to make
    + subnet: the application's overlay subnet: every address in it is a name of the
      node certificate
    + days: the certificates' lifetime
    + ca_days: the CA's lifetime, when one is made

    Keys are made by openssl on the manager and go into Docker from files: they are in no
    command line and no output.

    **Example:**

    .. code:: python

        dist_tls.certificates_issued(app="demo", directory="/var/lib/beamfleet/tls/demo",
                                     version=2, subnet="10.234.0.0/24", days=30,
                                     ca_days=3650)
    """
    argv = ["issue", app, directory, str(version), subnet, str(days), str(ca_days)]
    yield StringCommand(
        "python3", "-c", shlex.quote(script_text("dist_tls.py")), *map(shlex.quote, argv)
    )

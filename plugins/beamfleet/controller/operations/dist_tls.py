"""Issue an application's TLS distribution certificates on a swarm manager."""

from __future__ import annotations

import shlex
from collections.abc import Generator, Sequence

from pyinfra.api.command import FunctionCommand, StringCommand
from pyinfra.api.exceptions import OperationError
from pyinfra.api.host import Host
from pyinfra.api.operation import operation
from pyinfra.api.state import State

from beamfleet.controller.operations.engine_api import run_with_secret_stdin
from beamfleet.controller.operations.hosts import install_from_stdin
from beamfleet.controller.remote_scripts import script_text


@operation(is_idempotent=False)
def certificates_issued(
    *, app: str, directory: str, version: int, subnet: str, days: int, ca_days: int,
    renew_ca: bool = False,
) -> Generator[StringCommand, None, None]:  # fmt: skip
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
    + ca_days: the CA's lifetime, when one is made or renewed
    + renew_ca: first give the CA a new certificate for its same key (what it signed stays
      valid, so old and new nodes still connect)

    Keys are made by openssl on the manager and go into Docker from files: they are in no
    command line and no output.

    **Example:**

    .. code:: python

        dist_tls.certificates_issued(app="demo", directory="/var/lib/beamfleet/tls/demo",
                                     version=2, subnet="10.234.0.0/24", days=30,
                                     ca_days=3650)
    """
    if renew_ca:
        yield _script("renew-ca", app, directory, str(ca_days))
    yield _script("issue", app, directory, str(version), subnet, str(days), str(ca_days))


def _script(*argv: str) -> StringCommand:
    return StringCommand(
        "python3", "-c", shlex.quote(script_text("dist_tls.py")), *map(shlex.quote, argv)
    )


@operation(is_idempotent=False)
def host_certificates_issued(
    *, app: str, directory: str, version: int, days: int, ca_days: int, hosts: Sequence[str],
    renew_ca: bool = False,
) -> Generator[StringCommand, None, None]:  # fmt: skip
    """
    Host mode, on the first host: version ``version`` of ``app``'s certificates (the CA
    the first time), with a node certificate for each of ``hosts`` that has none yet.

    + directory: where the CA and the certificates are kept (root only)
    + hosts: the host part of each node's name (its certificate's name)
    + renew_ca: first give the CA a new certificate for its same key

    **Example:**

    .. code:: python

        dist_tls.host_certificates_issued(app="demo", directory="/etc/beamfleet/demo/ca",
                                          version=1, days=30, ca_days=3650,
                                          hosts=["10.0.0.1", "10.0.0.2"])
    """
    if renew_ca:
        yield _script("renew-ca", app, directory, str(ca_days))
    yield _script("issue-hosts", app, directory, str(version), str(days), str(ca_days), *hosts)


def _copy(
    state: State, host: Host, *, source: Host, files: Sequence[tuple[str, str, str]], user: str,
    directory: str,
) -> bool:  # fmt: skip
    ok, _ = host.run_shell_command(
        StringCommand("install", "-d", "-m", "0755", shlex.quote(directory)), print_output=False
    )
    if not ok:
        return False
    for src, dst, mode in files:
        ok, output = source.run_shell_command(
            StringCommand("cat", shlex.quote(src)), print_output=False, print_input=False
        )
        if not ok:
            raise OperationError(f"cannot read {src} on {source.name}")
        content = "\n".join(output.stdout_lines) + "\n"
        write = StringCommand(install_from_stdin(dst, user, mode))
        if not run_with_secret_stdin(host, write, content):
            return False
    return True


@operation()
def host_certificates_copied(
    *, source: Host, version: int, files: Sequence[tuple[str, str, str]], user: str,
    directory: str, version_file: str,
) -> Generator[StringCommand | FunctionCommand, None, None]:  # fmt: skip
    """
    Give this host its certificates of version ``version``, read on ``source`` (the first
    host) when the operation runs: over one SSH channel there, to this host's shell's
    standard input here; shown nowhere.

    + source: the host that issued them
    + files: ``(path on source, path here, mode)`` of each file
    + user: their owner here (the node's and the agent's user)
    + directory: the directory they go into (created 0755; the keys in it are 0400)
    + version_file: written last with ``version``: what this host holds
    """
    yield FunctionCommand(
        _copy, (), {"source": source, "files": files, "user": user, "directory": directory}
    )
    yield StringCommand(
        "sh", "-c", shlex.quote(f"printf '%s\\n' {version} > {shlex.quote(version_file)}")
    )

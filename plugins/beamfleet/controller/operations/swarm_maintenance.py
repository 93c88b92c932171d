"""Swarm mode's host maintenance: drain, maintain, reactivate, one host at a time.

The host being maintained runs the maintenance itself; the swarm commands (drain, the
checks, reactivation) run at execution time on a manager that is not that host, through
its own SSH connection, so a reboot of the host does not cut them off.
"""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Callable, Sequence

import gevent
from pyinfra.api.command import FunctionCommand, StringCommand
from pyinfra.api.host import Host
from pyinfra.api.operation import operation
from pyinfra.api.state import State

from beamfleet.controller.operations.hosts import (
    Commands,
    maintenance_commands,
    no_earlier_failure,
)

MeshCommand = Callable[[], str]


def _on(manager: Host, command: str) -> tuple[bool, list[str]]:
    ok, output = manager.run_shell_command(StringCommand(command), print_output=False)
    return bool(ok), list(output.stdout_lines)


def _until(what: str, probe: Callable[[], bool], timeout: int, host: Host) -> bool:
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            host.log_styled(f"timed out after {timeout} s waiting for {what}", fg="red")
            return False
        gevent.sleep(2)
    return True


def _meshes_complete(state: State, host: Host, manager: Host, checks: Sequence[str]) -> bool:
    """Every application's mesh report (``MeshReport``'s command) says complete."""
    for check in checks:
        ok, lines = _on(manager, check)
        try:
            report = json.loads(lines[-1]) if ok and lines else {}
        except ValueError:
            report = {}
        if not report.get("complete"):
            problems = "; ".join(report.get("problems") or ["no report"])
            host.log_styled(f"{report.get('app', '?')} mesh not complete: {problems}", fg="red")
            return False
    return True


def _drain(state: State, host: Host, manager: Host, node: str, timeout: int) -> bool:
    quoted = shlex.quote(node)
    ok, _ = _on(manager, f"docker node update --availability drain {quoted} >/dev/null")
    if not ok:
        host.log_styled(f"could not drain {node} from {manager.name}", fg="red")
        return False
    # drained: no task of any service runs there (global agent tasks stop too)
    return _until(
        f"{node}'s tasks to stop",
        lambda: (
            _on(manager, f"docker node ps -q --filter desired-state=running {quoted}") == (True, [])
        ),
        timeout,
        host,
    )


def _reactivate(state: State, host: Host, manager: Host, node: str, timeout: int) -> bool:
    quoted = shlex.quote(node)
    ready = _until(
        f"{node} to be ready in the swarm",
        lambda: (
            _on(manager, f"docker node inspect -f '{{{{.Status.State}}}}' {quoted}")
            == (True, ["ready"])
        ),
        timeout,
        host,
    )
    if not ready:
        return False
    ok, _ = _on(manager, f"docker node update --availability active {quoted} >/dev/null")
    if not ok:
        host.log_styled(f"could not make {node} active again", fg="red")
    return ok


@operation()
def host_maintained(
    node: str,
    manager: Host,
    *,
    checks: Sequence[str],
    timeout: int,
    action: str,
    command: str = "",
) -> Commands:
    """
    Drain this host, maintain it, make it active again, with the mesh complete between.

    + node: this host's swarm node name (its hostname)
    + manager: another manager, which runs the swarm commands
    + checks: a mesh report command per application (run on ``manager``)
    + timeout: seconds each wait (drain, reboot, ready, mesh) may take
    + action: ``reboot``, ``upgrade`` or ``command``
    + command: the shell command of ``command``

    Call with ``_serial=True``: one host at a time, stopping at the first that fails.
    """
    yield FunctionCommand(no_earlier_failure, (f"maintenance of {node}",), {})
    yield FunctionCommand(_meshes_complete, (manager, checks), {})
    yield FunctionCommand(_drain, (manager, node, timeout), {})
    yield FunctionCommand(_meshes_complete, (manager, checks), {})
    yield from maintenance_commands(action, command, timeout)
    yield FunctionCommand(_reactivate, (manager, node, timeout), {})
    yield FunctionCommand(_meshes_complete, (manager, checks), {})

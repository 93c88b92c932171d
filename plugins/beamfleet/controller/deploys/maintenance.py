"""Host maintenance, one host at a time, the cluster complete between moves.

``deploys/maintenance.py`` takes the hosts out one at a time, maintains each (a reboot,
the distribution's package upgrades, or a command of yours), brings it back and waits for
the mesh to be complete before the next; it stops at the first host that does not come
back healthy (the hosts after it are not touched).

- Host mode: the host's node stops cleanly (its peers see one nodedown), the rest must
  still form a complete mesh; after the maintenance the node starts and must be back in
  the complete mesh (``beamfleet mesh``, within ``roll_timeout``).
- Swarm mode: the host is drained (its tasks run elsewhere), every application's mesh
  must be complete; after the maintenance it is made active again and must be ready, the
  meshes complete (within ``check_timeout``). A manager is taken only when the others keep
  the raft quorum, and the swarm commands run on another manager. Swarm does not move
  tasks back by itself: the host gets new tasks as the services change or scale.

    pyinfra -y INVENTORY deploys/maintenance.py --data maintenance=reboot
    pyinfra -y INVENTORY deploys/maintenance.py --data maintenance=upgrade --data maintain=host2
    pyinfra -y INVENTORY deploys/maintenance.py --data maintenance=command \\
        --data "maintenance_command=apt-get -y install linux-image-amd64"
"""

from __future__ import annotations

from typing import Any

from pyinfra.api.exceptions import PyinfraError
from pyinfra.context import host, state

from beamfleet.controller.deploys import host_mode
from beamfleet.controller.deploys.agent import agent_name
from beamfleet.controller.deploys.dist_tls import probe_tls
from beamfleet.controller.deploys.swarm import swarm_plan
from beamfleet.controller.facts.beam import MeshReport
from beamfleet.controller.inventory import (
    MANAGERS,
    KeySpec,
    KeyTable,
    register_keys,
    validate_state,
)
from beamfleet.controller.operations import hosts as host_ops
from beamfleet.controller.operations import swarm_maintenance
from beamfleet.runtime.constants import COOKIE_MOUNT_PATH

ACTIONS = ("reboot", "upgrade", "command")


def _action(value: Any) -> str | None:
    return None if value in ACTIONS else f"use one of {', '.join(ACTIONS)}"


MAINTENANCE_KEYS = KeyTable(
    "Maintenance",
    (
        KeySpec(
            "maintenance",
            (str,),
            "`maintenance.py`: `reboot`, `upgrade` (the distribution's packages) or "
            "`command` (`maintenance_command`)",
            check=_action,
        ),
        KeySpec(
            "maintenance_command",
            (str,),
            "`maintenance.py`, `maintenance: command`: the shell command run on each host",
        ),
        KeySpec(
            "maintain",
            (str,),
            "`maintenance.py`: the hosts to maintain, `a,b` (in this order)",
            default_doc="every host, in the inventory's order",
        ),
    ),
)
register_keys(MAINTENANCE_KEYS)


class MaintenanceError(PyinfraError):
    """The maintenance run was not told what to do, or cannot do it safely."""


def _targets() -> list[str]:
    raw = str(host.data.get("maintain") or "")
    names = [n.strip() for n in raw.split(",") if n.strip()] or [h.name for h in state.inventory]
    known = {h.name for h in state.inventory}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise MaintenanceError(
            f"maintain={raw!r}: {', '.join(unknown)} not in the inventory "
            f"(hosts: {', '.join(sorted(known))})"
        )
    return names


def maintenance() -> None:
    """What ``deploys/maintenance.py`` does on the current host."""
    validate_state(state)
    action = host.data.get("maintenance")
    if action not in ACTIONS:
        raise MaintenanceError(
            "say what to do: --data maintenance=reboot, =upgrade, or =command with "
            "--data maintenance_command='...'"
        )
    command = str(host.data.get("maintenance_command") or "")
    if action == "command" and not command:
        raise MaintenanceError("maintenance=command needs --data maintenance_command='...'")
    targets = _targets()
    if host_mode.cluster_mode(state) != "host":
        _swarm_maintenance(targets, str(action), command)
        return
    if host.name not in targets:
        return
    plan = host_mode.host_plan(state, ship=False)
    paths = plan.settings.paths
    host_ops.node_maintained(
        name=f"Maintenance ({action}) of {host.name}",
        node=plan.nodes[host.name].node,
        units=[paths.node_unit, paths.agent_unit],
        nodes_file=paths.nodes,
        cookie=paths.cookie,
        timeout=plan.settings.roll_timeout,
        action=str(action),
        command=command,
        tls=(paths.tls_agent, paths.tls_ca) if plan.settings.dist_tls else ("", ""),
        _serial=True,
    )


def _swarm_maintenance(targets: list[str], action: str, command: str) -> None:
    """Swarm mode: drain, maintain, reactivate each target, the mesh complete between."""
    from beamfleet.controller.deploys.cluster import cluster_settings  # noqa: PLC0415 (cycle)

    plan = swarm_plan(state)
    managers = [h for h in state.inventory.get_group(MANAGERS, []) if h.name in plan.hostnames]
    for name in targets:
        others = [m for m in managers if m.name != name]
        if not others:
            raise MaintenanceError(
                f"{name} is the only manager: the swarm would stop while it is maintained; "
                "add managers first (an odd number, 3 or more)"
            )
        if any(m.name == name for m in managers) and len(managers) - 1 < len(managers) // 2 + 1:
            raise MaintenanceError(
                f"taking manager {name} out would leave {len(managers) - 1} of {len(managers)} "
                "managers, below the raft quorum: add managers first"
            )
    if host.name not in targets:
        return
    settings = cluster_settings()
    checks = [
        MeshReport().command(
            app=e.settings.name,
            basename=e.settings.basename,
            network=e.settings.network,
            agent=agent_name(e.settings),
            cookie_file=COOKIE_MOUNT_PATH,
            timeout=settings.check_timeout,
            tls=probe_tls(e.settings.dist_tls),
        )
        for e in settings.apps
    ]
    manager = next(m for m in managers if m.name != host.name)
    swarm_maintenance.host_maintained(
        name=f"Maintenance ({action}) of {host.name}",
        node=plan.hostnames[host.name],
        manager=manager,
        checks=checks,
        timeout=settings.check_timeout,
        action=action,
        command=command,
        _serial=True,
    )

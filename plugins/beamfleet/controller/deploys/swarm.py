"""Reusable deploys: form a Docker Swarm from the inventory, and take hosts out of it.

:func:`swarm_cluster` (what ``deploys/swarm.py`` runs, and ``deploys/cluster.py``
includes): validate the inventory, install the engine on every host, then

* the *acting manager* (a host of ``managers`` that already manages the swarm, else the
  first host of ``managers``) initialises the swarm when there is none;
* the other managers join with the manager token (one at a time, so raft never loses
  quorum while they join), workers join with the worker token, both read from the
  acting manager while the deploy runs;
* on the acting manager: each node's role follows its group (a host moved from
  ``workers`` to ``managers`` is promoted, and back), labels and availability follow
  ``swarm_node_labels`` / ``swarm_availability``, overlay networks ``swarm_networks``.

:func:`remove_swarm_hosts` (``deploys/remove_host.py --data remove=host3``) drains each host,
demotes it if it is a manager, makes it leave and removes its node, and refuses up front
when that would leave fewer managers than a quorum of the current ones.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any
from weakref import WeakKeyDictionary

from gevent.lock import Semaphore
from pyinfra.api.deploy import deploy
from pyinfra.api.exceptions import PyinfraError
from pyinfra.api.host import Host
from pyinfra.api.operation import operation
from pyinfra.api.state import State
from pyinfra.context import host, state

from beamfleet.controller.deploys.docker_engine import ENGINE_KEYS, docker_engine
from beamfleet.controller.facts.swarm import PrivateAddress, SwarmInfo, SwarmNodes
from beamfleet.controller.inventory import (
    MANAGERS,
    KeySpec,
    KeyTable,
    cidr,
    docker_name,
    ip_address,
    register_keys,
    reported_hostnames,
    str_map,
    validate_state,
)
from beamfleet.controller.operations import swarm
from beamfleet.controller.operations.swarm import AVAILABILITIES, DEFAULT_ADDR_POOL, SWARM_PORT

_pool_cidr = cidr(DEFAULT_ADDR_POOL)
_network_name = docker_name(63)


def _availability(value: Any) -> str | None:
    return None if value in AVAILABILITIES else "use active, pause or drain"


def _networks(value: Any) -> str | None:
    allowed = {"subnet", "attachable", "encrypted"}
    for name, spec in value.items():
        if not isinstance(name, str):
            return f"network name {name!r}: give a string"
        if error := _network_name(name):
            return f"network name {error}"
        if not isinstance(spec, dict):
            return f"network {name!r}: give a dict with {sorted(allowed)}"
        unknown = set(spec) - allowed
        if unknown:
            return (
                f"network {name!r}: unknown settings {sorted(unknown)} (known: {sorted(allowed)})"
            )
        if "subnet" in spec and (error := _pool_cidr(spec["subnet"])):
            return f"network {name!r}: {error}"
    return None


def _host_list(value: Any) -> str | None:
    return None if all(part.strip() for part in value.split(",")) else "comma-separated names"


SWARM_KEYS = KeyTable(
    "Swarm",
    (
        KeySpec(
            "swarm_advertise_addr",
            (str,),
            f"address other nodes reach this host on (cluster port {SWARM_PORT})",
            check=ip_address,
            type_doc="str (IP)",
            default_doc="the host's private address",
        ),
        KeySpec(
            "swarm_node_labels",
            (dict,),
            "labels of this host's node (`docker node update --label-add`)",
            check=str_map,
            type_doc="dict str→str",
        ),
        KeySpec(
            "swarm_availability",
            (str,),
            "`active`, `pause` or `drain`",
            check=_availability,
            default_doc="untouched",
        ),
        KeySpec(
            "swarm_default_addr_pool",
            (str,),
            "range overlay networks take their `/24`s from (set at `swarm init`)",
            DEFAULT_ADDR_POOL,
            check=_pool_cidr,
            type_doc="str (CIDR)",
        ),
        KeySpec(
            "swarm_networks",
            (dict,),
            'overlay networks: `{name: {"subnet": CIDR, "attachable": bool, "encrypted": bool}}`'
            " (read on the acting manager)",
            check=_networks,
        ),
        *ENGINE_KEYS,  # declared by the engine deploy, which reads them
        KeySpec(
            "remove",
            (str,),
            "for `deploys/remove_host.py`: comma-separated inventory names",
            check=_host_list,
            default_doc="—",
        ),
    ),
)
register_keys(SWARM_KEYS)


class RemovalRefusedError(PyinfraError):
    """Removing the requested hosts would break the swarm; nothing was changed."""


class AdvertiseAddressError(PyinfraError):
    """No address to advertise for a host: set ``swarm_advertise_addr`` in its data."""


@dataclass(frozen=True)
class SwarmPlan:
    """Decisions taken once per run, before any operation is added."""

    acting_manager: str
    # inventory name -> hostname as the host reports it (= its swarm node name)
    hostnames: dict[str, str]


_plans: WeakKeyDictionary[State, SwarmPlan] = WeakKeyDictionary()
_plan_lock = Semaphore()


def _managers() -> list[Host]:
    return list(state.inventory.get_group(MANAGERS, []))


def _is_manager_now(candidate: Host) -> bool:
    info: dict[str, Any] = candidate.get_fact(SwarmInfo)
    return bool(info.get("ControlAvailable"))


def swarm_plan(run: State, exclude: frozenset[str] = frozenset()) -> SwarmPlan:
    """The acting manager and node names of this run (computed once, shared by hosts)."""
    with _plan_lock:
        plan = _plans.get(run)
        if plan is None:
            managers = [m for m in _managers() if m.name not in exclude]
            if not managers:
                raise RemovalRefusedError(
                    "no manager would be left to run the swarm: keep at least one"
                )
            acting = next((m for m in managers if _is_manager_now(m)), managers[0])
            hostnames = reported_hostnames(run)
            plan = SwarmPlan(acting_manager=acting.name, hostnames=hostnames)
            _plans[run] = plan
        return plan


def advertise_address(target: Host) -> str:
    """``swarm_advertise_addr`` from host data, else the host's private address."""
    addr = target.data.get("swarm_advertise_addr") or target.get_fact(PrivateAddress)
    if not addr:
        raise AdvertiseAddressError(
            f"{target.name}: no private IPv4 address found to advertise to the swarm: "
            "set `swarm_advertise_addr` in its host data"
        )
    return str(addr)


@operation()
def sync_point() -> Generator[str, None, None]:
    """An ordering point every host passes: it changes nothing.

    pyinfra orders operations per host only (one DAG of each host's sequence, ties broken
    by source line), so an operation on one host is not guaranteed to run after another
    host's earlier one. An operation called by *every* host at the same line is one node
    of that DAG: everything before it, on any host, runs before everything after it.
    """
    host.noop("ordering point")
    yield from ()


@deploy("Swarm formation")
def swarm_formation() -> None:
    """Init / join / roles / labels / networks (the engine must be installed before)."""
    plan = swarm_plan(state)
    managers = {m.name for m in _managers()}
    addr = advertise_address(host)
    pool = str(SWARM_KEYS.value(host.data, "swarm_default_addr_pool"))
    if host.name == plan.acting_manager:
        swarm.init(name="Initialise the swarm", advertise_addr=addr, default_addr_pool=pool)
    sync_point(name="Swarm exists")
    if host.name == plan.acting_manager:
        pass  # it is in the swarm already
    elif host.name in managers:
        swarm.join(
            name="Join the swarm as a manager",
            manager=plan.acting_manager,
            role="manager",
            advertise_addr=addr,
            _serial=True,
        )
    else:
        swarm.join(
            name="Join the swarm as a worker",
            manager=plan.acting_manager,
            role="worker",
            advertise_addr=addr,
        )
    sync_point(name="Every host joined")
    if host.name != plan.acting_manager:
        return
    # From here on: operations the acting manager runs for every node.
    specs: dict[str, dict[str, Any]] = {}
    for other in state.inventory:
        spec: dict[str, Any] = {"role": "manager" if other.name in managers else "worker"}
        if other.data.get("swarm_node_labels"):
            spec["labels"] = other.data.get("swarm_node_labels")
        if other.data.get("swarm_availability"):
            spec["availability"] = other.data.get("swarm_availability")
        specs[plan.hostnames[other.name]] = spec
    swarm.nodes(name="Nodes: roles, labels and availability from the inventory", specs=specs)
    networks: dict[str, dict[str, Any]] = host.data.get("swarm_networks") or {}
    for net_name, spec in sorted(networks.items()):
        swarm.overlay_network(
            name=f"Overlay network {net_name}",
            network=net_name,
            subnet=spec.get("subnet"),
            attachable=spec.get("attachable", True),
            encrypted=spec.get("encrypted", False),
        )


def swarm_cluster() -> None:
    """The whole swarm provisioning for the current host: validation, engine, swarm.

    Call it from a deploy file (``deploys/swarm.py``, ``deploys/cluster.py``). A bad
    inventory raises InventoryValidationError here, before any operation exists.
    """
    validate_state(state)
    docker_engine()
    swarm_formation()


def removal_targets(raw: str) -> list[str]:
    """Parse ``remove=a,b`` into host names, checking that they are in the inventory."""
    names = [part.strip() for part in raw.split(",") if part.strip()]
    known = {h.name for h in state.inventory}
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise RemovalRefusedError(
            f"remove={raw!r}: {', '.join(unknown) or 'no host'} not in the inventory "
            f"(hosts: {', '.join(sorted(known))})"
        )
    return names


def check_quorum(managers_now: list[str], removing: list[str]) -> None:
    """Refuse a removal that leaves fewer managers than a majority of the current ones."""
    leaving = [m for m in managers_now if m in removing]
    if not leaving:
        return
    remaining = len(managers_now) - len(leaving)
    quorum = len(managers_now) // 2 + 1
    if remaining < quorum:
        raise RemovalRefusedError(
            f"removing managers {', '.join(leaving)} would leave {remaining} of "
            f"{len(managers_now)} managers, below the raft quorum of {quorum}: the swarm "
            "would stop accepting changes. Remove fewer managers at a time, or add and "
            "promote managers first"
        )


@deploy("Remove hosts from the swarm")
def remove_swarm_hosts(raw: str) -> None:
    """Drain, demote, leave and remove the hosts named in ``raw`` (``a,b``)."""
    validate_state(state)
    targets = removal_targets(raw)
    plan = swarm_plan(state, exclude=frozenset(targets))
    acting = state.inventory.get_host(plan.acting_manager)
    nodes: list[dict[str, Any]] = acting.get_fact(SwarmNodes)
    if not nodes:
        raise RemovalRefusedError(f"{acting.name} does not manage a swarm: nothing to remove from")
    managers_now = [
        str(n["Description"]["Hostname"])
        for n in nodes
        if (n.get("Spec") or {}).get("Role") == "manager"
    ]
    target_nodes = [plan.hostnames[t] for t in targets]
    check_quorum(managers_now, target_nodes)
    if host.name == acting.name:
        for node in target_nodes:
            swarm.node_availability(name=f"Drain {node}", node=node, availability="drain")
            swarm.node_role(name=f"Demote {node}", node=node, role="worker")
    sync_point(name="Hosts to remove drained and demoted")
    if host.name in targets:
        swarm.leave(name="Leave the swarm")
    sync_point(name="Hosts to remove left the swarm")
    if host.name == acting.name:
        for node in target_nodes:
            swarm.node_remove(name=f"Remove node {node}", node=node)

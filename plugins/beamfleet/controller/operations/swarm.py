"""Idempotent Docker Swarm operations: init, join, leave, nodes, overlay networks.

Every operation reads the current state with a fact from :mod:`beamfleet.controller.facts.swarm`
first and yields nothing (``host.noop``) when the host is already as asked. Node
operations (labels, availability, role, removal) and network creation run on a manager.

Join tokens never leave the secret path: :func:`join` reads them from the manager at
execution time, never prints them, and hands the join request to the joining host's
Docker Engine API over ``/var/run/docker.sock`` on the SSH channel's standard input. So
the token is in no process argument list (``ps``), no pyinfra output or ``--json``, no
file on disk.
"""

from __future__ import annotations

import ipaddress
import json
import shlex
from collections.abc import Generator, Mapping
from typing import Any
from weakref import WeakKeyDictionary

from gevent.lock import Semaphore
from pyinfra.api.command import FunctionCommand, StringCommand
from pyinfra.api.exceptions import OperationError, OperationValueError
from pyinfra.api.host import Host
from pyinfra.api.operation import operation
from pyinfra.api.state import State
from pyinfra.context import host

from beamfleet.controller.facts.swarm import (
    SWARM_ACTIVE,
    SWARM_INACTIVE,
    JoinTokens,
    SwarmInfo,
    SwarmNetworks,
    SwarmNodes,
    read_join_tokens,
)
from beamfleet.controller.operations.engine_api import engine_api_command, run_with_secret_stdin
from beamfleet.controller.remote_scripts import script_command

SWARM_PORT = 2377
DEFAULT_ADDR_POOL = "10.233.0.0/16"
ROLES = ("worker", "manager")
AVAILABILITIES = ("active", "pause", "drain")


class SwarmOperationError(OperationError):
    """A swarm operation cannot do what it was asked; the message says why and what to do."""


def _docker(*args: str) -> StringCommand:
    """``docker ARGS...`` with every argument shell-quoted: node, network and label
    values come from the inventory and the swarm, and must stay single words."""
    return StringCommand(shlex.join(["docker", *args]))


def _local_state() -> str:
    """This host's LocalNodeState (``inactive`` when Docker is not installed yet)."""
    info: dict[str, Any] = host.get_fact(SwarmInfo)
    return str(info.get("LocalNodeState") or SWARM_INACTIVE)


def _find_node(nodes: list[dict[str, Any]], node: str) -> dict[str, Any] | None:
    """The node whose ID or hostname is ``node``; a ready node wins over a stale (down) one."""
    matches = [
        n
        for n in nodes
        if n.get("ID") == node or (n.get("Description") or {}).get("Hostname") == node
    ]
    matches.sort(key=lambda n: (n.get("Status") or {}).get("State") != "ready")
    return matches[0] if matches else None


def _require_manager() -> None:
    if not host.get_fact(SwarmInfo).get("ControlAvailable"):
        raise SwarmOperationError(
            f"{host.name} is not a swarm manager: run node and network operations on a "
            "manager (e.g. the first host of the `managers` group)"
        )


@operation()
def init(
    advertise_addr: str,
    default_addr_pool: str = DEFAULT_ADDR_POOL,
    default_addr_pool_mask_length: int = 24,
    listen_addr: str | None = None,
) -> Generator[StringCommand, None, None]:
    """
    Create a new swarm with this host as its first manager.

    + advertise_addr: address other nodes reach this manager on (no port: 2377 is used)
    + default_addr_pool: the CIDR overlay networks are carved from (explicit, so the
      swarm never picks a range that collides with the hosts' networks)
    + default_addr_pool_mask_length: prefix length of each overlay network taken from it
    + listen_addr: address:port to listen on for cluster traffic (default 0.0.0.0:2377)

    No change when the host is already a manager of a swarm; an error when it is a worker
    of another swarm (leave it first).

    **Example:**

    .. code:: python

        swarm.init(advertise_addr="10.0.0.11")
    """
    ipaddress.ip_network(default_addr_pool)  # ValueError on a typo, before anything runs
    info: dict[str, Any] = host.get_fact(SwarmInfo)
    state = _local_state()
    if state == SWARM_ACTIVE and info.get("ControlAvailable"):
        host.noop("the host already manages a swarm")
        return
    if state != SWARM_INACTIVE:
        raise SwarmOperationError(
            f"{host.name} is already in a swarm as a worker (state {state!r}): "
            "make it leave (swarm.leave) before initialising a new swarm here"
        )
    args = [
        "docker", "swarm", "init",
        "--advertise-addr", advertise_addr,
        "--default-addr-pool", default_addr_pool,
        "--default-addr-pool-mask-length", str(default_addr_pool_mask_length),
    ]  # fmt: skip
    if listen_addr:
        args += ["--listen-addr", listen_addr]
    # `swarm init` prints the worker join command, token included: keep it off the output.
    yield StringCommand(shlex.join(args), "> /dev/null")


# One token read per manager and run: several joining hosts ask at once.
_token_lock = Semaphore()
_token_cache: WeakKeyDictionary[State, dict[str, tuple[JoinTokens, str]]] = WeakKeyDictionary()


def _manager_tokens(state: State, manager: Host) -> tuple[JoinTokens, str]:
    """The join tokens and the cluster address of ``manager``, read once per run."""
    with _token_lock:
        cache = _token_cache.setdefault(state, {})
        if manager.name not in cache:
            tokens = read_join_tokens(manager)  # never printed, even with -vvv
            info: dict[str, Any] = manager.get_fact(SwarmInfo)
            if not tokens or not info.get("NodeAddr"):
                raise SwarmOperationError(
                    f"cannot read join tokens from {manager.name}: it is not a swarm manager "
                    "(initialise the swarm there first: swarm.init)"
                )
            cache[manager.name] = (tokens, str(info["NodeAddr"]))
        return cache[manager.name]


def _engine_api_join(
    state: State,
    host: Host,
    *,
    manager_name: str,
    role: str,
    advertise_addr: str | None,
    listen_addr: str,
) -> bool:
    """Execution-time half of :func:`join` (a FunctionCommand: runs only when executing)."""
    manager = state.inventory.get_host(manager_name)
    tokens, manager_addr = _manager_tokens(state, manager)
    request: dict[str, Any] = {
        "ListenAddr": listen_addr,
        "RemoteAddrs": [f"{manager_addr}:{SWARM_PORT}"],
        "JoinToken": tokens[role].unmask(),  # type: ignore[literal-required]
    }
    if advertise_addr:
        request["AdvertiseAddr"] = advertise_addr
    # Docker's message names the problem (unreachable manager, bad address...), and never
    # echoes the token back.
    return run_with_secret_stdin(
        host, engine_api_command("request", "POST", "/swarm/join"), json.dumps(request)
    )


@operation()
def join(
    manager: str,
    role: str = "worker",
    advertise_addr: str | None = None,
    listen_addr: str = f"0.0.0.0:{SWARM_PORT}",
) -> Generator[StringCommand | FunctionCommand, None, None]:
    """
    Join this host to the swarm managed by the inventory host ``manager``.

    + manager: inventory name of a manager of the swarm (its join token and address are
      read from it when the operation executes, so it may be initialised in the same run)
    + role: ``worker`` or ``manager``: which join token to use
    + advertise_addr: address the other nodes reach this one on
    + listen_addr: address:port for cluster traffic

    No change when the host is already active in a swarm (change its role with
    :func:`node_role`). Needs python3 on the host: the join request goes to the Engine API
    on ``/var/run/docker.sock`` through standard input, so the token never shows in
    ``ps``.

    **Example:**

    .. code:: python

        swarm.join(manager="manager1", role="worker", advertise_addr="10.0.0.12")
    """
    if role not in ROLES:
        raise OperationValueError(f"role must be one of {ROLES}, not {role!r}")
    state = _local_state()
    if state == SWARM_ACTIVE:
        host.noop("the host is already in the swarm")
        return
    if state != SWARM_INACTIVE:
        # pending / error: a half-done join; start again from a clean slate.
        yield StringCommand("docker", "swarm", "leave", "--force")
    yield FunctionCommand(
        _engine_api_join,
        (),
        {
            "manager_name": manager,
            "role": role,
            "advertise_addr": advertise_addr,
            "listen_addr": listen_addr,
        },
    )


@operation()
def leave(force: bool = False) -> Generator[StringCommand, None, None]:
    """
    Make this host leave its swarm.

    + force: needed to leave as a manager (demote it first instead: :func:`node_role`)

    **Example:**

    .. code:: python

        swarm.leave()
    """
    if _local_state() == SWARM_INACTIVE:
        host.noop("the host is not in a swarm")
        return
    yield StringCommand("docker", "swarm", "leave", *(["--force"] if force else []))


def _node_or_fail(node: str) -> dict[str, Any]:
    _require_manager()
    found = _find_node(host.get_fact(SwarmNodes), node)
    if found is None:
        raise SwarmOperationError(f"no swarm node {node!r} (hostname or ID): see `docker node ls`")
    return found


def _planning_without(node: str | None = None) -> bool:
    """Whether this is the planning pass of a run in which the swarm (or ``node``) does
    not exist yet, e.g. the first run, which installs Docker and creates the swarm.

    Then an operation plans a change, and decides for real from fresh facts when it
    executes (pyinfra runs each operation's body again at execution time).
    """
    if host.state.is_executing:
        return False
    info: dict[str, Any] = host.get_fact(SwarmInfo)
    if not info.get("ControlAvailable"):
        return True
    return node is not None and _find_node(host.get_fact(SwarmNodes), node) is None


@operation()
def node_labels(
    node: str,
    labels: Mapping[str, str],
    remove_others: bool = False,
) -> Generator[StringCommand, None, None]:
    """
    Set labels on a swarm node (run on a manager).

    + node: hostname or node ID
    + labels: ``{key: value}`` to ensure on the node
    + remove_others: remove labels of the node that are not in ``labels``

    **Example:**

    .. code:: python

        swarm.node_labels(node="host2", labels={"zone": "a"})
    """
    if _planning_without(node):
        yield _docker("node", "update", node)
        return
    current: dict[str, str] = (_node_or_fail(node).get("Spec") or {}).get("Labels") or {}
    args: list[str] = []
    for key, value in sorted(labels.items()):
        if current.get(key) != str(value):
            args += ["--label-add", f"{key}={value}"]
    if remove_others:
        for key in sorted(set(current) - set(labels)):
            args += ["--label-rm", key]
    if not args:
        host.noop(f"node {node} already has these labels")
        return
    yield StringCommand(shlex.join(["docker", "node", "update", *args, node]))


@operation()
def node_availability(node: str, availability: str) -> Generator[StringCommand, None, None]:
    """
    Set a node's availability (run on a manager).

    + node: hostname or node ID
    + availability: ``active``, ``pause`` or ``drain`` (drain moves its tasks elsewhere)

    **Example:**

    .. code:: python

        swarm.node_availability(node="host3", availability="drain")
    """
    if availability not in AVAILABILITIES:
        raise OperationValueError(f"availability must be one of {AVAILABILITIES}")
    if _planning_without(node):
        yield _docker("node", "update", "--availability", availability, node)
        return
    found = _node_or_fail(node)
    if (found.get("Spec") or {}).get("Availability") == availability:
        host.noop(f"node {node} is already {availability}")
        return
    yield _docker("node", "update", "--availability", availability, found["ID"])


@operation()
def node_role(node: str, role: str) -> Generator[StringCommand, None, None]:
    """
    Promote a node to manager or demote it to worker (run on a manager).

    + node: hostname or node ID
    + role: ``manager`` or ``worker``

    **Example:**

    .. code:: python

        swarm.node_role(node="host2", role="manager")
    """
    if role not in ROLES:
        raise OperationValueError(f"role must be one of {ROLES}, not {role!r}")
    if _planning_without(node):
        yield _docker("node", "promote" if role == "manager" else "demote", node)
        return
    found = _node_or_fail(node)
    if (found.get("Spec") or {}).get("Role") == role:
        host.noop(f"node {node} is already a {role}")
        return
    yield _docker("node", "promote" if role == "manager" else "demote", found["ID"])


def wait_node_down_command(node_id: str, seconds: int) -> StringCommand:
    """Poll every half second, up to ``seconds`` (at least once), until ``node_id`` is
    ``down`` (``assets/remote/wait_node_down.sh``); succeeds either way."""
    return script_command("wait_node_down.sh", node_id, str(max(1, seconds * 2)))


@operation()
def node_remove(
    node: str, force: bool = False, wait_down: int = 30
) -> Generator[StringCommand, None, None]:
    """
    Remove a node from the swarm (run on a manager).

    + node: hostname or node ID
    + force: remove it even if it does not report ``down`` (an unreachable host)
    + wait_down: seconds to wait for a node that just left to be seen as ``down``

    A manager node must be demoted first (:func:`node_role`). No change when the node is
    not in the swarm.

    **Example:**

    .. code:: python

        swarm.node_remove(node="host3")
    """
    _require_manager()
    found = _find_node(host.get_fact(SwarmNodes), node)
    if found is None:
        host.noop(f"node {node} is not in the swarm")
        return
    if (found.get("Spec") or {}).get("Role") == "manager":
        raise SwarmOperationError(
            f"node {node} is a manager: demote it first (swarm.node_role(role='worker'))"
        )
    if not force:
        # A node that has just left takes a heartbeat or two to be marked down.
        yield wait_node_down_command(found["ID"], wait_down)
    yield _docker("node", "rm", *(["--force"] if force else []), found["ID"])


@operation()
def nodes(
    specs: Mapping[str, Mapping[str, Any]],
) -> Generator[StringCommand, None, None]:
    """
    Make several nodes match their specs at once (run on a manager): one read of the
    node list for all of them, where :func:`node_role`, :func:`node_labels` and
    :func:`node_availability` read it once each.

    + specs: ``{node: {"role": ..., "labels": {...}, "availability": ...}}``, every key
      optional (absent = left as it is); ``node`` is a hostname or node ID

    Promotions come before demotions, so the count of managers never dips in between.

    **Example:**

    .. code:: python

        swarm.nodes(specs={"host2": {"role": "manager"}, "host3": {"labels": {"zone": "a"}}})
    """
    for spec in specs.values():
        if spec.get("role") not in (None, *ROLES):
            raise OperationValueError(f"role must be one of {ROLES}, not {spec['role']!r}")
        if spec.get("availability") not in (None, *AVAILABILITIES):
            raise OperationValueError(f"availability must be one of {AVAILABILITIES}")
    if _planning_without():
        for node in specs:
            yield _docker("node", "update", node)
        return
    _require_manager()
    current = host.get_fact(SwarmNodes)
    promote: list[str] = []
    demote: list[str] = []
    updates: list[StringCommand] = []
    for node, spec in specs.items():
        found = _find_node(current, node)
        if found is None:
            raise SwarmOperationError(
                f"no swarm node {node!r} (hostname or ID): did it join? see `docker node ls`"
            )
        have = found.get("Spec") or {}
        role = spec.get("role")
        if role and have.get("Role") != role:
            (promote if role == "manager" else demote).append(found["ID"])
        args: list[str] = []
        availability = spec.get("availability")
        if availability and have.get("Availability") != availability:
            args += ["--availability", availability]
        have_labels: dict[str, str] = have.get("Labels") or {}
        for key, value in sorted((spec.get("labels") or {}).items()):
            if have_labels.get(key) != str(value):
                args += ["--label-add", f"{key}={value}"]
        if args:
            updates.append(
                StringCommand(shlex.join(["docker", "node", "update", *args, found["ID"]]))
            )
    if not (promote or demote or updates):
        host.noop("every node matches its spec")
        return
    if promote:
        yield _docker("node", "promote", *promote)
    yield from updates
    if demote:
        yield _docker("node", "demote", *demote)


def overlay_create_args(
    network: str, subnet: str | None, attachable: bool, encrypted: bool
) -> list[str]:
    """The ``docker`` arguments that create the overlay ``network``."""
    args = ["network", "create", "--driver", "overlay"]
    if attachable:
        args.append("--attachable")
    if encrypted:
        args += ["--opt", "encrypted"]
    if subnet:
        args += ["--subnet", subnet]
    return [*args, network]


def overlay_differences(
    current: Mapping[str, Any],
    *,
    subnet: str | None,
    attachable: bool,
    encrypted: bool,
    keys: Mapping[str, str] | None = None,
) -> list[str]:
    """How the existing network ``current`` (``docker network inspect``) differs from the
    wanted settings, one phrase each, naming the inventory key (``keys``: setting -> key)
    that would keep the network as it is."""
    have_subnets = [c.get("Subnet") for c in (current.get("IPAM") or {}).get("Config") or []]
    have = {
        "attachable": bool(current.get("Attachable")),
        "encrypted": "encrypted" in (current.get("Options") or {}),
    }
    wanted = {"attachable": attachable, "encrypted": encrypted}
    differences = []
    if subnet and subnet not in have_subnets:
        differences.append(f"its subnet is {have_subnets}, not {subnet}")
    for setting in ("attachable", "encrypted"):
        if have[setting] != wanted[setting]:
            now, want = str(have[setting]).lower(), str(wanted[setting]).lower()
            text = f"{setting} is {now} (wanted {want})"
            if keys and setting in keys:
                text += f"; `{keys[setting]}: {now}` keeps it as it is"
            differences.append(text)
    return differences


@operation()
def overlay_network(  # noqa: PLR0917 (pyinfra operations take keyword arguments)
    network: str,
    subnet: str | None = None,
    attachable: bool = True,
    encrypted: bool = False,
    present: bool = True,
    setting_keys: Mapping[str, str] | None = None,
) -> Generator[StringCommand, None, None]:
    """
    Ensure a swarm overlay network exists (run on a manager).

    + network: network name (``name`` is pyinfra's operation title)
    + subnet: explicit CIDR (else Docker picks one from the swarm's address pool)
    + attachable: let standalone containers attach (``docker run --network``)
    + encrypted: encrypt the VXLAN data plane (IPsec) between nodes
    + present: ``False`` removes the network
    + setting_keys: the inventory keys behind ``attachable`` / ``encrypted`` (e.g.
      ``{"encrypted": "app_network_encrypted"}``), named in the error below

    An existing network with other settings is an error, not a silent change: Docker
    cannot change a network in place, and removing it would cut every service on it. The
    message names each differing setting, the key that keeps the network as it is, and
    how to recreate it.

    **Example:**

    .. code:: python

        swarm.overlay_network(network="beam", subnet="10.233.100.0/24", encrypted=True)
    """
    if subnet is not None:
        ipaddress.ip_network(subnet)
    if present and _planning_without():
        yield _docker("network", "create", "--driver", "overlay", network)
        return
    _require_manager()
    current = host.get_fact(SwarmNetworks).get(network)
    if not present:
        if current is None:
            host.noop(f"network {network} is absent")
            return
        yield _docker("network", "rm", network)
        return
    if current is None:
        yield _docker(*overlay_create_args(network, subnet, attachable, encrypted))
        return
    differences = overlay_differences(
        current, subnet=subnet, attachable=attachable, encrypted=encrypted, keys=setting_keys
    )
    if differences:
        raise SwarmOperationError(
            f"overlay network {network} exists with other settings: {'; '.join(differences)}. "
            "Docker cannot change a network in place: to recreate it, remove the services "
            f"on it and the network (`docker network rm {network}`), then deploy again"
        )
    host.noop(f"network {network} exists")

"""Inventory validation: catch a bad inventory before any host is changed.

A beamfleet inventory is an ordinary pyinfra inventory with groups ``managers`` and
``workers`` and host data keys from :data:`KNOWN_KEYS`. :func:`validate_state` runs at
the top of the deploys (``beamfleet.controller.deploys.swarm.swarm_cluster`` and the removal
deploy), during pyinfra's planning pass: it raises :class:`InventoryValidationError`, a
``PyinfraError``, so pyinfra stops with the message before executing any operation.

It checks: at least one manager; an odd number of managers (raft quorum); every host in
exactly one of the two groups; no unknown key (with the closest known key suggested for a
typo); value types; every host reachable (pyinfra could connect); distinct advertise
addresses.

Other beamfleet modules declare their own keys with :func:`register_keys`.
"""

from __future__ import annotations

import difflib
import ipaddress
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from weakref import WeakKeyDictionary, WeakSet

from gevent.lock import Semaphore
from pyinfra.api.connectors import get_all_connectors
from pyinfra.api.exceptions import PyinfraError
from pyinfra.api.state import State
from pyinfra.facts.server import Hostname

MANAGERS = "managers"
WORKERS = "workers"


class InventoryValidationError(PyinfraError):
    """The inventory is wrong; the message lists every problem and how to fix it."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        text = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"the inventory needs fixing before anything is changed:\n{text}")


@dataclass(frozen=True)
class KeySpec:
    """A known host data key: its type, what it means, and an optional value check."""

    types: tuple[type, ...]
    help: str
    # Returns an error message for a bad value, or None.
    check: Callable[[Any], str | None] | None = None


def _ip(value: Any) -> str | None:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return f"{value!r} is not an IP address"
    return None


def _cidr(value: Any) -> str | None:
    try:
        ipaddress.ip_network(value)
    except ValueError:
        return f"{value!r} is not a network in CIDR form (e.g. 10.233.0.0/16)"
    return None


def _str_map(value: Any) -> str | None:
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        return "keys and values must be strings"
    return None


def _availability(value: Any) -> str | None:
    return None if value in ("active", "pause", "drain") else "use active, pause or drain"


def _networks(value: Any) -> str | None:
    allowed = {"subnet", "attachable", "encrypted"}
    for name, spec in value.items():
        if not isinstance(spec, dict):
            return f"network {name!r}: give a dict with {sorted(allowed)}"
        unknown = set(spec) - allowed
        if unknown:
            return (
                f"network {name!r}: unknown settings {sorted(unknown)} (known: {sorted(allowed)})"
            )
        if "subnet" in spec and (error := _cidr(spec["subnet"])):
            return f"network {name!r}: {error}"
    return None


def _host_list(value: Any) -> str | None:
    return None if all(part.strip() for part in value.split(",")) else "comma-separated names"


# The keys beamfleet's own deploys read.
KNOWN_KEYS: dict[str, KeySpec] = {
    "swarm_advertise_addr": KeySpec(
        (str,), "address other nodes reach this host on (default: its private address)", _ip
    ),
    "swarm_node_labels": KeySpec((dict,), "labels of this host's swarm node", _str_map),
    "swarm_availability": KeySpec(
        (str,), "node availability: active, pause or drain", _availability
    ),
    "swarm_default_addr_pool": KeySpec(
        (str,), "CIDR overlay networks are taken from (default 10.233.0.0/16)", _cidr
    ),
    "swarm_networks": KeySpec(
        (dict,),
        "overlay networks to create: {name: {subnet, attachable, encrypted}}",
        _networks,
    ),
    "docker_daemon": KeySpec((dict,), "content of /etc/docker/daemon.json"),
    "remove": KeySpec(
        (str,),
        "hosts to remove from the swarm (deploys/remove_host.py --data remove=...)",
        _host_list,
    ),
}


def register_keys(keys: Mapping[str, KeySpec]) -> None:
    """Declare more known host data keys (for deploys built on top of beamfleet's)."""
    KNOWN_KEYS.update(keys)


def _connector_keys() -> set[str]:
    """Data keys pyinfra's own connectors understand (ssh_hostname, ssh_user, ...)."""
    keys: set[str] = set()
    for connector in get_all_connectors().values():  # type: ignore[no-untyped-call]
        keys.update(getattr(connector, "data_meta", {}) or {})
    return keys


@dataclass
class HostSpec:
    """What the validation needs to know about one inventory host."""

    name: str
    groups: list[str]
    data: dict[str, Any]
    reachable: bool = True
    hostname: str | None = None  # as the host reports it (swarm node names), if known
    extra_known: set[str] = field(default_factory=set)


def find_problems(hosts: Iterable[HostSpec], connector_keys: set[str]) -> list[str]:
    """Every problem of the inventory, as one actionable sentence each (pure, testable)."""
    hosts = list(hosts)
    problems: list[str] = []
    managers = [h for h in hosts if MANAGERS in h.groups]
    if not managers:
        problems.append("no host in group `managers`: put at least one host in `managers = [...]`")
    elif len(managers) % 2 == 0:
        problems.append(
            f"{len(managers)} managers ({', '.join(h.name for h in managers)}): a swarm needs "
            "an odd number of managers to keep a raft quorum; move one to `workers` "
            "or add one"
        )
    for h in hosts:
        in_groups = [g for g in (MANAGERS, WORKERS) if g in h.groups]
        if len(in_groups) == 2:
            problems.append(f"{h.name} is in both `managers` and `workers`: keep it in one")
        elif not in_groups:
            problems.append(f"{h.name} is in neither `managers` nor `workers`: add it to one")
    known = set(KNOWN_KEYS) | connector_keys
    for h in hosts:
        for key, value in sorted(h.data.items()):
            if key.startswith("_") or key in h.extra_known:
                continue  # pyinfra's global arguments (_sudo, _env, ...)
            spec = KNOWN_KEYS.get(key)
            if spec is None:
                if key in connector_keys:
                    continue
                close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.7)
                hint = f" (did you mean `{close[0]}`?)" if close else ""
                problems.append(f"{h.name}: unknown data key `{key}`{hint}")
                continue
            if value is None:
                continue
            if (
                not isinstance(value, spec.types)
                # bool is an int subclass: True is no port number
                or (isinstance(value, bool) and bool not in spec.types)
            ):
                wanted = " or ".join(t.__name__ for t in spec.types)
                problems.append(
                    f"{h.name}: `{key}` must be a {wanted} ({spec.help}), "
                    f"not {type(value).__name__} {value!r}"
                )
                continue
            if spec.check and (error := spec.check(value)):
                problems.append(f"{h.name}: `{key}`: {error}")
    unreachable = [h.name for h in hosts if not h.reachable]
    if unreachable:
        problems.append(
            f"cannot connect to {', '.join(unreachable)}: check ssh_hostname / ssh_user / "
            "ssh_key and that sshd runs, or take the host out of the inventory"
        )
    seen: dict[str, str] = {}
    for h in hosts:
        addr = h.data.get("swarm_advertise_addr")
        if isinstance(addr, str):
            if addr in seen:
                problems.append(
                    f"{h.name} and {seen[addr]} both advertise {addr}: each needs its own"
                )
            seen[addr] = h.name
    names: dict[str, str] = {}
    for h in hosts:
        if h.hostname:
            if h.hostname in names:
                problems.append(
                    f"{h.name} and {names[h.hostname]} have the same hostname {h.hostname!r}: "
                    "swarm nodes are addressed by hostname, give each host its own"
                )
            names[h.hostname] = h.name
    return problems


# Per-run caches, keyed by the run's State (gone with it).
_hostnames: WeakKeyDictionary[State, dict[str, str]] = WeakKeyDictionary()


def reported_hostnames(state: State) -> dict[str, str]:
    """{inventory name: hostname the host reports} for every connected host, read once
    per run (swarm nodes are named by hostname)."""
    if state not in _hostnames:
        failed = set(state.failed_hosts)
        _hostnames[state] = {
            host.name: str(host.get_fact(Hostname))
            for host in state.inventory
            if host not in failed and host.connected
        }
    return _hostnames[state]


def host_specs(state: State) -> list[HostSpec]:
    """The inventory of a pyinfra run as HostSpecs (reachable = pyinfra connected)."""
    hostnames = reported_hostnames(state)
    return [
        HostSpec(
            name=host.name,
            groups=list(host.groups),
            data=dict(host.data.dict()),  # type: ignore[no-untyped-call]
            reachable=host.name in hostnames,
            hostname=hostnames.get(host.name),
        )
        for host in state.inventory
    ]


_validated: WeakSet[State] = WeakSet()
_lock = Semaphore()


def validate_state(state: State) -> None:
    """Raise InventoryValidationError when the run's inventory has problems.

    Called by every host's planning pass (they run in parallel): checks once per run.
    """
    with _lock:
        if state in _validated:
            return
        problems = find_problems(host_specs(state), _connector_keys())
        if problems:
            raise InventoryValidationError(problems)
        _validated.add(state)

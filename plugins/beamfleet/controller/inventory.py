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

Each key is declared once, as a :class:`KeySpec` in the :class:`KeyTable` of the component
that reads it (``SWARM_KEYS`` in ``deploys/swarm.py``, ``APP_KEYS``, ``AGENT_KEYS``,
``CLUSTER_KEYS``): its name, type, default, meaning and value check. The validation, the
settings' defaults and the key tables of docs/*.md (:meth:`KeyTable.markdown`) all come
from that declaration. A component makes its keys known with :func:`register_keys`.
"""

from __future__ import annotations

import copy
import difflib
import importlib
import ipaddress
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeAlias
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


class KeyTableError(ValueError):
    """A key table declares a key twice, or a key it does not have was asked for."""


Check: TypeAlias = Callable[[Any], str | None]
"""A value check: returns an error message for a bad value, or None."""


@dataclass(frozen=True)
class KeySpec:
    """One host data key, declared once: everything else reads it from here.

    + name: the data key
    + types: the Python types a value may have
    + help: what it means (error messages and the docs' table)
    + default: the value when the inventory does not set it (``None``: derived or absent)
    + check: an optional value check (:data:`Check`)
    + default_doc: how the docs show a ``None`` default ("= `app_name`", "none", ...)
    + type_doc: how the docs show the type, when more precise than ``types``

    Example: ``KeySpec("app_replicas", (int,), "number of nodes", 3, not_negative)``.
    """

    name: str
    types: tuple[type, ...]
    help: str
    default: Any = None
    check: Check | None = None
    default_doc: str | None = None
    type_doc: str | None = None

    def shown_type(self) -> str:
        return self.type_doc or " or ".join(t.__name__ for t in self.types)

    def shown_default(self) -> str:
        if self.default_doc is not None:
            return self.default_doc
        if self.default is None:
            return "none"
        value = self.default
        text = str(value).lower() if isinstance(value, bool) else str(value)
        return f"`{text}`"


class HostDataLike(Protocol):
    """What :meth:`KeyTable.value` reads: pyinfra's ``host.data`` or a plain dict."""

    def get(self, key: str, default: Any = None, /) -> Any: ...


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


@dataclass(frozen=True)
class KeyTable:
    """The keys one component reads, in the order the docs list them.

    Example::

        APP_KEYS = KeyTable("Application", (KeySpec("app_name", (str,), "its name", "demo"),))
        APP_KEYS.value(host.data, "app_name")  # the host's value, else "demo"
    """

    title: str
    specs: tuple[KeySpec, ...]
    _by_name: dict[str, KeySpec] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_name: dict[str, KeySpec] = {}
        for spec in self.specs:
            if spec.name in by_name:
                raise KeyTableError(f"key table {self.title!r} declares `{spec.name}` twice")
            by_name[spec.name] = spec
        object.__setattr__(self, "_by_name", by_name)

    def __iter__(self) -> Iterator[KeySpec]:
        return iter(self.specs)

    def __getitem__(self, name: str) -> KeySpec:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyTableError(f"key table {self.title!r} has no key `{name}`") from None

    def default(self, name: str) -> Any:
        """The declared default of ``name`` (a copy: a dict default is never shared)."""
        return copy.deepcopy(self[name].default)

    def value(self, data: HostDataLike, name: str) -> Any:
        """``name`` from host data, or its declared default when unset (or ``None``)."""
        value = data.get(name)
        return self.default(name) if value is None else value

    def markdown(self) -> str:
        """The table for the docs: key, type, default, meaning (one row per key)."""
        rows = ["| key | type | default | meaning |", "|---|---|---|---|"]
        rows += [
            f"| `{s.name}` | {_cell(s.shown_type())} | {_cell(s.shown_default())} "
            f"| {_cell(s.help)} |"
            for s in self.specs
        ]
        return "\n".join(rows) + "\n"


# Value checks shared by the key tables.


def ip_address(value: Any) -> str | None:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return f"{value!r} is not an IP address"
    return None


def cidr(example: str) -> Check:
    """A check for a network in CIDR form; ``example`` is shown in the message."""

    def check(value: Any) -> str | None:
        try:
            ipaddress.ip_network(value)
        except ValueError:
            return f"{value!r} is not a network in CIDR form (e.g. {example})"
        return None

    return check


def str_map(value: Any) -> str | None:
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        return "keys and values must be strings"
    return None


def positive(value: Any) -> str | None:
    return None if value > 0 else "must be greater than 0"


def not_negative(value: Any) -> str | None:
    return None if value >= 0 else "must be 0 or more"


# Docker's image reference grammar (distribution/reference), as one expression:
#   [domain[:port]/]path-component[/path-component...][:tag][@algorithm:hex]
# path components are lowercase; a tag is at most 128 word characters, dots and dashes.
_DOMAIN_PART = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
IMAGE_REFERENCE = re.compile(
    rf"(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*(?::{_TAG})?(?:@{_DIGEST})?",
    re.ASCII,
)
IMAGE_NAME_MAX = 255  # Docker's limit on the name (without tag and digest)

# Names beamfleet gives Docker objects and nodes (services, networks, basenames).
DOCKER_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*", re.ASCII)


def image_reference(value: Any) -> str | None:
    """Check an image reference against Docker's grammar (it reaches hosts' commands).

    Example: ``image_reference("registry.example.com:5000/team/app:1.4")`` is None.
    """
    if not IMAGE_REFERENCE.fullmatch(value):
        return (
            f"{value!r} is not an image reference: `[registry[:port]/]name[:tag][@digest]`, "
            "with a lowercase name (letters, digits, `.`, `_`, `-` between them), "
            "e.g. `registry.example.com/app:1.4`"
        )
    name = value.split("@", 1)[0]
    if ":" in name.rsplit("/", 1)[-1]:
        name = name.rsplit(":", 1)[0]
    if len(name) > IMAGE_NAME_MAX:
        return f"the image name is {len(name)} characters long: at most {IMAGE_NAME_MAX}"
    return None


def docker_name(max_length: int) -> Check:
    """A check for a name beamfleet hands to Docker: a letter or digit, then letters,
    digits, ``_``, ``.`` or ``-``, at most ``max_length`` characters."""

    def check(value: Any) -> str | None:
        if not DOCKER_NAME.fullmatch(value) or len(value) > max_length:
            return (
                f"{value!r}: use a letter or digit, then letters, digits, `_`, `.` or `-` "
                f"(at most {max_length} characters)"
            )
        return None

    return check


DataCheck = Callable[[Mapping[str, Any]], list[str]]
"""A check of one host's data as a whole (keys that decide together), for
:func:`register_data_check`: the problems, each one actionable sentence."""

DATA_CHECKS: list[DataCheck] = []


def register_data_check(check: DataCheck) -> DataCheck:
    """Run ``check`` on every host's data when the inventory is validated (usable as a
    decorator). Example: the nodes' basename, which ``app_name`` gives when
    ``app_basename`` is unset."""
    DATA_CHECKS.append(check)
    return check


ALL_KEYS_MODULE = "beamfleet.controller.deploys.cluster"
"""Importing it registers every built-in key table (swarm, engine, app, agent, cluster)."""

KNOWN_KEYS: dict[str, KeySpec] = {}
"""Every key a loaded beamfleet deploy reads (filled by :func:`register_keys`)."""


def register_keys(keys: Iterable[KeySpec]) -> None:
    """Make keys known to the validation (a :class:`KeyTable`, or any KeySpecs).

    Example: ``register_keys(KeyTable("My deploy", (KeySpec("my_port", (int,), "..."),)))``.
    """
    KNOWN_KEYS.update((spec.name, spec) for spec in keys)


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
    modes = {h.name: str(h.data.get("cluster_mode") or "swarm") for h in hosts}
    if len(set(modes.values())) > 1:
        listed = ", ".join(f"{name}: {mode}" for name, mode in modes.items())
        problems.append(f"`cluster_mode` differs between hosts ({listed}): set one for all hosts")
    if set(modes.values()) != {"host"}:
        problems += _group_problems(hosts)
    problems += _key_problems(hosts, connector_keys)
    unreachable = [h.name for h in hosts if not h.reachable]
    if unreachable:
        problems.append(
            f"cannot connect to {', '.join(unreachable)}: check ssh_hostname / ssh_user / "
            "ssh_key and that sshd runs, or take the host out of the inventory"
        )
    problems += _identity_problems(hosts)
    return problems


def _group_problems(hosts: list[HostSpec]) -> list[str]:
    """Swarm mode: managers and workers (host mode runs a node on every host, any group)."""
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
    return problems


def _key_problems(hosts: list[HostSpec], connector_keys: set[str]) -> list[str]:
    """Unknown keys (with the closest known one), wrong types, failed value checks."""
    problems: list[str] = []
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
        problems += [f"{h.name}: {p}" for check in DATA_CHECKS for p in check(h.data)]
    return problems


def _identity_problems(hosts: list[HostSpec]) -> list[str]:
    """Distinct advertise addresses and hostnames."""
    problems: list[str] = []
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
                    "nodes are addressed by hostname, give each host its own"
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
        # One inventory serves every beamfleet deploy: whichever runs, it knows the keys of
        # all of them (the swarm deploy must not refuse the cluster's keys as unknown).
        # Imported here, by name: the deploys import this module.
        importlib.import_module(ALL_KEYS_MODULE)
        problems = find_problems(host_specs(state), _connector_keys())
        if problems:
            raise InventoryValidationError(problems)
        _validated.add(state)

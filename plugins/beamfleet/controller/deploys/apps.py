"""The applications of an inventory: one (the ``app_*`` keys), or several (``apps``).

``apps`` maps each application's name to its settings, the ``app_*`` keys without their
``app_`` prefix (and ``cookie_file``)::

    apps = {
        "shop": {"build": "apps/shop", "replicas": 3, "subnet": "10.234.1.0/24"},
        "chat": {"image": "chat:2.1", "subnet": "10.234.2.0/24", "env": {"LOG": "info"}},
    }

Each application gets its own overlay network, cookie secret, agent service and check
table; nodes of two applications never connect (their cookies differ). A top-level
``app_*`` key is the default of every application that does not set it. Without ``apps``
the top-level keys are the one application, as before.

Example::

    for entry in app_entries(host.data):
        entry.settings.name, entry.build, entry.cookie_file
"""

from __future__ import annotations

import difflib
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pyinfra.api.exceptions import PyinfraError

from beamfleet.controller.deploys.app import APP_KEYS, APP_NAME_MAX, AppSettings, basename_problem
from beamfleet.controller.inventory import HostDataLike, KeySpec, KeyTable, docker_name

PREFIX = "app_"
TLS_SUBNET_MAX = 1024
# What an entry of `apps` may set: every app_* key but the name (the entry's key).
ENTRY_KEYS: dict[str, KeySpec] = {
    spec.name.removeprefix(PREFIX): spec for spec in APP_KEYS if spec.name != "app_name"
}
ENTRY_EXTRA: dict[str, KeySpec] = {
    "cookie_file": KeySpec("cookie_file", (str,), "this application's cookie file"),
}


class AppsError(PyinfraError):
    """The applications of the inventory cannot run side by side; the message says why."""


def _entry_problems(name: str, entry: Any) -> list[str]:
    if not isinstance(entry, dict):
        return [f"`apps.{name}` must be a dict of settings, not {type(entry).__name__}"]
    problems: list[str] = []
    known = {**ENTRY_KEYS, **ENTRY_EXTRA}
    for key, value in sorted(entry.items()):
        spec = known.get(key)
        if spec is None:
            close = difflib.get_close_matches(str(key), sorted(known), n=1, cutoff=0.7)
            hint = f" (did you mean `{close[0]}`?)" if close else ""
            problems.append(f"`apps.{name}`: unknown key `{key}`{hint}")
            continue
        if value is None:
            continue
        if not isinstance(value, spec.types) or (
            isinstance(value, bool) and bool not in spec.types
        ):
            wanted = " or ".join(t.__name__ for t in spec.types)
            problems.append(
                f"`apps.{name}.{key}` must be a {wanted} ({spec.help}), "
                f"not {type(value).__name__} {value!r}"
            )
        elif spec.check and (error := spec.check(value)):
            problems.append(f"`apps.{name}.{key}`: {error}")
    basename = entry.get("basename")
    if isinstance(basename, str | None) and (
        problem := basename_problem(name, basename, "the application name")
    ):
        problems.append(f"`apps.{name}`: {problem}")
    return problems


def check_apps(value: Any) -> str | None:
    """The ``apps`` key's value check: names, keys, types (cross-app checks: see
    :func:`app_entries`)."""
    if not value:
        return "give at least one application, or leave `apps` unset"
    problems: list[str] = []
    for name, entry in value.items():
        if not isinstance(name, str) or (error := docker_name(APP_NAME_MAX)(name)):
            problems.append(f"application name {name!r}: {error or 'must be a string'}")
            continue
        problems += _entry_problems(name, entry)
    return "; ".join(problems) or None


APPS_KEYS = KeyTable(
    "Applications",
    (
        KeySpec(
            "apps",
            (dict,),
            "several applications: `{name: {key: value}}`, the `app_*` keys without `app_` "
            "(and `cookie_file`); each gets its own overlay, cookie, agent and check table",
            check=check_apps,
            default_doc="none: the `app_*` keys are the one application",
        ),
        KeySpec(
            "app",
            (str,),
            "`check.py`, `rollout.py`: only this application (a name of `apps`)",
            default_doc="every application",
        ),
    ),
)


@dataclass(frozen=True)
class AppEntry:
    """One application to deploy: its service settings, build directory, cookie file."""

    settings: AppSettings
    build: str
    cookie_file: str | None = None


def _settings(name: str, values: Mapping[str, Any], image: str | None) -> AppSettings:
    def get(key: str) -> Any:
        value = values.get(key)
        return APP_KEYS.default(f"{PREFIX}{key}") if value is None else value

    # basename and network left empty are derived from the name by AppSettings.
    return AppSettings(
        name=name,
        basename=str(get("basename") or ""),
        image=image or str(get("image") or ""),
        replicas=int(get("replicas")),
        env={str(k): str(v) for k, v in dict(get("env")).items()},
        network=str(get("network") or ""),
        network_encrypted=bool(get("network_encrypted")),
        network_attachable=bool(get("network_attachable")),
        subnet=str(get("subnet")),
        user_id=int(get("user_id")),
        cpus=float(get("cpus")),
        memory_mb=int(get("memory_mb")),
        healthcheck=get("healthcheck"),
        dist_tls=bool(get("dist_tls")),
        dist_tls_days=int(get("dist_tls_days")),
    )


def app_entries(
    data: HostDataLike, *, image: str | None = None, only: str | None = None
) -> list[AppEntry]:
    """The inventory's applications, in its order (``only``: that one).

    ``image`` replaces the image of the application(s) returned (``rollout.py``). Raises
    :class:`AppsError` when two applications would share a network or overlapping subnets,
    or when ``only`` names none of them.
    """
    top = {key: data.get(f"{PREFIX}{key}") for key in ENTRY_KEYS}
    apps: dict[str, Any] | None = data.get("apps")
    if not apps:
        name = str(APP_KEYS.value(data, "app_name"))
        entries = [AppEntry(_settings(name, top, image), str(_value(top, "build")))]
    else:
        entries = []
        for name, entry in apps.items():
            values = {**{k: v for k, v in top.items() if v is not None}, **dict(entry)}
            entries.append(
                AppEntry(
                    _settings(name, values, image if only else None),
                    str(_value(values, "build")),
                    entry.get("cookie_file"),
                )
            )
        _check_side_by_side(entries, shared_cookie=bool(data.get("cookie_file")))
    _check_tls_subnets(entries)
    if only is not None:
        entries = [e for e in entries if e.settings.name == only]
        if not entries:
            names = ", ".join(e.settings.name for e in app_entries(data))
            raise AppsError(f"`app={only}`: no such application (the inventory has: {names})")
    return entries


def _value(values: Mapping[str, Any], key: str) -> Any:
    value = values.get(key)
    return APP_KEYS.default(f"{PREFIX}{key}") if value is None else value


def _check_tls_subnets(entries: list[AppEntry]) -> None:
    for e in entries:
        subnet = ipaddress.ip_network(e.settings.subnet, strict=False)
        if e.settings.dist_tls and subnet.num_addresses > TLS_SUBNET_MAX:
            raise AppsError(
                f"application {e.settings.name}: dist_tls needs a subnet of at most "
                f"{TLS_SUBNET_MAX} addresses (a /22), not {subnet}: every address of it is a "
                "name of the nodes' certificate; give the application a smaller subnet"
            )


def _check_side_by_side(entries: list[AppEntry], *, shared_cookie: bool) -> None:
    problems: list[str] = []
    if len(entries) > 1 and shared_cookie:
        problems.append(
            "`cookie_file` would give every application the same cookie: set `cookie_file` "
            "in each entry of `apps` instead"
        )
    seen_networks: dict[str, str] = {}
    seen_subnets: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str]] = []
    for e in entries:
        s = e.settings
        if s.network in seen_networks:
            problems.append(
                f"`apps.{s.name}` and `apps.{seen_networks[s.network]}` share the network "
                f"{s.network}: give each its own `network`"
            )
        seen_networks[s.network] = s.name
        subnet = ipaddress.ip_network(s.subnet, strict=False)
        for other, other_name in seen_subnets:
            if subnet.overlaps(other):
                problems.append(
                    f"`apps.{s.name}` ({subnet}) and `apps.{other_name}` ({other}) have "
                    "overlapping subnets: give each application its own `subnet`"
                )
        seen_subnets.append((subnet, s.name))
    if problems:
        raise AppsError("the applications cannot run side by side:\n  - " + "\n  - ".join(problems))

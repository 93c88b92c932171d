"""The Erlang cookie of a cluster: one Docker secret, made once, rotated only when asked.

The secret is named ``<app>_cookie.v<N>`` and labelled ``io.beamfleet.cookie=<app>`` plus
the content hash (see :mod:`beamfleet.controller.operations.secrets`). The *current* cookie is the
highest version. A run creates ``v1`` when there is none; otherwise it keeps the current
one, unless

* ``rotate_cookie`` is true: a new version is generated, and the services that mount the
  cookie (the application and its agent) roll to it, because their specs name it; or
* ``cookie_file`` names a file on the controller whose content the current version does
  not hold (its salted content-hash label says so): that value becomes the new version
  (same rolling).

Older versions that no service uses any more are removed on the next run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pyinfra.api.deploy import deploy
from pyinfra.api.hiddenvalue import HiddenValue
from pyinfra.context import host

from beamfleet.controller.facts.secrets import SwarmSecrets
from beamfleet.controller.inventory import InventoryValidationError
from beamfleet.controller.operations import secrets
from beamfleet.controller.operations.services import secrets_in_use
from beamfleet.runtime.erlang_dist.cookie import CookieFileError, read_cookie_file

LABEL_COOKIE = "io.beamfleet.cookie"

# CookieFileError is the runtime's: one class for every cookie file beamfleet reads.
__all__ = [
    "LABEL_COOKIE",
    "CookieFileError",
    "CookiePlan",
    "cookie_secret",
    "plan_cookie",
    "read_cookie_value",
]


@dataclass(frozen=True)
class CookiePlan:
    """The cookie secret the services must use, and whether this run creates it."""

    secret: str
    create: bool
    # versions to remove: managed by us, not current, used by no service
    stale: tuple[str, ...] = ()


def _version(name: str, app: str) -> int | None:
    match = re.fullmatch(re.escape(app) + r"_cookie\.v(\d+)", name)
    return int(match.group(1)) if match else None


def plan_cookie(
    app: str,
    existing: dict[str, dict[str, Any]],
    services_using: set[str],
    *,
    rotate: bool = False,
    value: str | None = None,
) -> CookiePlan:
    """Decide the cookie secret's name from the swarm's secrets (pure, unit-tested).

    ``value``: the cookie the user gave (``cookie_file``), compared with the current
    version's labels only (:func:`~beamfleet.controller.operations.secrets.holds_value`).
    """
    versions = {
        v: name
        for name, meta in existing.items()
        if (v := _version(name, app)) is not None and meta["Labels"].get(LABEL_COOKIE) == app
    }
    if not versions:
        return CookiePlan(f"{app}_cookie.v1", create=True)
    latest = max(versions)
    current = versions[latest]
    changed = value is not None and not secrets.holds_value(existing[current]["Labels"], value)
    secret, create = current, False
    if rotate or changed:
        secret, create = f"{app}_cookie.v{latest + 1}", True
    stale = tuple(sorted(n for n in versions.values() if n != secret and n not in services_using))
    return CookiePlan(secret, create, stale)


def read_cookie_value(path: str) -> HiddenValue:
    """The cookie in ``path`` on the controller, wrapped so pyinfra never prints it.

    The file must be private (mode 600) and the cookie strong (16-255 printable ASCII
    characters): the runtime's reader checks both. Its ``CookieFileError`` reaches pyinfra
    as an :class:`InventoryValidationError`, which pyinfra prints as a message, not a trace.
    """
    try:
        value = read_cookie_file(
            path, private=True, strong=True, hint="check the cookie_file setting of the cluster"
        )
    except CookieFileError as exc:
        raise InventoryValidationError([str(exc)]) from exc
    return HiddenValue(value, masked_value="*COOKIE*")  # type: ignore[no-untyped-call]


def cookie_secret(app: str, rotate: bool = False, cookie_file: str | None = None) -> str:
    """Ensure the cookie secret of ``app`` (on the acting manager); return its name."""
    value = read_cookie_value(cookie_file) if cookie_file else None
    plan = plan_cookie(
        app,
        host.get_fact(SwarmSecrets),
        secrets_in_use(),
        rotate=rotate,
        value=value.unmask() if value is not None else None,
    )
    _cookie_operations(app=app, plan=plan, value=value)
    return plan.secret


@deploy("Erlang cookie")
def _cookie_operations(app: str, plan: CookiePlan, value: HiddenValue | None) -> None:
    for old in plan.stale:
        secrets.absent(name=f"Remove unused cookie {old}", secret=old)
    secrets.secret(
        name=f"Cookie secret {plan.secret}" + ("" if plan.create else " (current)"),
        secret=plan.secret,
        value=value,
        labels={LABEL_COOKIE: app},
    )

"""TLS distribution for an application on Swarm (``app_dist_tls: true``).

The acting manager keeps a CA per application (``/var/lib/beamfleet/tls/<app>``, root
only; made the first time, never printed, like the cookie) and issues from it, with
openssl, short-lived certificates as Docker secrets:

* ``<app>_dist_node.v<N>``: the nodes' certificate and key in one PEM file (0400, the
  image's user). Every address of the application's subnet is one of its names: OTP checks
  a node's certificate against the host part of its name, and a task's address is only
  known when it starts. So a node proves it belongs to the application (its CA) and to
  the subnet; all tasks share it.
* ``<app>_dist_agent.v<N>``: the agent's (a client: it connects, it is never connected to).
* ``<app>_dist_ca.v<N>``: the CA certificate the nodes and the agent trust.

Nodes run ``-proto_dist inet_tls`` with verification both ways (``verify_peer``,
``fail_if_no_peer_cert``) and TLS 1.3 only; the image's entrypoint writes the options
file (paths only). A new version is issued when none exists, when a third of the
lifetime is left, or with ``rotate_dist_tls: true``; the services then roll to it, gated
on the mesh (old and new certificates share the CA). The CA's own certificate is renewed
(same key) when it would expire within a third of a lifetime after a new certificate, or
with ``renew_dist_ca: true``: what it signed stays valid, so that roll is gated too.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pyinfra.api.deploy import deploy
from pyinfra.context import host
from pyinfra.operations import apt

from beamfleet.controller.facts.dist_tls import DistTlsCerts, DistTlsState
from beamfleet.controller.facts.secrets import SwarmSecrets
from beamfleet.controller.operations import dist_tls, secrets
from beamfleet.controller.operations.services import secrets_in_use

TLS_ROOT = "/var/lib/beamfleet/tls"
CA_DAYS = 3650
# Where the secrets are mounted in the application's and the agent's containers.
NODE_BUNDLE_PATH = "/run/secrets/dist_node.pem"
AGENT_BUNDLE_PATH = "/run/secrets/dist_agent.pem"
CA_PATH = "/run/secrets/dist_ca.pem"
DAY = 86_400


def probe_tls(dist_tls: bool) -> tuple[tuple[str, str], ...]:
    """The agent container's certificate paths for a look at the mesh (``()``: plain)."""
    if not dist_tls:
        return ()
    return (("cert", AGENT_BUNDLE_PATH), ("key", AGENT_BUNDLE_PATH), ("ca", CA_PATH))


@dataclass(frozen=True)
class DistTlsSecrets:
    """The secrets of one version of an application's certificates."""

    app: str
    version: int
    not_after: int | None = None  # the node certificate's expiry, when known

    @property
    def ca(self) -> str:
        return f"{self.app}_dist_ca.v{self.version}"

    @property
    def node(self) -> str:
        return f"{self.app}_dist_node.v{self.version}"

    @property
    def agent(self) -> str:
        return f"{self.app}_dist_agent.v{self.version}"


@dataclass(frozen=True)
class DistTlsPlan:
    secrets: DistTlsSecrets
    issue: str | None  # why a new version is issued, or None
    renew_ca: bool = False  # the CA gets a new certificate (same key) first


def plan_dist_tls(
    app: str,
    certs: DistTlsCerts,
    *,
    now: float,
    days: int,
    rotate: bool,
    renew_ca: bool = False,
) -> DistTlsPlan:
    """Which version the services use, whether to issue it first, and whether to renew
    the CA's certificate before (pure).

    A new version when there is none, on ``rotate``, when a third of ``days`` or less is
    left on the node or agent certificate, or when the CA is renewed: on ``renew_ca``, or
    when it would expire before a new certificate (a third of ``days`` ahead of it). The
    CA keeps its key, so what it signed before stays valid: the roll stays gated.
    """
    left = [t - now for t in (certs.node_not_after, certs.agent_not_after) if t is not None]
    ca_left = None if certs.ca_not_after is None else certs.ca_not_after - now
    renew = certs.version > 0 and (
        renew_ca or (ca_left is not None and ca_left <= days * DAY * 4 / 3)
    )
    reason: str | None = None
    if certs.version == 0:
        reason = "no certificates yet"
    elif renew:
        days_left = max(0, int((ca_left or 0) // DAY))
        reason = "renew_dist_ca" if renew_ca else f"the CA expires in {days_left} days"
        reason += ": the CA's certificate renewed, same key"
    elif rotate:
        reason = "rotate_dist_tls"
    elif len(left) < 2:
        reason = "a certificate of the current version is missing"
    elif min(left) <= days * DAY / 3:
        reason = f"{max(0, int(min(left) // DAY))} days left"
    if reason is None:
        return DistTlsPlan(DistTlsSecrets(app, certs.version, certs.node_not_after), None)
    version = certs.version + 1
    return DistTlsPlan(DistTlsSecrets(app, version, int(now) + days * DAY), reason, renew)


def tls_directory(app: str) -> str:
    """Where the acting manager keeps ``app``'s CA and certificates."""
    return f"{TLS_ROOT}/{app}"


def describe_certificates(certs: DistTlsCerts, *, now: float) -> str:
    """One line for check.py: the version in use and when its certificates expire."""
    if certs.version == 0:
        return "TLS distribution: no certificates on this manager (run deploys/cluster.py)"

    def until(stamp: int | None) -> str:
        if stamp is None:
            return "missing"
        day = time.strftime("%Y-%m-%d", time.gmtime(stamp))
        return f"{day} ({(stamp - now) / DAY:.0f} days)"

    return (
        f"TLS distribution certificates v{certs.version}: the nodes' expire "
        f"{until(certs.node_not_after)}, the agent's {until(certs.agent_not_after)}, "
        f"the CA {until(certs.ca_not_after)}"
    )


def stale_secrets(
    app: str, current: DistTlsSecrets, existing: Iterable[str], in_use: set[str]
) -> list[str]:
    """Earlier versions' secrets of ``app`` that no service mounts any more (pure)."""
    keep = {current.ca, current.node, current.agent}
    prefixes = tuple(f"{app}_dist_{role}.v" for role in ("ca", "node", "agent"))
    return sorted(
        name
        for name in existing
        if name.startswith(prefixes) and name not in keep and name not in in_use
    )


def dist_tls_secrets(
    app: str, subnet: str, days: int, rotate: bool, renew_ca: bool = False
) -> DistTlsSecrets:
    """Ensure ``app``'s certificates on the acting manager; return the secrets to mount.

    Earlier versions no service mounts any more are removed (the ones the services still
    mount go on the run after they rolled).
    """
    directory = tls_directory(app)
    plan = plan_dist_tls(
        app, host.get_fact(DistTlsState, directory=directory), now=time.time(), days=days,
        rotate=rotate, renew_ca=renew_ca,
    )  # fmt: skip
    existing: dict[str, dict[str, Any]] = host.get_fact(SwarmSecrets)
    for old in stale_secrets(app, plan.secrets, existing, secrets_in_use()):
        secrets.absent(name=f"Remove unused certificate secret {old}", secret=old)
    if plan.issue is not None:
        _issue(app=app, directory=directory, plan=plan, subnet=subnet, days=days)
    return plan.secrets


@deploy("TLS distribution")
def _issue(app: str, directory: str, plan: DistTlsPlan, subnet: str, days: int) -> None:
    apt.packages(name="openssl (makes the certificates)", packages=["openssl"])
    dist_tls.certificates_issued(
        name=f"Certificates {plan.secrets.node}, {plan.secrets.agent} ({plan.issue})",
        app=app, directory=directory, version=plan.secrets.version, subnet=subnet,
        days=days, ca_days=CA_DAYS, renew_ca=plan.renew_ca,
    )  # fmt: skip

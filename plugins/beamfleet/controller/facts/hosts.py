"""Facts of host mode: what a host has of an application, read in one round trip.

:class:`HostState` runs ``assets/remote/host_state.sh``: the host's name and addresses,
the installed and current releases, the runtime in use, a salted digest of the cookie
(never the cookie), the digests of the files beamfleet writes, and its units' states.
The deploy compares these with what it would write, while it plans: an unchanged host
gets no operation at all.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from pyinfra.api.facts import FactBase
from typing_extensions import override

from beamfleet.controller.remote_scripts import script_shell


@dataclass(frozen=True)
class HostState:
    """One host as host mode sees it (see :func:`parse_host_state`)."""

    hostname: str = ""
    addresses: tuple[ipaddress.IPv4Interface, ...] = ()
    current: str | None = None
    releases: frozenset[str] = frozenset()
    runtime: str | None = None
    cookie_digest: str | None = None
    files: dict[str, str] = field(default_factory=dict)
    active: dict[str, str] = field(default_factory=dict)
    epmd: str | None = None

    def addresses_in(self, network: ipaddress.IPv4Network) -> list[str]:
        """This host's addresses inside ``network``."""
        return [str(a.ip) for a in self.addresses if a.ip in network]

    def is_active(self, unit: str) -> bool:
        return self.active.get(unit) == "active"


def parse_host_state(lines: list[str]) -> HostState:
    """Parse ``host_state.sh`` output; unknown or malformed lines are ignored."""
    values: dict[str, Any] = {"addresses": [], "releases": set(), "files": {}, "active": {}}
    for line in lines:
        tag, _, rest = line.strip().partition(" ")
        words = rest.split()
        if tag == "hostname" and words:
            values["hostname"] = words[0]
        elif tag == "addr" and words:
            try:
                values["addresses"].append(ipaddress.IPv4Interface(words[0]))
            except ValueError:
                continue
        elif tag in ("current", "runtime", "epmd") and words:
            values[tag] = words[0]
        elif tag == "release" and words:
            values["releases"].add(words[0])
        elif tag == "cookie" and words:
            values["cookie_digest"] = words[0]
        elif tag == "file" and len(words) == 2:
            values["files"][words[0]] = words[1]
        elif tag == "active" and len(words) == 2:
            values["active"][words[0]] = words[1]
    return HostState(
        hostname=values.get("hostname", ""),
        addresses=tuple(values["addresses"]),
        current=values.get("current"),
        releases=frozenset(values["releases"]),
        runtime=values.get("runtime"),
        cookie_digest=values.get("cookie_digest"),
        files=values["files"],
        active=values["active"],
        epmd=values.get("epmd"),
    )


class HostModeState(FactBase[HostState]):
    """
    What a host has of one application in host mode.

    + app_dir: the application's directory (``/opt/beamfleet/apps/<app>``)
    + cookie: the cookie file's path
    + salt: mixed into the cookie's digest (a fresh one per run)
    + files: the files whose SHA-256 to report
    + units: the systemd units whose state to report

    .. code:: python

        state = host.get_fact(HostModeState, app_dir="/opt/beamfleet/apps/demo",
                              cookie="/etc/beamfleet/demo/cookie", salt=salt,
                              files=paths.files(), units=("beamfleet-demo.service",))
    """

    @override
    def command(
        self,
        app_dir: str,
        cookie: str,
        salt: str,
        files: tuple[str, ...],
        units: tuple[str, ...],
    ) -> str:
        return script_shell("host_state.sh", app_dir, cookie, salt, *files, "--", *units)

    @override
    @staticmethod
    def default() -> HostState:
        return HostState()

    @override
    def process(self, output: list[str]) -> HostState:
        return parse_host_state(output)

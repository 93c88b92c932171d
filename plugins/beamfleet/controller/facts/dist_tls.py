"""The TLS distribution certificates of an application, as its manager keeps them."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from typing import Any

from pyinfra.api.facts import FactBase
from typing_extensions import override

from beamfleet.controller.remote_scripts import script_text


@dataclass(frozen=True)
class DistTlsCerts:
    """The current certificates' version (0: none yet) and expiry times (epoch seconds)."""

    version: int = 0
    node_not_after: int | None = None
    agent_not_after: int | None = None
    ca_not_after: int | None = None
    hosts: tuple[str, ...] = ()  # host mode: the hosts this version has certificates for


class DistTlsState(FactBase[DistTlsCerts]):
    """
    The version and expiry of an application's distribution certificates on this manager
    (``assets/remote/dist_tls.py state``; it reads certificates, never keys).

    + directory: where the application's CA and certificates are kept

    .. code:: python

        certs = host.get_fact(DistTlsState, directory="/var/lib/beamfleet/tls/demo")
    """

    @override
    def requires_command(self, directory: str) -> str:
        return "python3"

    @override
    def command(self, directory: str) -> str:
        return shlex.join(["python3", "-c", script_text("dist_tls.py"), "state", directory])

    @override
    @staticmethod
    def default() -> DistTlsCerts:
        return DistTlsCerts()

    @override
    def process(self, output: list[str]) -> DistTlsCerts:
        raw: dict[str, Any] = json.loads(output[-1])
        return DistTlsCerts(
            version=int(raw.get("version") or 0),
            node_not_after=raw.get("node_not_after"),
            agent_not_after=raw.get("agent_not_after"),
            ca_not_after=raw.get("ca_not_after"),
            hosts=tuple(raw.get("hosts") or ()),
        )

"""The base of the facts that read every object of one kind from a swarm manager.

Each of them runs ``assets/remote/docker_read.sh KIND`` (``[]`` on a host that is not a
manager or has no Docker) and indexes the JSON list by name; a subclass names its kind
and says what the name of an object is.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

from pyinfra.api.facts import FactBase
from typing_extensions import override

from beamfleet.controller.remote_scripts import script_shell


class SwarmObjects(FactBase[dict[str, dict[str, Any]]]):
    """Every object of ``kind`` the swarm holds, by name; ``{}`` off a manager."""

    kind: ClassVar[str]

    @override
    def requires_command(self) -> str:
        return "docker"

    @override
    def command(self) -> str:
        return script_shell("docker_read.sh", self.kind)

    @override
    @staticmethod
    def default() -> dict[str, dict[str, Any]]:
        return {}

    @override
    def process(self, output: list[str]) -> dict[str, dict[str, Any]]:
        return self.by_name(json.loads("".join(output)))

    def by_name(self, inspected: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """``{name: object}`` from the inspected objects."""
        raise NotImplementedError

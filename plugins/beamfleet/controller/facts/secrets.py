"""Facts about the swarm's Docker secrets: their names, IDs and labels, never their data.

The Docker Engine never returns a secret's value (``docker secret inspect`` shows only
its metadata), so these facts are safe to print. beamfleet marks each secret it manages
with labels: :data:`LABEL_CONTENT_HASH` (a salted hash of the value, so a changed value is
seen without reading it), :data:`LABEL_CONTENT_SALT` (its random salt: the label of one
value differs from secret to secret, and says nothing a precomputed table could look up)
and the owner labels set by the deploy.
"""

from __future__ import annotations

from typing import Any

from typing_extensions import override

from beamfleet.controller.facts.docker_objects import SwarmObjects

LABEL_CONTENT_HASH = "io.beamfleet.content-hash"
LABEL_CONTENT_SALT = "io.beamfleet.content-salt"


class SwarmSecrets(SwarmObjects):
    """
    Every secret of the swarm by name: ``{"ID": ..., "Labels": {...}, "CreatedAt": ...}``.

    ``{}`` on a host that is not a manager or has no Docker.

    .. code:: python

        secrets = host.get_fact(SwarmSecrets)
        if "demo_cookie.v1" in secrets: ...
    """

    kind = "secrets"

    @override
    def by_name(self, inspected: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        return parse_secrets(inspected)


def parse_secrets(inspected: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Reduce ``docker secret inspect`` output to ``{name: {ID, Labels, CreatedAt}}``."""
    result: dict[str, dict[str, Any]] = {}
    for item in inspected:
        spec = item.get("Spec") or {}
        result[str(spec.get("Name"))] = {
            "ID": item.get("ID"),
            "Labels": dict(spec.get("Labels") or {}),
            "CreatedAt": item.get("CreatedAt"),
        }
    return result

"""Google Compute Engine metadata server emulator.

Documented behaviour (cloud.google.com/compute/docs/metadata/querying-metadata):
``GET /computeMetadata/v1/<path>`` needs ``Metadata-Flavor: Google`` (403 without it,
and 403 for a request carrying ``X-Forwarded-For``); answers carry
``Metadata-Flavor: Google``. Served: ``instance/network-interfaces/0/ip``,
``instance/hostname``, ``instance/id``.
"""

from __future__ import annotations

from beamfleet_lab.emulators.base import MetadataEmulator, Request, Response, not_found

FLAVOR = {"Metadata-Flavor": "Google"}


class GcpMetadataEmulator(MetadataEmulator):
    provider = "gcp"

    def __init__(self, ip: str = "10.230.11.5") -> None:
        super().__init__()
        self.ip = ip

    def respond(self, request: Request) -> Response:
        if request.header("metadata-flavor") != "Google" or request.header("x-forwarded-for"):
            return Response(
                403,
                "Missing required header: Metadata-Flavor\n",
                content_type="text/html; charset=UTF-8",
            )
        data = {
            "/computeMetadata/v1/instance/network-interfaces/0/ip": self.ip,
            "/computeMetadata/v1/instance/hostname": "vm-1.c.project.internal",
            "/computeMetadata/v1/instance/id": "1234567890123456789",
        }
        if request.path in data:
            return Response(
                200, data[request.path], content_type="application/text", headers=FLAVOR
            )
        return not_found()

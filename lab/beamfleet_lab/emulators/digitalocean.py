"""DigitalOcean droplet metadata emulator.

Documented endpoints (docs.digitalocean.com/reference/api/metadata-api/), plain text, no
header needed: ``/metadata/v1/interfaces/private/0/ipv4/address``,
``/metadata/v1/interfaces/public/0/ipv4/address``, ``/metadata/v1/hostname``,
``/metadata/v1/id``.
"""

from __future__ import annotations

from beamfleet_lab.emulators.base import MetadataEmulator, Request, Response, not_found


class DigitalOceanMetadataEmulator(MetadataEmulator):
    provider = "digitalocean"

    def __init__(
        self, private_ipv4: str = "10.230.13.5", public_ipv4: str = "203.0.113.13"
    ) -> None:
        super().__init__()
        self.private_ipv4 = private_ipv4
        self.public_ipv4 = public_ipv4

    def respond(self, request: Request) -> Response:
        data = {
            "/metadata/v1/interfaces/private/0/ipv4/address": self.private_ipv4,
            "/metadata/v1/interfaces/public/0/ipv4/address": self.public_ipv4,
            "/metadata/v1/hostname": "droplet-1",
            "/metadata/v1/id": "123456789",
        }
        return Response(200, data[request.path]) if request.path in data else not_found()

"""Azure Instance Metadata Service (IMDS) emulator.

Documented behaviour (learn.microsoft.com/azure/virtual-machines/instance-metadata-service):
every request needs ``Metadata: true`` (400 ``Required metadata header not specified``
without it) and an ``api-version`` query parameter (400 without it, or with an unknown
one, listing ``newest-versions``). Leaf nodes must be asked with ``format=text``
(the default format is JSON, which leaf nodes do not support: 400).
Served: ``/metadata/instance/network/interface/0/ipv4/ipAddress/0/privateIpAddress``
(and ``.../ipv6/ipAddress/0/privateIpAddress`` when set).
"""

from __future__ import annotations

import json

from beamfleet_lab.emulators.base import MetadataEmulator, Request, Response, not_found

API_VERSIONS = ("2019-06-01", "2020-09-01", "2021-02-01", "2021-12-13", "2023-07-01")
IFACE = "/metadata/instance/network/interface/0"


def _bad(message: str, **extra: object) -> Response:
    return Response(400, json.dumps({"error": message, **extra}), content_type="application/json")


class AzureImdsEmulator(MetadataEmulator):
    provider = "azure"

    def __init__(
        self, private_ipv4: str = "10.230.12.5", *, private_ipv6: str | None = None
    ) -> None:
        super().__init__()
        self.private_ipv4 = private_ipv4
        self.private_ipv6 = private_ipv6

    def respond(self, request: Request) -> Response:
        if request.header("metadata") != "true":
            return _bad("Bad request. Required metadata header not specified")
        version = request.query.get("api-version", [""])[0]
        if version not in API_VERSIONS:
            what = "was not specified in the request" if not version else "is invalid"
            return _bad(
                f"Bad request. api-version {what}. For more information refer to aka.ms/azureimds",
                **{"newest-versions": list(API_VERSIONS[-3:])},
            )
        leaves = {f"{IFACE}/ipv4/ipAddress/0/privateIpAddress": self.private_ipv4}
        if self.private_ipv6:
            leaves[f"{IFACE}/ipv6/ipAddress/0/privateIpAddress"] = self.private_ipv6
        if request.path not in leaves:
            return not_found()
        if request.query.get("format", ["json"])[0] != "text":
            return _bad("Bad request. Leaf nodes only support format=text")
        return Response(200, leaves[request.path])

"""OpenStack (Nova) metadata service emulator.

Documented endpoints (docs.openstack.org/nova/latest/user/metadata.html):
``/openstack/latest/meta_data.json`` (uuid, name, hostname, ...: no address in it),
``/openstack/latest/network_data.json`` and the EC2-compatible
``/latest/meta-data/local-ipv4`` (plain text, no token), which is what the ``openstack``
source reads.
"""

from __future__ import annotations

import json

from beamfleet_lab.emulators.base import MetadataEmulator, Request, Response, not_found


class OpenStackMetadataEmulator(MetadataEmulator):
    provider = "openstack"

    def __init__(self, local_ipv4: str = "10.230.14.5") -> None:
        super().__init__()
        self.local_ipv4 = local_ipv4

    def respond(self, request: Request) -> Response:
        if request.path == "/latest/meta-data/local-ipv4":
            return Response(200, self.local_ipv4)
        if request.path == "/openstack/latest/meta_data.json":
            body = {
                "uuid": "d8e02d56-2648-49a3-bf97-6be8f1204f38",
                "name": "vm-1",
                "hostname": "vm-1.novalocal",
                "availability_zone": "nova",
                "project_id": "f7ac731cc11f40efbc03a9f9e1d1d21f",
                "launch_index": 0,
            }
            return Response(200, json.dumps(body), content_type="application/json")
        if request.path == "/openstack/latest/network_data.json":
            body = {
                "links": [
                    {
                        "id": "tap0",
                        "type": "ovs",
                        "ethernet_mac_address": "fa:16:3e:00:00:01",
                        "mtu": 1450,
                    }
                ],
                "networks": [
                    {
                        "id": "network0",
                        "link": "tap0",
                        "type": "ipv4",
                        "ip_address": self.local_ipv4,
                        "netmask": "255.255.255.0",
                        "network_id": "net-1",
                    }
                ],
                "services": [],
            }
            return Response(200, json.dumps(body), content_type="application/json")
        return not_found()

"""Emulators of metadata APIs (Rancher 1.x, AWS IMDSv2, GCP, Azure IMDS, DigitalOcean,
OpenStack) for tests: small stdlib HTTP servers on 127.0.0.1, each following its
provider's documented endpoints, headers and token flow. They are emulators, not the
real services; every real component (erl, dnsmasq, Swarm) is started for real.
"""

from beamfleet_lab.emulators.aws import AwsImdsEmulator
from beamfleet_lab.emulators.azure import AzureImdsEmulator
from beamfleet_lab.emulators.base import MetadataEmulator, Request, Response
from beamfleet_lab.emulators.digitalocean import DigitalOceanMetadataEmulator
from beamfleet_lab.emulators.gcp import GcpMetadataEmulator
from beamfleet_lab.emulators.openstack import OpenStackMetadataEmulator
from beamfleet_lab.emulators.rancher import RancherMetadataEmulator, rancher_container

__all__ = [
    "AwsImdsEmulator",
    "AzureImdsEmulator",
    "DigitalOceanMetadataEmulator",
    "GcpMetadataEmulator",
    "MetadataEmulator",
    "OpenStackMetadataEmulator",
    "RancherMetadataEmulator",
    "Request",
    "Response",
    "rancher_container",
]

"""The cloud metadata emulators follow their providers' documented headers and flows."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request

from beamfleet_lab.emulators import (
    AwsImdsEmulator,
    AzureImdsEmulator,
    DigitalOceanMetadataEmulator,
    GcpMetadataEmulator,
    OpenStackMetadataEmulator,
)


def call(url: str, headers: dict[str, str] | None = None,
         method: str = "GET") -> tuple[int, str, dict[str, str]]:
    request = urllib.request.Request(url, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as r:
            return r.status, r.read().decode(), dict(r.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(), dict(exc.headers)


def test_aws_imdsv2_token_flow() -> None:
    with AwsImdsEmulator("10.230.10.5", ipv6="fd00:230::10") as imds:
        status, token, headers = call(f"{imds.url}/latest/api/token",
                                      {"X-aws-ec2-metadata-token-ttl-seconds": "21600"}, "PUT")
        assert status == 200 and len(token) > 20
        assert headers["X-aws-ec2-metadata-token-ttl-seconds"] == "21600"
        assert call(f"{imds.url}/latest/api/token",
                    {"X-aws-ec2-metadata-token-ttl-seconds": "21601"}, "PUT")[0] == 400
        assert call(f"{imds.url}/latest/api/token", {
            "X-aws-ec2-metadata-token-ttl-seconds": "60", "X-Forwarded-For": "1.2.3.4"},
            "PUT")[0] == 403
        auth = {"X-aws-ec2-metadata-token": token}
        assert call(f"{imds.url}/latest/meta-data/local-ipv4", auth)[:2] == (200, "10.230.10.5")
        assert call(f"{imds.url}/latest/meta-data/ipv6", auth)[:2] == (200, "fd00:230::10")
        assert "local-ipv4" in call(f"{imds.url}/latest/meta-data/", auth)[1].split()
        assert call(f"{imds.url}/latest/meta-data/local-ipv4")[0] == 401
    with AwsImdsEmulator("10.230.10.6", tokens_required=False) as imdsv1:
        assert call(f"{imdsv1.url}/latest/meta-data/local-ipv4")[:2] == (200, "10.230.10.6")


def test_gcp_requires_and_returns_metadata_flavor() -> None:
    with GcpMetadataEmulator("10.230.11.5") as gcp:
        url = f"{gcp.url}/computeMetadata/v1/instance/network-interfaces/0/ip"
        status, body, headers = call(url, {"Metadata-Flavor": "Google"})
        assert (status, body, headers["Metadata-Flavor"]) == (200, "10.230.11.5", "Google")
        assert call(url)[0] == 403
        assert call(url, {"Metadata-Flavor": "Google", "X-Forwarded-For": "1.2.3.4"})[0] == 403


def test_azure_error_bodies_name_what_is_missing() -> None:
    with AzureImdsEmulator("10.230.12.5", private_ipv6="fd00:230::12") as az:
        base = f"{az.url}/metadata/instance/network/interface/0"
        status, body, _ = call(f"{base}/ipv4/ipAddress/0/privateIpAddress?api-version=2021-02-01"
                               "&format=text")
        assert status == 400 and "Required metadata header" in json.loads(body)["error"]
        status, body, _ = call(f"{base}/ipv4/ipAddress/0/privateIpAddress?format=text",
                               {"Metadata": "true"})
        assert status == 400 and json.loads(body)["newest-versions"]
        assert call(f"{base}/ipv6/ipAddress/0/privateIpAddress?api-version=2021-02-01"
                    "&format=text", {"Metadata": "true"})[:2] == (200, "fd00:230::12")


def test_digitalocean_and_openstack_documents() -> None:
    with DigitalOceanMetadataEmulator("10.230.13.5") as do, \
            OpenStackMetadataEmulator("10.230.14.5") as os_:
        assert call(f"{do.url}/metadata/v1/interfaces/private/0/ipv4/address")[:2] == (
            200, "10.230.13.5")
        assert call(f"{do.url}/metadata/v1/nope")[0] == 404
        meta = json.loads(call(f"{os_.url}/openstack/latest/meta_data.json")[1])
        assert {"uuid", "name", "hostname"} <= set(meta)
        net = json.loads(call(f"{os_.url}/openstack/latest/network_data.json")[1])
        assert net["networks"][0]["ip_address"] == "10.230.14.5"
        assert call(f"{os_.url}/latest/meta-data/local-ipv4")[:2] == (200, "10.230.14.5")


def test_stop_releases_the_port() -> None:
    emulator = DigitalOceanMetadataEmulator().start()
    port = emulator.port
    emulator.stop()
    emulator.stop()  # idempotent
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0

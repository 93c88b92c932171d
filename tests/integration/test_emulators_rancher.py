"""The Rancher 1.x metadata emulator answers as the documented service does."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from beamfleet_lab.emulators import RancherMetadataEmulator, rancher_container


def get(url: str, *, as_json: bool = False) -> tuple[int, str]:
    headers = {"Accept": "application/json"} if as_json else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.fixture
def rancher():
    with RancherMetadataEmulator(
        [rancher_container("app-1", "10.230.42.5"), rancher_container("app-2", "10.230.42.6")],
        self_name="app-2",
    ) as emulator:
        yield emulator


def test_self_container_primary_ip_is_plain_text(rancher) -> None:
    assert get(f"{rancher.url}/latest/self/container/primary_ip") == (200, "10.230.42.6")
    assert get(f"{rancher.url}/2015-12-19/self/container/name") == (200, "app-2")


def test_text_listings_follow_the_documented_shapes(rancher) -> None:
    status, body = get(f"{rancher.url}/latest/self/service/containers")
    assert (status, body) == (200, "0=app-1\n1=app-2\n")
    status, body = get(f"{rancher.url}/latest/self")
    assert body.splitlines() == ["container/", "host/", "service/", "stack/"]
    assert get(f"{rancher.url}/latest/self/service/containers/app-1/ips/0") == (200, "10.230.42.5")


def test_self_service_json_lists_container_objects_and_follows_runtime_changes(rancher) -> None:
    status, body = get(f"{rancher.url}/latest/self/service", as_json=True)
    assert status == 200
    service = json.loads(body)
    assert service["name"] == "app" and service["stack_name"] == "demo"
    assert [(c["name"], c["ips"], c["state"]) for c in service["containers"]] == [
        ("app-1", ["10.230.42.5"], "running"),
        ("app-2", ["10.230.42.6"], "running"),
    ]
    rancher.set_containers([
        rancher_container("app-3", "10.230.42.7", health_state="unhealthy"),
        rancher_container("app-4", None),
        rancher_container("app-5", "10.230.42.9", omit=("ips",)),
    ])
    containers = json.loads(get(f"{rancher.url}/latest/self/service", as_json=True)[1])[
        "containers"
    ]
    assert [c["name"] for c in containers] == ["app-3", "app-4", "app-5"]
    assert containers[0]["health_state"] == "unhealthy"
    assert "ips" not in containers[1] and "primary_ip" not in containers[1]
    assert "ips" not in containers[2] and containers[2]["primary_ip"] == "10.230.42.9"
    # app-2 left the service: "self" is no longer there
    assert get(f"{rancher.url}/latest/self/container/primary_ip")[0] == 404


def test_oldest_version_lists_names_and_unknown_paths_are_404(rancher) -> None:
    body = json.loads(get(f"{rancher.url}/2015-07-25/self/service", as_json=True)[1])
    assert body["containers"] == ["app-1", "app-2"]
    assert get(f"{rancher.url}/latest/self/nothing") == (404, "Not found\n")
    assert get(f"{rancher.url}/1999-01-01/self")[0] == 404
    status, body = get(f"{rancher.url}/latest/self/nothing", as_json=True)
    assert status == 404 and json.loads(body)["message"] == "Not found"


def test_fault_injection(rancher) -> None:
    rancher.fail_next(1, 503)
    assert get(f"{rancher.url}/latest/self/container/primary_ip")[0] == 503
    assert get(f"{rancher.url}/latest/self/container/primary_ip")[0] == 200
    rancher.set_fault(500)
    assert get(f"{rancher.url}/latest/self/service", as_json=True)[0] == 500
    rancher.set_fault(None)
    assert get(f"{rancher.url}/latest/self/service", as_json=True)[0] == 200
    assert rancher.requests[-1].header("accept") == "application/json"

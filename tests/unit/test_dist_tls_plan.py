"""TLS distribution on Swarm: when certificates are issued, and what the services mount."""

from __future__ import annotations

import pytest

from beamfleet.controller.deploys import images
from beamfleet.controller.deploys.agent import AgentSettings, agent_spec
from beamfleet.controller.deploys.app import AppSettings, app_spec
from beamfleet.controller.deploys.apps import AppsError, app_entries
from beamfleet.controller.deploys.cluster import ImageTlsError, check_image_tls
from beamfleet.controller.deploys.dist_tls import (
    DAY,
    DistTlsSecrets,
    describe_certificates,
    plan_dist_tls,
    stale_secrets,
)
from beamfleet.controller.facts.dist_tls import DistTlsCerts
from beamfleet.controller.release_image import ReleaseLayout

NOW = 1_800_000_000.0


def certs(version: int, node_days: float, ca_days: float = 3000) -> DistTlsCerts:
    return DistTlsCerts(
        version=version,
        node_not_after=int(NOW + node_days * DAY),
        agent_not_after=int(NOW + node_days * DAY),
        ca_not_after=int(NOW + ca_days * DAY),
    )


def test_the_first_run_issues_version_one() -> None:
    plan = plan_dist_tls("demo", DistTlsCerts(), now=NOW, days=30, rotate=False)
    assert plan.issue == "no certificates yet"
    assert (plan.secrets.node, plan.secrets.agent, plan.secrets.ca) == (
        "demo_dist_node.v1", "demo_dist_agent.v1", "demo_dist_ca.v1",
    )  # fmt: skip


def test_a_fresh_version_is_kept_and_one_with_a_third_left_is_renewed() -> None:
    kept = plan_dist_tls("demo", certs(3, node_days=25), now=NOW, days=30, rotate=False)
    assert kept.issue is None and kept.secrets.version == 3
    renewed = plan_dist_tls("demo", certs(3, node_days=9), now=NOW, days=30, rotate=False)
    assert renewed.issue == "9 days left" and renewed.secrets.version == 4


def test_rotation_and_a_missing_certificate_issue_a_new_version() -> None:
    assert plan_dist_tls("demo", certs(2, 29), now=NOW, days=30, rotate=True).issue == (
        "rotate_dist_tls"
    )
    gone = DistTlsCerts(version=2, node_not_after=None, agent_not_after=int(NOW + 9e5))
    assert "missing" in (plan_dist_tls("demo", gone, now=NOW, days=30, rotate=False).issue or "")


def test_a_ca_near_its_end_is_renewed_with_a_new_version() -> None:
    """30-day certificates: a CA with 39 days left (less than 40, a certificate's lifetime
    and a third) gets a new certificate, same key, and every certificate a new version."""
    plan = plan_dist_tls("demo", certs(2, 29, ca_days=39), now=NOW, days=30, rotate=False)
    assert plan.renew_ca and plan.secrets.version == 3
    assert plan.issue == "the CA expires in 39 days: the CA's certificate renewed, same key"
    kept = plan_dist_tls("demo", certs(2, 29, ca_days=41), now=NOW, days=30, rotate=False)
    assert not kept.renew_ca and kept.issue is None
    asked = plan_dist_tls("demo", certs(2, 29), now=NOW, days=30, rotate=False, renew_ca=True)
    assert asked.renew_ca and asked.issue is not None and asked.issue.startswith("renew_dist_ca")
    # nothing to renew before there is a CA
    first = plan_dist_tls("demo", DistTlsCerts(), now=NOW, days=30, rotate=False, renew_ca=True)
    assert not first.renew_ca and first.issue == "no certificates yet"


def test_tls_services_mount_the_certificates_and_pass_paths_only() -> None:
    tls = DistTlsSecrets("demo", 2)
    app = AppSettings(name="demo", image="demo:1", tls=tls)
    spec = app_spec(app, "demo_cookie.v1")
    container = spec["TaskTemplate"]["ContainerSpec"]
    mounted = {s["SecretName"]: s["File"] for s in container["Secrets"]}
    assert mounted["demo_dist_node.v2"] == {
        "Name": "dist_node.pem", "UID": "10001", "GID": "10001", "Mode": 0o400,
    }  # fmt: skip
    assert mounted["demo_dist_ca.v2"]["Mode"] == 0o444
    assert "BEAMFLEET_DIST_TLS_CERT=/run/secrets/dist_node.pem" in container["Env"]
    agent = agent_spec(app, AgentSettings(image="agent:1"), "demo_cookie.v1")
    args = agent["TaskTemplate"]["ContainerSpec"]["Args"]  # type: ignore[index]
    assert args[args.index("--tls-cert") + 1] == "/run/secrets/dist_agent.pem"
    plain = app_spec(AppSettings(name="demo", image="demo:1"), "demo_cookie.v1")
    assert not any("DIST_TLS" in e for e in plain["TaskTemplate"]["ContainerSpec"]["Env"])


def test_tls_needs_a_subnet_whose_addresses_fit_in_a_certificate() -> None:
    data = {"app_dist_tls": True, "app_subnet": "10.234.0.0/16"}
    with pytest.raises(AppsError, match=r"dist_tls needs a subnet of at most 1024 addresses"):
        app_entries(data)
    assert app_entries({"app_dist_tls": True, "app_subnet": "10.234.0.0/22"})


def test_check_reports_when_the_certificates_expire() -> None:
    line = describe_certificates(certs(2, node_days=20), now=NOW)
    assert line.startswith("TLS distribution certificates v2: the nodes' expire 2027-02-04")
    assert "(20 days)" in line and "the CA " in line
    assert "no certificates" in describe_certificates(DistTlsCerts(), now=NOW)


def test_earlier_versions_no_service_mounts_are_stale() -> None:
    current = DistTlsSecrets("demo", 3)
    existing = [
        "demo_dist_ca.v1", "demo_dist_node.v1", "demo_dist_agent.v1",
        "demo_dist_node.v2", "demo_dist_node.v3", "demo_dist_ca.v3", "demo_cookie.v1",
        "demo2_dist_node.v1",
    ]  # fmt: skip
    in_use = {"demo_dist_node.v2", "demo_cookie.v1"}  # v2 still mounted: the roll is to come
    assert stale_secrets("demo", current, existing, in_use) == [
        "demo_dist_agent.v1", "demo_dist_ca.v1", "demo_dist_node.v1",
    ]  # fmt: skip


def test_an_image_without_ssl_is_refused_for_tls_with_what_to_do() -> None:
    app = AppSettings(name="shop", image="shop:1", dist_tls=True)
    plain = images.Image("shop:1", layout=ReleaseLayout("elixir", ("/app/bin/shop",)))
    with pytest.raises(ImageTlsError, match=r"shop:1 has none .*add `:ssl` to the release"):
        check_image_tls(plain, app)
    ssl = images.Image("shop:1", layout=ReleaseLayout("elixir", ("/app/bin/shop",), tls_dist=True))
    check_image_tls(ssl, app)
    check_image_tls(plain, AppSettings(name="shop", image="shop:1"))  # TLS off: no matter
    check_image_tls(images.Image("shop:1"), app)  # pulled from a registry: not inspected

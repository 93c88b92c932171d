"""Pure parts of the cluster deploys: cookie versions, service specs, the mesh verdict."""

from __future__ import annotations

import importlib.util
import json
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from beamfleet.controller.deploys.agent import AgentSettings, agent_args, agent_spec
from beamfleet.controller.deploys.app import AppSettings, app_spec
from beamfleet.controller.deploys.cluster import ImageUserError, check_image_user
from beamfleet.controller.deploys.cookie import CookieFileError, plan_cookie, read_cookie_value
from beamfleet.controller.deploys.images import Image
from beamfleet.controller.docker_cli import context_hash
from beamfleet.controller.facts.beam import render_mesh
from beamfleet.controller.facts.secrets import parse_secrets
from beamfleet.controller.inventory import InventoryValidationError
from beamfleet.controller.operations.secrets import content_labels
from beamfleet.controller.operations.services import LABEL_SPEC_HASH, spec_hash, with_spec_hash
from beamfleet.controller.release_image import ReleaseLayout
from beamfleet.runtime.erlang_dist import CookieFileError as RuntimeCookieFileError


def _secret(name: str, app: str = "demo", value: str = "x" * 20) -> dict[str, Any]:
    return {
        name: {
            "ID": name,
            "Labels": {"io.beamfleet.cookie": app, **content_labels(value)},
        }
    }


def test_first_cookie_is_v1_and_is_created() -> None:
    plan = plan_cookie("demo", {}, set())
    assert (plan.secret, plan.create, plan.stale) == ("demo_cookie.v1", True, ())


def test_existing_cookie_is_kept_and_other_apps_ignored() -> None:
    existing = {
        **_secret("demo_cookie.v1"),
        **_secret("demo_cookie.v2"),
        **_secret("x_cookie.v9", "x"),
    }
    plan = plan_cookie("demo", existing, {"demo_cookie.v2"})
    assert (plan.secret, plan.create) == ("demo_cookie.v2", False)
    assert plan.stale == ("demo_cookie.v1",)  # not used by any service any more


def test_rotation_makes_the_next_version_and_keeps_the_used_one() -> None:
    plan = plan_cookie("demo", _secret("demo_cookie.v3"), {"demo_cookie.v3"}, rotate=True)
    assert (plan.secret, plan.create, plan.stale) == ("demo_cookie.v4", True, ())


def test_a_given_cookie_is_compared_by_content_hash() -> None:
    existing = _secret("demo_cookie.v1", value="a" * 20)
    same = plan_cookie("demo", existing, set(), value="a" * 20)
    other = plan_cookie("demo", existing, set(), value="b" * 20)
    assert (same.secret, same.create) == ("demo_cookie.v1", False)
    assert (other.secret, other.create) == ("demo_cookie.v2", True)


def test_cookie_file_must_be_private_and_is_never_in_messages(tmp_path: Path) -> None:
    path = tmp_path / "cookie"
    path.write_text("s3cr3t-cookie-value-0123\n")
    path.chmod(0o644)
    with pytest.raises(InventoryValidationError) as info:
        read_cookie_value(str(path))
    assert "chmod 600" in str(info.value) and "s3cr3t" not in str(info.value)
    path.chmod(0o600)
    value = read_cookie_value(str(path))
    assert value.unmask() == "s3cr3t-cookie-value-0123"
    assert "s3cr3t" not in repr(value) and "s3cr3t" not in str(value)
    path.write_text("short")
    with pytest.raises(InventoryValidationError, match="16-255"):
        read_cookie_value(str(path))


def test_spec_hash_ignores_its_own_label_and_sees_any_change() -> None:
    spec = app_spec(AppSettings(image="demo:1"), "demo_cookie.v1")
    hashed = with_spec_hash(spec)
    assert hashed["Labels"][LABEL_SPEC_HASH] == spec_hash(spec) == spec_hash(hashed)
    scaled = app_spec(AppSettings(image="demo:1", replicas=6), "demo_cookie.v1")
    rotated = app_spec(AppSettings(image="demo:1"), "demo_cookie.v2")
    assert len({spec_hash(spec), spec_hash(scaled), spec_hash(rotated)}) == 3
    # scaling leaves the task template alone: the engine restarts nothing
    assert scaled["TaskTemplate"] == spec["TaskTemplate"]


def test_app_spec_names_nodes_by_overlay_subnet_and_mounts_the_cookie_privately() -> None:
    spec = app_spec(
        AppSettings(image="demo:1", subnet="10.234.7.0/24", env={"A": "1"}), "demo_cookie.v1"
    )
    container = spec["TaskTemplate"]["ContainerSpec"]
    assert "BEAMFLEET_CIDR=10.234.7.0/24" in container["Env"] and "A=1" in container["Env"]
    assert not any("COOKIE=" in e and "FILE" not in e for e in container["Env"])
    (secret,) = container["Secrets"]
    assert secret["SecretName"] == "demo_cookie.v1"
    assert secret["File"] == {
        "Name": "erlang_cookie",
        "UID": "10001",
        "GID": "10001",
        "Mode": 0o400,
    }
    assert spec["UpdateConfig"]["FailureAction"] == "rollback"


def test_agent_spec_is_global_rendezvous_on_the_app_overlay() -> None:
    app = AppSettings(name="shop", basename="shop", image="shop:1", network="net-shop")
    spec = agent_spec(app, AgentSettings(image="agent:1"), "shop_cookie.v2")
    assert spec["Mode"] == {"Global": {}}
    args = agent_args(app, AgentSettings())
    assert args[args.index("--source") + 1] == "dns:tasks.shop"
    assert args[args.index("--ownership") + 1] == "rendezvous"
    assert args[args.index("--agents-dns") + 1] == "tasks.shop-agent"
    # the cookie is passed as a file path only
    assert args[args.index("--cookie-file") + 1] == "/run/secrets/erlang_cookie"
    assert json.dumps(spec)  # JSON-serialisable for the Engine API


def test_context_hash_covers_names_and_content(tmp_path: Path) -> None:
    a = tmp_path / "a"
    a.write_text("1")
    first = context_hash({"a": a})
    assert context_hash({"b": a}) != first
    a.write_text("2")
    assert context_hash({"a": a}) != first


def test_parse_secrets_keeps_only_metadata() -> None:
    parsed = parse_secrets([{"ID": "i", "CreatedAt": "t", "Spec": {"Name": "n", "Labels": None}}])
    assert parsed == {"n": {"ID": "i", "Labels": {}, "CreatedAt": "t"}}


def _mesh_check_module() -> Any:
    path = Path(str(resources.files("beamfleet") / "assets" / "stack" / "mesh_check.py"))
    spec = importlib.util.spec_from_file_location("mesh_check", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _report(peers: dict[str, list[str]], running: list[str], dns: list[str]) -> dict[str, Any]:
    return {
        "app": "demo",
        "errors": [],
        "desired": 3,
        "running": running,
        "dns": dns,
        "nodes": {n: {"ok": True, "peers": p, "error": None} for n, p in peers.items()},
    }


IPS = ["10.234.0.2", "10.234.0.3", "10.234.0.4"]
NODES = [f"demo@{ip}" for ip in IPS]


def test_judge_complete_mesh() -> None:
    judge = _mesh_check_module().judge
    peers = {n: [p for p in NODES if p != n] for n in NODES}
    report = judge(_report(peers, IPS, IPS), "demo")
    assert report["complete"] and report["problems"] == []
    table = render_mesh({**report, "seconds": 1.0})
    assert "complete mesh" in table
    assert table.count(" x") == 6


def test_judge_names_the_node_missing_a_peer_and_dns_mismatch() -> None:
    judge = _mesh_check_module().judge
    peers = {n: [p for p in NODES if p != n] for n in NODES}
    peers[NODES[0]] = [NODES[1]]
    report = judge(_report(peers, IPS, IPS[:2]), "demo")
    assert not report["complete"]
    assert report["missing"] == {NODES[0]: [NODES[2]]}
    assert f"{NODES[0]} does not see {NODES[2]}" in report["problems"]
    assert any("DNS tasks.demo answers" in p for p in report["problems"])
    assert "INCOMPLETE" in render_mesh({**report, "seconds": 2.0})


def test_judge_counts_an_unreachable_node_as_missing_everyone() -> None:
    judge = _mesh_check_module().judge
    peers = {n: [p for p in NODES if p != n] for n in NODES}
    report = _report(peers, IPS, IPS)
    report["nodes"][NODES[1]] = {"ok": False, "peers": [], "error": "AuthenticationFailed"}
    judged = judge(report, "demo")
    assert judged["missing"][NODES[1]] == [NODES[0], NODES[2]]
    assert "AuthenticationFailed" in render_mesh({**judged, "seconds": 3.0})


def test_check_stops_at_once_when_the_service_is_missing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    module = _mesh_check_module()

    def no_service(*args: str, **kwargs: Any) -> str:
        raise RuntimeError("docker service inspect: Error: no such service: demo")

    monkeypatch.setattr(module, "sh", no_service)
    cfg = {"app": "demo", "basename": "demo", "network": "n", "agent": "a", "timeout": 60}
    monkeypatch.setattr("sys.argv", ["mesh_check", json.dumps(cfg), "probe"])
    module.main()  # returns at once: no 60 s of polling
    report = json.loads(capsys.readouterr().out)
    assert not report["complete"]
    assert report["problems"] == ["service demo does not exist: run deploys/cluster.py"]
    assert report["seconds"] < 5


def test_cookie_file_errors_are_the_runtimes(tmp_path: Path) -> None:
    """One CookieFileError class; pyinfra sees it as an inventory problem (a message)."""
    assert CookieFileError is RuntimeCookieFileError
    with pytest.raises(InventoryValidationError, match="cookie_file setting") as info:
        read_cookie_value(str(tmp_path / "missing"))
    assert isinstance(info.value.__cause__, RuntimeCookieFileError)
    two = tmp_path / "two"
    two.write_text("a" * 20 + "\n" + "b" * 20 + "\n")
    two.chmod(0o600)
    with pytest.raises(InventoryValidationError, match="more than one line"):
        read_cookie_value(str(two))


def test_default_healthcheck_runs_the_images_epmd() -> None:
    spec = app_spec(
        AppSettings(image="app:1", basename="shop", epmd="/app/erts-15.2.7/bin/epmd"), "s.v1"
    )
    test = spec["TaskTemplate"]["ContainerSpec"]["Healthcheck"]["Test"]
    assert test == ["CMD-SHELL", "/app/erts-15.2.7/bin/epmd -names | grep -q '^name shop at'"]
    plain = app_spec(AppSettings(image="app:1", basename="shop"), "s.v1")
    assert plain["TaskTemplate"]["ContainerSpec"]["Healthcheck"]["Test"][1].startswith("epmd ")


def test_image_user_must_own_the_cookie_secret() -> None:
    def image(uid: int | None) -> Image:
        return Image("app:1", layout=ReleaseLayout("erl", ("erl",), uid=uid))

    for fine in (None, 0, 10001):
        check_image_user(image(fine), AppSettings(user_id=10001))
    with pytest.raises(ImageUserError, match="app_user_id: 1000"):
        check_image_user(image(1000), AppSettings(user_id=10001))

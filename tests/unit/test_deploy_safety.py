"""Production safety of the deploys: kernel neighbour table, drift, injection, exposure.

Pure planning functions and the commands pyinfra would run; what the engine and the
kernel answer on real hosts is the lab's part.
"""

from __future__ import annotations

import copy
import hashlib
import json
import shlex
from types import SimpleNamespace
from typing import Any

import pytest

from beamfleet.controller.deploys import cluster, swarm
from beamfleet.controller.deploys.app import AppSettings, app_spec
from beamfleet.controller.deploys.docker_engine import (
    NEIGHBOUR_DEFAULTS,
    neighbour_sysctls,
    plan_sysctls,
    sysctl_conf,
    sysctl_write_command,
)
from beamfleet.controller.facts.kernel import KernelSetting, parse_kernel_settings
from beamfleet.controller.facts.secrets import LABEL_CONTENT_HASH, LABEL_CONTENT_SALT
from beamfleet.controller.facts.services import ImageId
from beamfleet.controller.inventory import HostSpec, find_problems, image_reference
from beamfleet.controller.operations import services
from beamfleet.controller.operations.images import pull_command
from beamfleet.controller.operations.secrets import content_labels, holds_value, salted_hash
from beamfleet.controller.operations.services import (
    apply_service_command,
    network_names,
    with_spec_hash,
)
from beamfleet.controller.operations.swarm import (
    _docker,
    overlay_create_args,
    overlay_differences,
)
from beamfleet.controller.spec_drift import spec_drift

# every key of a cluster run is known to the validation (as deploys/cluster.py loads them)
assert cluster.CLUSTER_RUN_KEYS and swarm.SWARM_KEYS

# -- 1. the kernel's neighbour table ------------------------------------------------------


def test_the_default_thresholds_cover_ipv4_and_ipv6_top_down() -> None:
    values = neighbour_sysctls(NEIGHBOUR_DEFAULTS)
    assert list(values) == [
        f"net.{family}.neigh.default.gc_thresh{n}" for family in ("ipv4", "ipv6") for n in (3, 2, 1)
    ]
    assert values["net.ipv4.neigh.default.gc_thresh1"] == 4096
    assert values["net.ipv6.neigh.default.gc_thresh2"] == 8192
    assert values["net.ipv4.neigh.default.gc_thresh3"] == 16384


def test_the_sysctl_file_lets_a_kernel_without_ipv6_boot_cleanly() -> None:
    text = sysctl_conf(neighbour_sysctls(NEIGHBOUR_DEFAULTS))
    assert "\nnet.ipv4.neigh.default.gc_thresh3 = 16384\n" in text
    assert "\n-net.ipv6.neigh.default.gc_thresh3 = 16384\n" in text
    assert text == sysctl_conf(neighbour_sysctls(NEIGHBOUR_DEFAULTS))  # stable: no re-upload


def _live(value: str | None, writable: bool = True) -> dict[str, KernelSetting]:
    return {k: KernelSetting(value, writable) for k in neighbour_sysctls(NEIGHBOUR_DEFAULTS)}


def test_kernel_defaults_are_raised_and_a_rerun_changes_nothing() -> None:
    wanted = neighbour_sysctls(NEIGHBOUR_DEFAULTS)
    live = {k: KernelSetting({"1": "128", "2": "512", "3": "1024"}[k[-1]], True) for k in wanted}
    plan = plan_sysctls(wanted, live)
    assert plan.write == wanted and plan.read_only == ()
    command = sysctl_write_command(plan.write)
    assert command.startswith("echo 16384 > /proc/sys/net/ipv4/neigh/default/gc_thresh3 && ")
    assert command.count(" && ") == 5 and command.endswith(
        "echo 4096 > /proc/sys/net/ipv6/neigh/default/gc_thresh1"
    )
    after = {k: KernelSetting(str(v), True) for k, v in wanted.items()}
    assert plan_sysctls(wanted, after).write == {}


def test_a_kernel_without_ipv6_and_a_read_only_proc_sys_are_not_written() -> None:
    wanted = neighbour_sysctls(NEIGHBOUR_DEFAULTS)
    live = {
        k: KernelSetting(None, False) if ".ipv6." in k else KernelSetting("128", False)
        for k in wanted
    }
    plan = plan_sysctls(wanted, live)
    assert plan.write == {}
    assert set(plan.read_only) == {k for k in wanted if ".ipv4." in k}
    assert plan_sysctls(wanted, _live("999999", writable=False)).read_only  # lowered: asked


def test_the_kernel_settings_fact_output_is_parsed() -> None:
    parsed = parse_kernel_settings(
        ["net.ipv4.neigh.default.gc_thresh1 128 rw", "net.ipv6.x - absent", "a.b 1 2 ro", ""]
    )
    assert parsed == {
        "net.ipv4.neigh.default.gc_thresh1": KernelSetting("128", True),
        "net.ipv6.x": KernelSetting(None, False),
        "a.b": KernelSetting("1 2", False),
    }


def _problems(**data: Any) -> list[str]:
    hosts = [HostSpec("m1", ["managers"], {"ssh_hostname": "m1", **data})]
    return find_problems(hosts, {"ssh_hostname"})


@pytest.mark.parametrize("value", [False, 0, {"gc_thresh1": 1, "gc_thresh2": 2, "gc_thresh3": 3}])
def test_neighbour_table_accepts_false_zero_and_three_thresholds(value: object) -> None:
    assert _problems(neighbour_table=value) == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, "`false` to leave the kernel alone"),
        (5, "`false` to leave the kernel alone"),
        ({"gc_thresh1": 1}, "exactly the keys"),
        ({"gc_thresh1": 3, "gc_thresh2": 2, "gc_thresh3": 1}, "gc_thresh1 <= gc_thresh2"),
        ({"gc_thresh1": 0, "gc_thresh2": 2, "gc_thresh3": 3}, "greater than 0"),
    ],
)
def test_neighbour_table_refuses_other_values(value: object, expected: str) -> None:
    (problem,) = _problems(neighbour_table=value)
    assert "`neighbour_table`" in problem and expected in problem


# -- 2. drift: a service edited by hand is put back --------------------------------------

APP_NET_ID = "k3l0q6x2bm8pn1vdy0w5t4c7e"


def _desired() -> dict[str, Any]:
    settings = AppSettings(image="demo:3f2a0c1b2d3e", env={"SECRET_API_KEY": "hunter2-hunter2"})
    return with_spec_hash(app_spec(settings, "demo_cookie.v1"))


def _as_the_engine_returns(desired: dict[str, Any]) -> dict[str, Any]:
    """``Spec`` of ``docker service inspect`` for a service created with ``desired``: the
    engine resolves network names and secret names to IDs, fills in defaults (Isolation,
    ForceUpdate, Placement, Runtime...), may pin the image to a digest, and leaves zero
    values out (MaxFailureRatio)."""
    live = copy.deepcopy(desired)
    template = live["TaskTemplate"]
    container = template["ContainerSpec"]
    container["Image"] += "@sha256:" + "ab" * 32
    container["Isolation"] = "default"
    container["Secrets"][0]["SecretID"] = "q1w2e3r4t5y6u7i8o9p0a1s2d"
    template["Networks"] = [{"Target": APP_NET_ID}]
    template["ForceUpdate"] = 0
    template["Runtime"] = "container"
    template["Placement"] = {}
    template["Resources"]["Reservations"] = {}
    for config in ("UpdateConfig", "RollbackConfig"):
        del live[config]["MaxFailureRatio"]
    live["Labels"]["added.by.hand"] = "fine"  # not beamfleet's
    return live


NETWORKS = {"beamfleet-demo": {"Id": APP_NET_ID, "Name": "beamfleet-demo"}, "ingress": {}}


def test_an_unchanged_service_has_no_drift() -> None:
    desired = _desired()
    live = _as_the_engine_returns(desired)
    assert spec_drift(desired, live, network_names(NETWORKS)) == []


def test_a_healthcheck_removed_by_hand_is_drift() -> None:
    desired = _desired()
    live = _as_the_engine_returns(desired)
    no_check = copy.deepcopy(live)  # docker service update --no-healthcheck
    no_check["TaskTemplate"]["ContainerSpec"]["Healthcheck"] = {"Test": ["NONE"]}
    assert "TaskTemplate.ContainerSpec.Healthcheck.Test" in spec_drift(
        desired, no_check, network_names(NETWORKS)
    )
    none_cmd = copy.deepcopy(live)  # docker service update --healthcheck-cmd NONE
    none_cmd["TaskTemplate"]["ContainerSpec"]["Healthcheck"]["Test"] = ["CMD-SHELL", "NONE"]
    assert spec_drift(desired, none_cmd, network_names(NETWORKS)) == [
        "TaskTemplate.ContainerSpec.Healthcheck.Test[1]"
    ]
    gone = copy.deepcopy(live)
    del gone["TaskTemplate"]["ContainerSpec"]["Healthcheck"]
    assert spec_drift(desired, gone, network_names(NETWORKS)) == [
        "TaskTemplate.ContainerSpec.Healthcheck"
    ]


def test_a_network_added_by_hand_is_drift() -> None:
    desired = _desired()
    live = _as_the_engine_returns(desired)
    live["TaskTemplate"]["Networks"].append({"Target": "x9y8z7w6v5u4t3s2r1q0p9o8n"})
    assert spec_drift(desired, live, network_names(NETWORKS)) == ["TaskTemplate.Networks"]


def test_other_hand_edits_are_drift_too() -> None:
    desired = _desired()
    scaled = _as_the_engine_returns(desired)
    scaled["Mode"]["Replicated"]["Replicas"] = 7  # docker service scale demo=7
    env = _as_the_engine_returns(desired)
    env["TaskTemplate"]["ContainerSpec"]["Env"].append("DEBUG=1")
    image = _as_the_engine_returns(desired)
    image["TaskTemplate"]["ContainerSpec"]["Image"] = "demo:other@sha256:" + "cd" * 32
    assert spec_drift(desired, scaled, network_names(NETWORKS)) == ["Mode.Replicated.Replicas"]
    assert spec_drift(desired, env, network_names(NETWORKS)) == ["TaskTemplate.ContainerSpec.Env"]
    assert spec_drift(desired, image, network_names(NETWORKS)) == [
        "TaskTemplate.ContainerSpec.Image"
    ]


def test_a_changed_desired_spec_shows_in_its_hash_label() -> None:
    live = _as_the_engine_returns(_desired())
    newer = with_spec_hash(app_spec(AppSettings(image="demo:2", replicas=5), "demo_cookie.v1"))
    drift = spec_drift(newer, live, network_names(NETWORKS))
    assert "Labels.io.beamfleet.spec-hash" in drift and "Mode.Replicated.Replicas" in drift


# -- 3. injection and exposure ------------------------------------------------------------


@pytest.mark.parametrize(
    "ref",
    [
        "demo:1",
        "beamfleet/agent:3f2a0c1b2d3e",
        "registry.example.com:5000/team/app:1.4",
        "localhost/app@sha256:" + "a" * 64,
        "ghcr.io/org/app-name_x.y:v1.2-rc.1@sha256:" + "b" * 64,
    ],
)
def test_image_references_in_dockers_grammar_pass(ref: str) -> None:
    assert image_reference(ref) is None


@pytest.mark.parametrize(
    "ref",
    ["a:1; touch /tmp/x", "Demo:1", "app:$(id)", "app:1\nx", "-rm", "app:", "app@sha256:12", ""],
)
def test_other_image_references_are_refused(ref: str) -> None:
    assert "is not an image reference" in str(image_reference(ref))


def test_a_bad_image_or_name_stops_the_run_before_any_host_is_touched() -> None:
    problems = _problems(
        app_image="a:1; touch /tmp/x",
        agent_image="agent:1 && reboot",
        image="x`id`",
        app_name="demo;rm",
        app_basename="node name",
        app_network="net$(id)",
        swarm_networks={"a b": {}},
    )
    keys = ["agent_image", "app_basename", "app_image", "app_name", "app_network", "image"]
    for key in keys:
        assert any(f"`{key}`" in p for p in problems), key
    assert any("network name" in p and "'a b'" in p for p in problems)
    assert _problems(app_name="x" * 49) and not _problems(app_name="x" * 48)


def test_every_value_in_a_remote_command_is_one_quoted_word() -> None:
    evil = "n1; touch /tmp/pwned"
    assert (
        shlex.split(_docker("node", "update", "--label-add", f"a={evil}", evil).get_raw_value())[-1]
        == evil
    )
    assert shlex.split(pull_command(evil).get_raw_value().split(">")[0]) == [
        "docker", "pull", "-q", evil,
    ]  # fmt: skip
    assert evil in shlex.split(ImageId().command(evil))
    create = overlay_create_args(evil, "10.0.0.0/24", attachable=False, encrypted=True)
    assert create[-1] == evil and "--attachable" not in create


class _RecordingHost:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def run_shell_command(self, command: Any, **kwargs: Any) -> tuple[bool, Any]:
        self.calls.append((command.get_raw_value(), kwargs))

        return True, SimpleNamespace(stdout_lines=[], stderr_lines=[])

    def log_styled(self, line: str, **kwargs: Any) -> None:
        pass


def test_the_service_spec_goes_on_stdin_never_on_a_command_line() -> None:
    desired = _desired()
    command = apply_service_command(desired)
    fake = _RecordingHost()
    assert command.function(None, fake, *command.args, **command.kwargs)
    ((line, kwargs),) = fake.calls
    assert "hunter2-hunter2" not in line and "BEAMFLEET" not in line
    assert json.loads(kwargs["_stdin"]) == desired
    assert kwargs["print_input"] is False and kwargs["print_output"] is False
    assert "apply-service" in shlex.split(line)
    assert services.LABEL_SPEC_HASH in desired["Labels"]


def test_the_cookie_label_is_salted_and_still_recognises_the_cookie() -> None:
    cookie = "s3cr3t-cookie-value-0123"
    labels = content_labels(cookie)
    plain = hashlib.sha256(cookie.encode()).hexdigest()
    assert plain[:16] not in labels[LABEL_CONTENT_HASH]
    assert labels[LABEL_CONTENT_HASH] != "sha256:" + plain[:16]
    assert labels[LABEL_CONTENT_HASH].startswith("pbkdf2-sha256:")
    assert content_labels(cookie)[LABEL_CONTENT_HASH] != labels[LABEL_CONTENT_HASH]  # new salt
    assert holds_value(labels, cookie)
    assert not holds_value(labels, cookie + "x")
    # labels of earlier versions, and of generated secrets, are still understood
    assert holds_value({LABEL_CONTENT_HASH: "sha256:" + plain[:16]}, cookie)
    salt = "00" * 16
    generated = {LABEL_CONTENT_HASH: salted_hash(cookie, salt), LABEL_CONTENT_SALT: salt}
    assert holds_value(generated, cookie) and not holds_value(generated, "other")
    assert not holds_value({}, cookie)
    assert not holds_value({LABEL_CONTENT_HASH: "pbkdf2-sha256:x:y", LABEL_CONTENT_SALT: "zz"}, "")
    forever = {LABEL_CONTENT_HASH: "pbkdf2-sha256:999999999999:ab", LABEL_CONTENT_SALT: salt}
    assert not holds_value(forever, cookie)


# -- 4. the application's overlay: encrypted, not attachable -------------------------------


def test_the_app_overlay_is_encrypted_and_not_attachable_by_default() -> None:
    settings = AppSettings()
    assert (settings.network_encrypted, settings.network_attachable) == (True, False)
    args = overlay_create_args(
        settings.network, settings.subnet, settings.network_attachable, settings.network_encrypted
    )
    assert args == [
        "network", "create", "--driver", "overlay", "--opt", "encrypted",
        "--subnet", "10.234.0.0/24", "beamfleet-demo",
    ]  # fmt: skip


def test_an_existing_network_with_other_settings_is_named_with_its_fix() -> None:
    keys = {"attachable": "app_network_attachable", "encrypted": "app_network_encrypted"}
    old = {"Attachable": True, "Options": {}, "IPAM": {"Config": [{"Subnet": "10.234.0.0/24"}]}}
    differences = overlay_differences(
        old, subnet="10.234.0.0/24", attachable=False, encrypted=True, keys=keys
    )
    assert differences == [
        "attachable is true (wanted false); `app_network_attachable: true` keeps it as it is",
        "encrypted is false (wanted true); `app_network_encrypted: false` keeps it as it is",
    ]
    same = {**old, "Attachable": False, "Options": {"encrypted": ""}}
    assert overlay_differences(same, subnet=None, attachable=False, encrypted=True) == []

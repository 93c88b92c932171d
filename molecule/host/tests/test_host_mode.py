"""Host mode on each lab host: the services run, the cookie is a private file shown
nowhere, the port mapper and the node listen where they should, and check.py passes."""

from __future__ import annotations

import os
import re
import subprocess

import lab_state
import pytest
from testinfra.host import Host

testinfra_hosts = lab_state.hosts()
APP = lab_state.APP
COOKIE = f"/etc/beamfleet/{APP}/cookie"
UNITS = ("beamfleet-epmd.service", f"beamfleet-{APP}.service", f"beamfleet-{APP}-agent.service")


@pytest.fixture(scope="module")
def cookie() -> str:
    value = lab_state.connect(testinfra_hosts[0]).check_output("cat %s", COOKIE)
    assert len(value) >= 20
    return str(value)


def test_services_run(host: Host) -> None:
    for unit in UNITS:
        service = host.service(unit)
        assert service.is_running and service.is_enabled, unit
    assert not host.package("docker.io").is_installed  # no Docker in this mode


def test_cookie_is_the_clusters_private_file(host: Host, cookie: str) -> None:
    f = host.file(COOKIE)
    assert (f.user, f.group, f.mode) == (f"bf-{APP}", f"bf-{APP}", 0o400)
    assert f.content_string.strip() == cookie


def test_cookie_shows_nowhere(host: Host, cookie: str) -> None:
    shown = host.check_output(
        "ps -eo args; journalctl --no-pager -o cat; cat /etc/systemd/system/beamfleet-*; "
        "cat /etc/beamfleet/%s/node.env /etc/beamfleet/%s/agent.toml",
        APP,
        APP,
    )
    assert "beam.smp" in shown  # the listing really covers the node
    assert cookie not in shown


def test_port_mapper_on_loopback_and_the_lab_address_only(host: Host) -> None:
    listening = host.check_output("ss -ltnH | awk '{print $4}'").split()
    epmd = sorted(a for a in listening if a.endswith(":4369"))
    assert len(epmd) == 2 and "127.0.0.1:4369" in epmd, epmd
    assert host.check_output("systemctl is-enabled epmd.socket || true") == "masked"


COMPLETE = re.compile(r"(\d+) desired, \1 running, \1 in \S+, complete")


def test_check_deploy_reports_complete_mesh() -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = f"{lab_state.ROOT / 'plugins'}:{lab_state.ROOT / 'lab'}"
    inventory = lab_state.ROOT / "inventories" / f"{lab_state.LAB}.py"
    proc = subprocess.run(
        [str(lab_state.ROOT / ".venv/bin/pyinfra"), "-y", str(inventory), "deploys/check.py",
         "--data", "cluster_mode=host"],
        cwd=lab_state.ROOT, env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert COMPLETE.search(output), output

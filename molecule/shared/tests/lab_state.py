"""The lab a scenario runs on, as the lab itself records it (``.lab/<name>/lab.json``).

The verify step asserts that the swarm matches this record: the hosts the lab has now
(``grow`` adds and removes some between two verifies), their groups, and the defaults
the deploys use for the application.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import testinfra
from testinfra.host import Host

from beamfleet.controller.deploys.app import APP_KEYS
from beamfleet.runtime.constants import COOKIE_MOUNT_PATH

ROOT = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY") or Path(__file__).resolve().parents[3])
LAB = os.environ.get("MOL_LAB_NAME", "mol-default")
# The converge passes BEAMFLEET_DATA to pyinfra (molecule/shared/pyinfra_converge.py).
_DATA = dict(item.split("=", 1) for item in os.environ.get("BEAMFLEET_DATA", "").split())
APP: str = _DATA.get("app_name") or APP_KEYS.default("app_name")
APP_USER_ID = int(_DATA.get("app_user_id") or APP_KEYS.default("app_user_id"))
COOKIE_FILE = COOKIE_MOUNT_PATH
T = TypeVar("T")


def hosts(group: str | None = None) -> list[str]:
    """Inventory names of the lab's hosts (in ``group`` when given)."""
    raw = json.loads((ROOT / ".lab" / LAB / "lab.json").read_text())
    return [h["name"] for h in raw["hosts"] if group is None or h["group"] == group]


def manager() -> str:
    """The first manager: the one the deploys act on (docs/swarm.md, acting manager)."""
    return hosts("managers")[0]


def connect(name: str) -> Host:
    """A testinfra host for another lab host, through Molecule's Ansible inventory."""
    return testinfra.get_host(
        f"ansible://{name}", ansible_inventory=os.environ["MOLECULE_INVENTORY_FILE"]
    )


def app_containers(host: Host) -> list[str]:
    """IDs of the application's task containers running on ``host``."""
    out = host.check_output("docker ps -q --filter label=com.docker.swarm.service.name=%s", APP)
    return str(out).split()


def poll(probe: Callable[[], T], done: Callable[[T], bool], timeout: float, what: str) -> T:
    """Call ``probe`` until ``done(result)``; AssertionError with the last result at the
    deadline (the swarm settles a few seconds after a deploy returns)."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if done(result):
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}: {result!r}")
        time.sleep(2.0)

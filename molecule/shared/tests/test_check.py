"""deploys/check.py passes on the lab: desired = running = in DNS, and a complete mesh."""

from __future__ import annotations

import os
import re
import subprocess

import lab_state

# Runs once on the controller (no `host` fixture): check.py itself looks from the manager.
COMPLETE = re.compile(r"(\d+) desired, \1 running, \1 in DNS, complete")


def test_check_deploy_reports_complete_mesh() -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = f"{lab_state.ROOT / 'plugins'}:{lab_state.ROOT / 'lab'}"
    inventory = lab_state.ROOT / "inventories" / f"{lab_state.LAB}.py"
    proc = subprocess.run(
        [str(lab_state.ROOT / ".venv/bin/pyinfra"), "-y", str(inventory), "deploys/check.py"],
        cwd=lab_state.ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert COMPLETE.search(output), output

"""The Molecule converge's change verdict (molecule/shared/pyinfra_converge.py) can fail.

Molecule's idempotence step passes when the second converge's Ansible task reports no
change; that task is `changed` exactly when the checker exits 2 (pyinfra changed something).
Here, on a one-host lab of its own: the converge task file the scenarios use runs
deploys/cluster.py through ansible-playbook, and Molecule's own idempotence verdict is taken
from its output: a fresh host changes (not idempotent), a second run does not, and after
the host is deliberately changed (an overlay the inventory asks for is removed) the next
run is not idempotent again, naming the operation that put it back.

The first tests read pyinfra --json payloads only (no lab).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, cast

import pytest
from molecule.command.idempotence import Idempotence

from tests.lab.conftest import ROOT, LabHandle, lab_fixture

CHECKER_PATH = ROOT / "molecule" / "shared" / "pyinfra_converge.py"


def load_checker() -> ModuleType:
    spec = importlib.util.spec_from_file_location("pyinfra_converge", CHECKER_PATH)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


checker = load_checker()


def payload(*ops: dict[str, Any], failed_hosts: list[str] | None = None) -> dict[str, Any]:
    return {"results": {"operations": list(ops), "failed_hosts": failed_hosts or []}}


def op(name: str, success=(), error=(), no_change=()) -> dict[str, Any]:
    """One entry of ``results.operations``: the hosts it changed, failed on, left alone."""
    return {"name": name, "success": [*success], "error": [*error], "no_change": [*no_change]}


def test_no_change_anywhere_is_unchanged() -> None:
    verdict = checker.verdict_from_json(
        payload(op("Install docker.io", no_change=["h1", "h2"]), op("Swarm", no_change=["h1"]))
    )
    assert verdict.ok and verdict.change_count == 0 and verdict.changed == {}


def test_one_changed_host_is_a_change_naming_operation_and_host() -> None:
    verdict = checker.verdict_from_json(
        payload(op("Install docker.io", no_change=["h1"]), op("Overlay lab", success=["h2"]))
    )
    assert verdict.ok
    assert verdict.changed == {"Overlay lab": ["h2"]}
    assert verdict.change_count == 1


def test_same_name_operations_add_up() -> None:
    verdict = checker.verdict_from_json(
        payload(op("Load image", success=["h1"]), op("Load image", success=["h2", "h3"]))
    )
    assert verdict.changed == {"Load image": ["h1", "h2", "h3"]}
    assert verdict.change_count == 3


def test_errors_and_failed_hosts_are_not_ok() -> None:
    assert not checker.verdict_from_json(payload(op("x", error=["h1"]))).ok
    assert not checker.verdict_from_json(payload(op("x", no_change=["h1"]), failed_hosts=["h2"])).ok


@pytest.mark.parametrize("stdout", ["", "--> Loading config\n", '{"plan": [], "results": null}'])
def test_no_results_is_an_error_not_a_pass(stdout: str) -> None:
    with pytest.raises(checker.NoResultsError):
        checker.verdict_from_json(checker.parse_stdout(stdout))


# -- on a lab -----------------------------------------------------------------------------

lab = lab_fixture("tidem", hosts=1, managers=1)

PLAYBOOK = """\
- name: Converge like the Molecule scenarios do
  hosts: localhost
  connection: local
  gather_facts: false
  vars_files:
    - {root}/molecule/shared/vars.yml
  tasks:
    - name: Deploy
      ansible.builtin.include_tasks: {root}/molecule/shared/tasks/pyinfra.yml
      vars:
        deploy: deploys/cluster.py
        lab_inventory: {inventory}
"""


def converge(lab: LabHandle, playbook: Path) -> str:
    """ansible-playbook on the scenarios' converge task; its output (it must succeed)."""
    env = {
        **os.environ,
        "MOLECULE_PROJECT_DIRECTORY": str(ROOT),
        "MOL_LAB_NAME": lab.name,
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_LOCALHOST_WARNING": "0",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "0",
    }
    proc = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "ansible-playbook"), str(playbook)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    return output


def is_idempotent(output: str) -> bool:
    """Molecule's own verdict on a converge's output (what `molecule idempotence` runs)."""
    return bool(Idempotence._is_idempotent(cast(Any, None), output))


@pytest.mark.lab
def test_checker_fails_idempotence_when_a_host_changed(lab: LabHandle, tmp_path: Path) -> None:
    playbook = tmp_path / "converge.yml"
    playbook.write_text(PLAYBOOK.format(root=ROOT, inventory=lab.inventory))

    fresh = converge(lab, playbook)
    assert not is_idempotent(fresh), fresh  # a bare host: the engine, the swarm, ...
    assert "Install docker.io" in fresh

    again = converge(lab, playbook)
    assert is_idempotent(again), again

    assert "lab" in lab.ssh("host1", "docker network ls --format '{{.Name}}'").split()
    lab.ssh("host1", "docker network rm lab")
    drifted = converge(lab, playbook)
    assert not is_idempotent(drifted), drifted
    assert "Overlay network lab" in drifted

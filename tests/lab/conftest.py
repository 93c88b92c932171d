"""Lab fixtures: real multi-host labs (systemd + sshd containers) and pyinfra runs on them.

Generic on purpose; other lab suites reuse them. In a test module::

    from tests.lab.conftest import lab_fixture

    lab = lab_fixture("tcluster", hosts=3, managers=1)   # module-scoped fixture `lab`

    def test_something(lab):
        run = lab.pyinfra("deploys/swarm.py")            # pyinfra -y --json INVENTORY DEPLOY
        assert run.ok, run.output
        assert run.changed_ops == {}                     # {operation name: [hosts changed]}
        print(lab.ssh("host1", "docker node ls"))        # stdout of a command on a host
        lab.add_host("workers")                          # one more host; inventory rewritten

- Each lab gets its own name (so its own /24 in 10.232.0.0/16) and its own root directory
  under pytest's tmp dir (state, SSH key, generated inventory), so suites can run side by
  side and leave the repository untouched. It is created when the module's first test
  needs it and removed at module teardown, also when a test failed.
- ``lab.pyinfra(deploy, *args)`` runs the project's pyinfra from the repository root and
  returns a :class:`PyinfraRun`: ``returncode``, ``ok``, ``json`` (the ``--json`` payload,
  None when pyinfra stopped before printing it), ``changed_ops``, ``output`` (stdout +
  stderr, e.g. to look for a leaked secret), ``seconds``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from beamfleet_lab import Lab, LabHost

ROOT = Path(__file__).resolve().parents[2]
PYINFRA = str(ROOT / ".venv" / "bin" / "pyinfra")
# A cold deploy on a busy 2-core CI machine can be slow; a hung one must still end.
PYINFRA_TIMEOUT = 600.0


@dataclass
class PyinfraRun:
    """The outcome of one ``pyinfra -y --json`` run."""

    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    json: dict[str, Any] | None = field(default=None)

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    @property
    def changed_ops(self) -> dict[str, list[str]]:
        """Operations that changed something: {operation name: [hosts]} (empty = no change)."""
        if self.json is None or not self.json.get("results"):
            raise AssertionError(
                f"pyinfra printed no results (rc={self.returncode}):\n{self.output}"
            )
        return {
            op["name"]: op["success"] for op in self.json["results"]["operations"] if op["success"]
        }

    @property
    def failed_ops(self) -> dict[str, list[str]]:
        if self.json is None or not self.json.get("results"):
            return {}
        return {op["name"]: op["error"] for op in self.json["results"]["operations"] if op["error"]}


def run_pyinfra(
    inventory: Path | str, deploy: str, *args: str, timeout: float = PYINFRA_TIMEOUT
) -> PyinfraRun:
    """``pyinfra -y --json INVENTORY DEPLOY ARGS...`` from the repository root."""
    argv = [PYINFRA, "-y", "--json", str(inventory), deploy, *args]
    start = time.monotonic()
    proc = subprocess.run(
        argv, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
    )
    seconds = time.monotonic() - start
    payload: dict[str, Any] | None = None
    text = proc.stdout.strip()
    if text.startswith("{"):
        try:
            payload = json.loads(text)
        except json.JSONDecodeError:
            payload = None
    return PyinfraRun(argv, proc.returncode, proc.stdout, proc.stderr, seconds, payload)


class LabHandle:
    """A running lab, for tests: its inventory, SSH into hosts, pyinfra runs."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.runs: list[PyinfraRun] = []

    @property
    def name(self) -> str:
        return self.lab.name

    @property
    def inventory(self) -> Path:
        return self.lab.inventory_path

    def hosts(self) -> list[LabHost]:
        return self.lab.load().hosts

    def ip(self, host: str) -> str:
        return self.lab.load().host(host).ip

    def ssh_run(
        self, host: str, command: str, timeout: float = 120.0
    ) -> subprocess.CompletedProcess[str]:
        """Run a shell command on ``host`` over SSH (the lab's key), return the process."""
        return subprocess.run(
            self.lab.ssh_argv(host, [command]),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def ssh(self, host: str, command: str, timeout: float = 120.0) -> str:
        """Stdout of ``command`` on ``host``; AssertionError (with stderr) when it fails."""
        proc = self.ssh_run(host, command, timeout)
        if proc.returncode != 0:
            raise AssertionError(f"{host}: `{command}` failed ({proc.returncode}): {proc.stderr}")
        return proc.stdout

    def pyinfra(self, deploy: str, *args: str, timeout: float = PYINFRA_TIMEOUT) -> PyinfraRun:
        """Run ``deploy`` against this lab's inventory; every run is kept in ``self.runs``."""
        run = run_pyinfra(self.inventory, deploy, *args, timeout=timeout)
        self.runs.append(run)
        return run

    def inventory_with(self, name: str, extra: dict[str, Any]) -> Path:
        """An inventory file beside the lab's: its hosts and groups, with ``extra`` data on
        every host (the lab's generated inventory stays as it is)."""
        path = self.inventory.with_name(name)
        path.write_text(
            "import runpy\n"
            f"_lab = runpy.run_path({str(self.inventory)!r})\n"
            f"_extra = {extra!r}\n"
            "managers = [(n, {**d, **_extra}) for n, d in _lab['managers']]\n"
            "workers = [(n, {**d, **_extra}) for n, d in _lab.get('workers', [])]\n"
        )
        return path

    def add_host(self, group: str = "workers") -> LabHost:
        return self.lab.add_host(group)

    def move_host(self, host: str, group: str) -> LabHost:
        return self.lab.move_host(host, group)

    def forget_host(self, host: str) -> LabHost:
        return self.lab.forget_host(host)


def wait_until(
    predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.5
) -> None:
    """Poll ``predicate`` until it is true; AssertionError naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def lab_fixture(name: str, hosts: int = 3, managers: int = 1, suite: str = "bookworm") -> Any:
    """A module-scoped fixture yielding a LabHandle on a fresh lab ``name`` of Debian
    ``suite`` hosts (bookworm or trixie).

    Assign it to a module-level name: ``lab = lab_fixture("tswarm")``.
    """

    @pytest.fixture(scope="module")
    def _lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabHandle]:
        root = tmp_path_factory.mktemp(f"lab-{name}")
        lab = Lab(name, root=root)
        lab.down()  # a lab of that name left over by a killed run
        try:
            lab.up(hosts=hosts, managers=managers, suite=suite)
            yield LabHandle(lab)
        finally:
            lab.down()
            shutil.rmtree(root, ignore_errors=True)

    return _lab

"""Run one pyinfra deploy on a lab's inventory and say whether it changed anything.

Molecule's converge and idempotence steps call this from an Ansible ``command`` task:

    .venv/bin/python molecule/shared/pyinfra_converge.py mol-default deploys/cluster.py

Exit codes (the task maps them to Ansible's ``changed`` and ``failed``):

- 0: the deploy succeeded and changed nothing on any host;
- 2: the deploy succeeded and changed something (each changed operation is printed with
  its hosts), so a second converge that exits 2 fails Molecule's idempotence step;
- 1: the deploy failed, or pyinfra printed no results to judge by.

The verdict is read from ``pyinfra --json`` (pyinfra 3 prints the deploy results as
JSON on stdout): ``results.operations[].success`` lists the hosts on which an operation
succeeded *and* changed something, which is exactly what idempotence asks about. That is
sturdier than scraping the human "Results:" table, whose layout is for reading.

Inventory data from the environment, for every deploy this runs:

- ``BEAMFLEET_APP_IMAGE=myapp:1.4``: your own image (``--data app_image=myapp:1.4``);
- ``BEAMFLEET_DATA="app_name=shop app_user_id=1000"``: any keys (docs/cluster.md),
  whitespace-separated ``KEY=VALUE`` pairs, each passed as ``--data KEY=VALUE``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PYINFRA = ROOT / ".venv" / "bin" / "pyinfra"
# A cold converge (engine install, image builds) on a busy 2-core machine is slow; a hung
# one must still end.
TIMEOUT_SECONDS = 1500.0
EXIT_UNCHANGED = 0
EXIT_FAILED = 1
EXIT_CHANGED = 2
APP_IMAGE_ENV = "BEAMFLEET_APP_IMAGE"
DATA_ENV = "BEAMFLEET_DATA"


class NoResultsError(Exception):
    """pyinfra printed no deploy results (it stopped before running operations)."""


@dataclass(frozen=True)
class Verdict:
    """What one deploy run did: operations that changed something, and failures."""

    changed: dict[str, list[str]]
    failed: dict[str, list[str]]
    failed_hosts: list[str]

    @property
    def ok(self) -> bool:
        return not self.failed and not self.failed_hosts

    @property
    def change_count(self) -> int:
        """How many (operation, host) pairs changed something."""
        return sum(len(hosts) for hosts in self.changed.values())


def verdict_from_json(payload: dict[str, Any] | None) -> Verdict:
    """Read a ``pyinfra --json`` deploy payload.

    Example::

        >>> verdict_from_json({"results": {"operations": [
        ...     {"name": "Start docker", "success": ["host1"], "error": []}],
        ...     "failed_hosts": []}}).changed
        {'Start docker': ['host1']}
    """
    results = (payload or {}).get("results")
    if not results:
        raise NoResultsError("pyinfra printed no deploy results")
    changed: dict[str, list[str]] = {}
    failed: dict[str, list[str]] = {}
    for op in results.get("operations", []):
        # Two operations may share a pretty name: merge their hosts rather than lose one.
        if op.get("success"):
            changed.setdefault(op["name"], []).extend(op["success"])
        if op.get("error"):
            failed.setdefault(op["name"], []).extend(op["error"])
    return Verdict(changed, failed, list(results.get("failed_hosts") or []))


def parse_stdout(stdout: str) -> dict[str, Any] | None:
    """The JSON document pyinfra printed on stdout, or None when there is none."""
    text = stdout.strip()
    if not text.startswith("{"):
        return None
    try:
        payload = json.loads(text)
    except json.JSONDecodeError:
        return None
    return payload if isinstance(payload, dict) else None


def inventory_path(lab: str) -> Path:
    """The inventory ``beamfleet lab up --name LAB`` writes at the repository root."""
    return ROOT / "inventories" / ("lab.py" if lab == "default" else f"{lab}.py")


def env_data() -> list[str]:
    """``KEY=VALUE`` items from BEAMFLEET_DATA and BEAMFLEET_APP_IMAGE (the latter wins)."""
    items = os.environ.get(DATA_ENV, "").split()
    for item in items:
        if "=" not in item:
            raise SystemExit(f"{DATA_ENV}: {item!r} is not KEY=VALUE")
    image = os.environ.get(APP_IMAGE_ENV, "").strip()
    if image:
        items.append(f"app_image={image}")
    return items


def pyinfra_argv(
    lab: str, deploy: str, data: list[str], inventory: Path | None = None
) -> list[str]:
    argv = [str(PYINFRA), "-y", "--json", str(inventory or inventory_path(lab)), deploy]
    for item in [*env_data(), *data]:
        argv += ["--data", item]
    return argv


def report(verdict: Verdict, deploy: str, seconds: float) -> str:
    """Human summary; the last line is one JSON object for machines."""
    lines = [f"{deploy}: {verdict.change_count} changes in {seconds:.0f} s"]
    lines += [f"  changed: {name} on {', '.join(hosts)}" for name, hosts in verdict.changed.items()]
    lines += [f"  FAILED: {name} on {', '.join(hosts)}" for name, hosts in verdict.failed.items()]
    summary = {
        "changed": verdict.change_count,
        "changed_ops": verdict.changed,
        "failed_hosts": verdict.failed_hosts,
    }
    lines.append(json.dumps(summary, sort_keys=True))
    return "\n".join(lines)


def run(lab: str, deploy: str, data: list[str], inventory: Path | None = None) -> int:
    """Run the deploy; print its summary; return one of the EXIT_* codes."""
    argv = pyinfra_argv(lab, deploy, data, inventory)
    # The deploys import beamfleet from this checkout, not from wherever the venv points.
    env = dict(os.environ)
    paths = [str(ROOT / "plugins"), str(ROOT / "lab"), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    start = time.monotonic()
    try:
        proc = subprocess.run(
            argv,
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        print(f"{deploy}: pyinfra still running after {TIMEOUT_SECONDS:.0f} s", file=sys.stderr)
        return EXIT_FAILED
    seconds = time.monotonic() - start
    try:
        verdict = verdict_from_json(parse_stdout(proc.stdout))
    except NoResultsError as exc:
        print(f"{deploy}: {exc} (exit {proc.returncode})\n{proc.stderr}", file=sys.stderr)
        return EXIT_FAILED
    print(report(verdict, deploy, seconds))
    if proc.returncode != 0 or not verdict.ok:
        # pyinfra's own account of what went wrong is on stderr.
        print(proc.stderr, file=sys.stderr)
        return EXIT_FAILED
    return EXIT_CHANGED if verdict.change_count else EXIT_UNCHANGED


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("lab", help="lab name (inventories/<lab>.py)")
    parser.add_argument("deploy", help="deploy file, relative to the repository root")
    parser.add_argument(
        "--data", action="append", default=[], metavar="KEY=VALUE", help="pyinfra --data"
    )
    parser.add_argument(
        "--inventory",
        type=Path,
        default=None,
        help="inventory file (default: the one `beamfleet lab up --name LAB` wrote)",
    )
    args = parser.parse_args(argv)
    return run(args.lab, args.deploy, args.data, args.inventory)


if __name__ == "__main__":
    sys.exit(main())

"""Runs on a swarm MANAGER (python3 -c, stdlib only): is an application fully meshed?

argv: a JSON object ``{"app", "basename", "network", "agent", "cookie_file", "timeout",
"tls"}`` (``tls``: the agent container's certificate paths, or null),
then the text of mesh_probe.py. Until the mesh is complete or the timeout passes, it
reads, once a second:

* the desired replicas (``docker service inspect``),
* the running tasks and their addresses on the app's overlay (``docker inspect`` tasks),
* through a running agent container on this host (``docker exec -i ... python3 -``): the
  DNS answers for ``tasks.<app>`` and each node's ``nodes()``.

Complete means: as many running tasks as desired, DNS answers = running tasks' addresses,
and every node sees every other node. Prints one JSON report (the last look).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any


def sh(*args: str, stdin: str | None = None, timeout: float = 30) -> str:
    proc = subprocess.run(
        list(args), input=stdin, capture_output=True, text=True, timeout=timeout, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:3])}: {proc.stderr.strip()[-300:]}")
    return proc.stdout


def look(cfg: dict[str, Any], probe: str) -> dict[str, Any]:
    report: dict[str, Any] = {"app": cfg["app"], "errors": []}
    spec = json.loads(sh("docker", "service", "inspect", cfg["app"]))[0]["Spec"]
    report["desired"] = int(spec["Mode"].get("Replicated", {}).get("Replicas", 0))
    ids = sh("docker", "service", "ps", "-q", "--filter", "desired-state=running", cfg["app"])
    running: list[str] = []
    if ids.split():
        for task in json.loads(sh("docker", "inspect", *ids.split())):
            if (task.get("Status") or {}).get("State") != "running":
                continue
            for att in task.get("NetworksAttachments") or []:
                if att["Network"]["Spec"]["Name"] == cfg["network"]:
                    running += [a.split("/")[0] for a in att.get("Addresses") or []]
    report["running"] = sorted(running)
    agents = sh(
        "docker", "ps", "-q", "--filter", "status=running",
        "--filter", f"label=com.docker.swarm.service.name={cfg['agent']}",
    ).split()  # fmt: skip
    if not agents:
        report["errors"].append(f"no running {cfg['agent']} container on this manager")
        report.update(dns=[], nodes={})
        return report
    seen = json.loads(
        sh(
            "docker", "exec", "-i", agents[0], "python3", "-",
            f"tasks.{cfg['app']}", cfg["basename"], cfg["cookie_file"],
            json.dumps(cfg["tls"]) if cfg.get("tls") else "",
            stdin=probe,
        )
    )  # fmt: skip
    report.update(seen)
    return report


def judge(report: dict[str, Any], basename: str) -> dict[str, Any]:
    """Add ``complete`` and ``missing`` ({node: [peers it does not see]}) to a report."""
    expected = {f"{basename}@{ip}" for ip in report["running"]}
    missing: dict[str, list[str]] = {}
    for node in sorted(expected):
        answer = report["nodes"].get(node)
        if answer is None or not answer["ok"]:
            missing[node] = sorted(expected - {node})
            continue
        lacking = sorted(expected - {node} - set(answer["peers"]))
        if lacking:
            missing[node] = lacking
    problems = list(report["errors"])
    if len(report["running"]) != report["desired"]:
        problems.append(f"{len(report['running'])} running tasks, {report['desired']} desired")
    if sorted(report["dns"]) != sorted(report["running"]):
        problems.append(
            f"DNS tasks.{report['app']} answers {report['dns']}, running tasks are at "
            f"{report['running']}"
        )
    for node, lacking in missing.items():
        answer = report["nodes"].get(node)
        if answer is None:
            problems.append(f"{node} is not in DNS")
        elif not answer["ok"]:
            problems.append(f"{node} could not be asked: {answer.get('error')}")
        else:
            problems.append(f"{node} does not see {', '.join(lacking)}")
    report["missing"] = missing
    report["problems"] = problems
    report["complete"] = not problems
    return report


def main() -> None:
    cfg = json.loads(sys.argv[1])
    probe = sys.argv[2]
    start = time.monotonic()
    deadline = start + float(cfg["timeout"])
    while True:
        try:
            report = judge(look(cfg, probe), cfg["basename"])
        except (RuntimeError, ValueError, KeyError, IndexError, subprocess.SubprocessError) as exc:
            report = {
                "app": cfg["app"], "desired": 0, "running": [], "dns": [], "nodes": {},
                "missing": {}, "complete": False, "errors": [str(exc)], "problems": [str(exc)],
            }  # fmt: skip
        report["seconds"] = round(time.monotonic() - start, 1)
        absent = any("no such service" in e.lower() for e in report["errors"])
        if absent:
            report["problems"] = [f"service {cfg['app']} does not exist: run deploys/cluster.py"]
        if report["complete"] or absent or time.monotonic() >= deadline:
            print(json.dumps(report))
            return
        time.sleep(1.0)


if __name__ == "__main__":
    main()

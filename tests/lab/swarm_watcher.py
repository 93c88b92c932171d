"""Runs on a lab manager (its python3, in the background) while a roll goes on.

argv: APP NETWORK AGENT_CONTAINER BASENAME. Once a second: the tasks Swarm runs (state
running, desired running) and their addresses on NETWORK, then, from inside the agent
container (it has the distribution client and the cookie), each of their nodes'
``nodes()``; prints one JSON line per sample: ``{"nodes": [...], "missing": {node:
[peers it does not list]}}``. Stops when /root/watch-stop exists, after 15 min at most.
"""

import json
import os
import subprocess
import sys
import time

LOOK = """
import asyncio, json, sys
from beamfleet.runtime.erlang_dist import read_cookie_file
from beamfleet.runtime.mesh import look
cookie = read_cookie_file("/run/secrets/erlang_cookie")
print(json.dumps(asyncio.run(look(sys.argv[1:], cookie, timeout=2.0)).missing()))
"""


def sh(*argv: str, stdin: str | None = None) -> str:
    return subprocess.run(
        argv, input=stdin, capture_output=True, text=True, timeout=30, check=False
    ).stdout


def running_nodes(app: str, network: str, basename: str) -> list[str]:
    ids = sh("docker", "service", "ps", "-q", "--filter", "desired-state=running", app).split()
    ips: list[str] = []
    for task in json.loads(sh("docker", "inspect", *ids) or "[]") if ids else []:
        if task["Status"]["State"] != "running":
            continue
        for att in task.get("NetworksAttachments") or []:
            if att["Network"]["Spec"]["Name"] == network:
                ips += [a.split("/")[0] for a in att.get("Addresses") or []]
    return [f"{basename}@{ip}" for ip in sorted(ips)]


def main(app: str, network: str, agent: str, basename: str) -> None:
    for _ in range(900):
        if os.path.exists("/root/watch-stop"):
            return
        begun = time.monotonic()
        nodes = running_nodes(app, network, basename)
        out = sh("docker", "exec", "-i", agent, "python3", "-", *nodes, stdin=LOOK) if nodes else ""
        print(json.dumps({"nodes": nodes, "missing": json.loads(out or "{}")}), flush=True)
        time.sleep(max(0.0, 1.0 - (time.monotonic() - begun)))  # the sampling pace


if __name__ == "__main__":
    main(*sys.argv[1:5])

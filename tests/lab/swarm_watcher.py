"""Runs on a lab manager (its python3, in the background) while a roll goes on.

argv: APP NETWORK AGENT_CONTAINER BASENAME [tls]. Once a second: the tasks Swarm runs (state
running, desired running) and their addresses on NETWORK, then, from inside the agent
container (it has the distribution client and the cookie), each of their nodes'
``nodes()``; prints one JSON line per sample: ``{"nodes": [...], "missing": {node:
[peers it does not list]}}`` (``{"error": ...}`` when the agent could not be asked). With
``tls``, the nodes are asked over TLS distribution with the agent's certificate. Stops when
/root/watch-stop exists, after 15 min at most.
"""

import json
import os
import subprocess
import sys
import time

LOOK = """
import asyncio, json, os, sys
from beamfleet.runtime.erlang_dist import read_cookie_file
from beamfleet.runtime.erlang_dist.tls import TlsConfig
from beamfleet.runtime.mesh import look
cookie = read_cookie_file("/run/secrets/erlang_cookie")
tls = None
if sys.argv[1] == "tls":
    bundle, ca = "/run/secrets/dist_agent.pem", "/run/secrets/dist_ca.pem"
    tls = TlsConfig.from_paths(bundle, bundle, ca).client_context()
view = asyncio.run(look(sys.argv[2:], cookie, timeout=2.0, tls=tls))
print(json.dumps(view.missing()))
"""


def sh(*argv: str, stdin: str | None = None) -> str:
    return subprocess.run(
        argv, input=stdin, capture_output=True, text=True, timeout=30, check=False
    ).stdout


def ask(agent: str, mode: str, nodes: list[str]) -> dict[str, object]:
    proc = subprocess.run(
        ["docker", "exec", "-i", agent, "python3", "-", mode, *nodes],
        input=LOOK, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        return {"error": proc.stderr.strip()[-300:]}
    return {"missing": json.loads(proc.stdout)}


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


def main(app: str, network: str, agent: str, basename: str, mode: str = "plain") -> None:
    for _ in range(900):
        if os.path.exists("/root/watch-stop"):
            return
        begun = time.monotonic()
        nodes = running_nodes(app, network, basename)
        answer = ask(agent, mode, nodes) if nodes else {"missing": {}}
        print(json.dumps({"nodes": nodes, **answer}), flush=True)
        time.sleep(max(0.0, 1.0 - (time.monotonic() - begun)))  # the sampling pace


if __name__ == "__main__":
    main(*sys.argv[1:6])

"""Runs INSIDE an agent container (fed on stdin by mesh_check.py): one look at the mesh.

argv: DNS_NAME BASENAME COOKIE_FILE. Resolves DNS_NAME (``tasks.<app>``) with the
container's resolver, connects to ``BASENAME@<ip>`` for each answer as a hidden node
(beamfleet.runtime.erlang_dist, the cookie read from the secret file) and asks for its ``nodes()``.
Prints one JSON object: ``{"dns": [ips], "nodes": {node: {"ok", "peers", "error"}}}``.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from typing import Any

from beamfleet.runtime.erlang_dist import DistError, connect, read_cookie_file


def resolve(name: str) -> list[str]:
    try:
        infos = socket.getaddrinfo(name, None, socket.AF_INET, socket.SOCK_STREAM)
    except socket.gaierror:
        return []
    return sorted({str(info[4][0]) for info in infos}, key=socket.inet_aton)


async def look(node: str, cookie: str) -> dict[str, Any]:
    try:
        async with connect(node, cookie, timeout=3.0, identity="check") as conn:
            peers = await conn.nodes("visible")
    except (DistError, OSError) as exc:
        return {"ok": False, "peers": [], "error": f"{type(exc).__name__}: {exc}"}
    return {"ok": True, "peers": sorted(peers), "error": None}


async def main(dns_name: str, basename: str, cookie_file: str) -> dict[str, Any]:
    cookie = read_cookie_file(cookie_file)
    ips = resolve(dns_name)
    names = [f"{basename}@{ip}" for ip in ips]
    answers = await asyncio.gather(*(look(n, cookie) for n in names))
    return {"dns": ips, "nodes": dict(zip(names, answers, strict=True))}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(*sys.argv[1:4]))))

"""Runs INSIDE an agent container (fed on stdin by mesh_check.py): one look at the mesh.

argv: DNS_NAME BASENAME COOKIE_FILE [TLS_JSON]. Resolves DNS_NAME (``tasks.<app>``) with the
container's resolver, asks ``BASENAME@<ip>`` for each answer for its ``nodes()`` with
:func:`beamfleet.runtime.mesh.look` (the same look ``beamfleet mesh`` takes in host mode;
the cookie read from the secret file; with TLS_JSON, ``{"cert", "key", "ca"}`` paths,
over TLS distribution).
Prints one JSON object: ``{"dns": [ips], "nodes": {node: {"ok", "peers", "error"}}}``.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from typing import Any

from beamfleet.runtime.erlang_dist import read_cookie_file
from beamfleet.runtime.erlang_dist.tls import TlsConfig
from beamfleet.runtime.mesh import look


def resolve(name: str) -> list[str]:
    try:
        infos = socket.getaddrinfo(name, None, socket.AF_INET, socket.SOCK_STREAM)
    except socket.gaierror:
        return []
    return sorted({str(info[4][0]) for info in infos}, key=socket.inet_aton)


async def main(dns_name: str, basename: str, cookie_file: str, tls: str = "") -> dict[str, Any]:
    cookie = read_cookie_file(cookie_file)
    paths = json.loads(tls) if tls else None
    context = (
        TlsConfig.from_paths(paths["cert"], paths["key"], paths["ca"]).client_context()
        if paths
        else None
    )
    ips = resolve(dns_name)
    view = await look([f"{basename}@{ip}" for ip in ips], cookie, tls=context)
    return {"dns": ips, "nodes": {node: answer.as_dict() for node, answer in view.nodes.items()}}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(*sys.argv[1:5]))))

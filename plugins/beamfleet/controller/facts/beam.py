"""The BEAM cluster as its nodes see it: a mesh report, and the table check.py prints.

:class:`MeshReport` runs ``assets/stack/mesh_check.py`` on a swarm manager. The pyinfra
controller cannot reach the overlay network's addresses, so the looking is done from
inside: the manager's python3 asks Docker for the desired replicas and running tasks,
and runs ``assets/stack/mesh_probe.py`` inside a running agent container (it has
the distribution client and the cookie secret) to resolve ``tasks.<app>`` and ask every
node for its ``nodes()``. It polls until the mesh is complete or the timeout passes. The
cookie is read inside the agent container and never leaves it.
"""

from __future__ import annotations

import json
import shlex
from importlib import resources
from typing import Any

from pyinfra.api.facts import FactBase
from typing_extensions import override


def _asset(name: str) -> str:
    return (resources.files("beamfleet") / "assets" / "stack" / name).read_text()


class MeshReport(FactBase[dict[str, Any]]):
    """
    A report on one application's mesh, taken on a manager that runs an agent task.

    + app: the application's service name
    + basename: its nodes' basename
    + network: its overlay network
    + agent: the agent's service name
    + cookie_file: the cookie's path inside the agent container
      (``beamfleet.runtime.constants.COOKIE_MOUNT_PATH``)
    + timeout: seconds to wait for a complete mesh
    + tls: for TLS distribution, the agent container's ``(("cert", path), ("key", path),
      ("ca", path))`` (a tuple: fact arguments must be hashable)

    Keys: ``desired``, ``running`` (task addresses), ``dns`` (``tasks.<app>`` answers),
    ``nodes`` (``{node: {ok, peers, error}}``), ``missing`` (``{node: [peers unseen]}``),
    ``problems`` (sentences), ``complete``, ``seconds``.

    .. code:: python

        report = host.get_fact(MeshReport, app="demo", basename="demo",
                               network="beamfleet-demo", agent="demo-agent",
                               cookie_file=COOKIE_MOUNT_PATH, timeout=60)
    """

    @override
    def requires_command(self, **kwargs: Any) -> str:
        return "python3"

    @override
    def command(
        self,
        app: str,
        basename: str,
        network: str,
        agent: str,
        cookie_file: str,
        timeout: float,
        tls: tuple[tuple[str, str], ...] = (),
    ) -> str:
        return mesh_check_command(
            app=app,
            basename=basename,
            network=network,
            agent=agent,
            cookie_file=cookie_file,
            timeout=timeout,
            tls=dict(tls) or None,
        )

    @override
    @staticmethod
    def default() -> dict[str, Any]:
        return {}

    @override
    def process(self, output: list[str]) -> dict[str, Any]:
        report: dict[str, Any] = json.loads(output[-1])
        return report


def mesh_check_command(
    *,
    app: str,
    basename: str,
    network: str,
    agent: str,
    cookie_file: str,
    timeout: float,
    tls: dict[str, str] | None = None,
) -> str:
    """The shell command behind :class:`MeshReport` (also the gate of a Swarm roll): its
    last line of output is the JSON report."""
    cfg = {
        "app": app,
        "basename": basename,
        "network": network,
        "agent": agent,
        "cookie_file": cookie_file,
        "timeout": timeout,
        "tls": tls,
    }
    return shlex.join(
        ["python3", "-c", _asset("mesh_check.py"), json.dumps(cfg), _asset("mesh_probe.py")]
    )


def render_mesh(report: dict[str, Any]) -> str:
    """One table, node x peers seen: ``x`` seen, ``.`` not seen, ``-`` itself."""
    nodes = sorted(report.get("nodes") or {}, key=_ip_key)
    expected = sorted(
        {f"{n.split('@')[0]}@{ip}" for n in nodes for ip in report.get("running", [])} | set(nodes),
        key=_ip_key,
    )
    lines = [
        f"{report.get('app')}: {report.get('desired')} desired, "
        f"{len(report.get('running') or [])} running, "
        f"{len(report.get('dns') or [])} {report.get('source') or 'in DNS'}, "
        f"{'complete' if report.get('complete') else 'INCOMPLETE'} mesh "
        f"after {report.get('seconds')} s"
    ]
    if expected:
        width = max(len(n) for n in expected)
        labels = [n.rsplit(".", 1)[-1] if "." in n else n for n in expected]
        col = max(3, *(len(label) for label in labels))
        lines.append(" " * width + "  " + " ".join(label.rjust(col) for label in labels))
        for node in expected:
            answer = (report.get("nodes") or {}).get(node)
            cells = []
            for peer in expected:
                if peer == node:
                    mark = "-"
                elif answer is None or not answer.get("ok"):
                    mark = "?"
                else:
                    mark = "x" if peer in answer.get("peers", []) else "."
                cells.append(mark.rjust(col))
            suffix = ""
            if answer is None:
                suffix = "  (no DNS answer)"
            elif not answer.get("ok"):
                suffix = f"  ({answer.get('error')})"
            lines.append(node.ljust(width) + "  " + " ".join(cells) + suffix)
        lines.append("x: sees the peer   .: does not   -: itself   ?: could not ask the node")
    lines += [f"problem: {p}" for p in report.get("problems") or []]
    return "\n".join(lines)


def _ip_key(node: str) -> tuple[int, ...] | tuple[str]:
    host = node.rsplit("@", 1)[-1]
    parts = host.split(".")
    if len(parts) == 4 and all(p.isdigit() for p in parts):
        return tuple(int(p) for p in parts)
    return (host,)

"""``beamfleet mesh``: wait until the given nodes form one complete mesh.

    beamfleet mesh app@10.0.0.1 app@10.0.0.2 app@10.0.0.3 --timeout 60
    beamfleet mesh --nodes-file /etc/beamfleet/app/peers --json

Every node is asked for its ``nodes()`` (as a hidden node) until each lists every other
one, or the timeout passes. The gate of a rolling change, and what a check runs.

Exit codes: 0 complete · 1 not complete when the timeout passed (the nodes missing peers
are named) · 2 bad usage or input (the cookie file, the TLS files, a node name).
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import click

from beamfleet.runtime.cli.cookie import (
    cookie_file_option,
    epmd_port_option,
    read_private_cookie,
)
from beamfleet.runtime.cli.tls import tls_config, tls_options
from beamfleet.runtime.erlang_dist import CookieFileError, TlsConfigError, default_cookie_file
from beamfleet.runtime.mesh import wait_for_mesh
from beamfleet.runtime.node_names import is_node_name

EXIT_COMPLETE = 0
EXIT_INCOMPLETE = 1
EXIT_USAGE = 2


def _nodes_from_file(path: Path) -> list[str]:
    """Node names, one per line (``#`` comments and blank lines skipped)."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise click.UsageError(f"cannot read {path}: {exc.strerror}") from exc
    return [
        line.split("#", 1)[0].strip() for line in text.splitlines() if line.split("#", 1)[0].strip()
    ]


@click.command()
@click.argument("nodes", nargs=-1, metavar="NODE...")
@click.option(
    "--nodes-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also read node names from this file, one per line.",
)
@cookie_file_option
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=60.0,
    show_default=True,
    help="Seconds to wait for a complete mesh (0: look once).",
)
@click.option(
    "--interval", type=click.FloatRange(min=0.1), default=1.0, show_default=True,
    help="Seconds between looks.",
)  # fmt: skip
@click.option(
    "--connect-timeout", type=click.FloatRange(min=0.05), default=3.0, show_default=True,
    help="Seconds allowed to connect to and ask one node.",
)  # fmt: skip
@epmd_port_option
@tls_options
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def mesh(
    *,
    nodes: tuple[str, ...],
    nodes_file: Path | None,
    cookie_file: Path | None,
    timeout: float,
    interval: float,
    connect_timeout: float,
    epmd_port: int,
    tls_cert: Path | None,
    tls_key: Path | None,
    tls_ca: Path | None,
    as_json: bool,
) -> None:
    """Wait until NODE... (and --nodes-file's) all see each other."""
    expected = list(dict.fromkeys([*nodes, *(_nodes_from_file(nodes_file) if nodes_file else [])]))
    if not expected:
        raise click.UsageError("give the nodes: NODE... or --nodes-file")
    bad = [n for n in expected if not is_node_name(n)]
    if bad:
        raise click.UsageError(f"not a node name (NAME@HOST): {', '.join(bad)}")
    tls = tls_config(tls_cert, tls_key, tls_ca)
    try:
        cookie = read_private_cookie(cookie_file or default_cookie_file())
        # loaded once, so a bad file is a usage error, not every node's failure
        context = tls.client_context() if tls is not None else None
    except (CookieFileError, TlsConfigError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    view, seconds = asyncio.run(
        wait_for_mesh(
            expected, cookie, timeout=timeout, interval=interval,
            connect_timeout=connect_timeout, epmd_port=epmd_port, tls=context,
        )
    )  # fmt: skip
    if as_json:
        click.echo(json.dumps({**view.as_dict(), "seconds": seconds}, sort_keys=True))
    elif view.complete:
        click.echo(f"complete mesh of {len(expected)} nodes after {seconds} s")
    for problem in view.problems():
        click.echo(f"incomplete after {seconds} s: {problem}", err=True)
    sys.exit(EXIT_COMPLETE if view.complete else EXIT_INCOMPLETE)

"""`beamfleet agent` (the discovery agent) and `beamfleet status` (ask a running agent)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import urllib.error
import urllib.request
from typing import Any

import click

from beamfleet.runtime.discovery.agent import Agent
from beamfleet.runtime.discovery.config import DEFAULT_LISTEN, load_config
from beamfleet.runtime.discovery.errors import ConfigError
from beamfleet.runtime.discovery.log import JsonLog
from beamfleet.runtime.discovery.server import parse_listen
from beamfleet.runtime.erlang_dist import CookieFileError, read_cookie_file


@click.command()
@click.option(
    "--source",
    "sources",
    multiple=True,
    metavar="KIND:ARG",
    help="Repeatable: dns:NAME, srv:NAME, rancher[:URL], static:A@H,B@H, "
    "file:PATH, epmd:HOST (env BEAMFLEET_SOURCES, space-separated).",
)
@click.option("--basename", help="Name before @ for sources that give addresses.")
@click.option(
    "--ownership",
    type=click.Choice(["local-epmd", "rendezvous", "all"]),
    help="Which nodes this agent drives (default all).",
)
@click.option("--interval", type=float, help="Seconds between polls (default 1, ±jitter).")
@click.option(
    "--cookie-file", help="File holding the Erlang cookie (default $BEAMFLEET_COOKIE_FILE)."
)
@click.option(
    "--listen",
    metavar="ADDR:PORT",
    help=f"Health/metrics/status HTTP address (default {DEFAULT_LISTEN}).",
)
@click.option("--config", "config_file", metavar="PATH", help="Optional TOML config file.")
@click.option("--naming", help="ip (default), reverse, or a template like '{basename}@{ip}'.")
@click.option(
    "--nameserver", help="DNS server(s) IP[:PORT], comma-separated (default: /etc/resolv.conf)."
)
@click.option("--agents-dns", help="rendezvous: the agents' own DNS name.")
@click.option("--advertise", help="rendezvous: this agent's address among --agents-dns.")
@click.option("--jitter", type=float, help="Fraction of the interval (default 0.1).")
@click.option("--dns-timeout", type=float, help="Per-query timeout, seconds (default 2).")
@click.option("--connect-timeout", type=float, help="Per-connect timeout, seconds (default 3).")
@click.option("--max-parallel", type=int, help="Connects in flight per node (default 16).")
@click.option(
    "--grace-polls",
    type=int,
    help="Successful polls a peer must be absent from before removal (default 3).",
)
@click.option("--grace-seconds", type=float, help="... and seconds (default 10).")
@click.option(
    "--allow-empty/--no-allow-empty",
    default=None,
    help="Accept an empty answer as 'no peers' (default: keep the last good set).",
)
@click.option("--backoff-max", type=float, help="Cap of a failing source's backoff (10 s).")
@click.option("--epmd-port", type=int, help="EPMD port on the nodes' hosts (default 4369).")
@click.option("--log-level", type=click.Choice(["info", "debug"]))
def agent(sources: tuple[str, ...], config_file: str | None, **flags: Any) -> None:
    """Run the discovery agent that meshes BEAM nodes.

    Example: BEAMFLEET_COOKIE_FILE=/run/secrets/cookie beamfleet agent
    --source static:a@127.0.0.1,b@127.0.0.1 --ownership all --interval 1
    """
    try:
        config = load_config(flags, list(sources), config_file=config_file)
        cookie = read_cookie_file(config.cookie_file)
        instance = Agent.from_config(config, cookie, log=JsonLog(level=config.log_level))
    except (ConfigError, CookieFileError) as exc:
        raise click.ClickException(str(exc)) from None

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await instance.run(stop)

    try:
        asyncio.run(main())
    except OSError as exc:  # e.g. --listen address in use
        raise click.ClickException(f"agent cannot start: {exc}") from None


@click.command()
@click.option(
    "--listen",
    default=None,
    metavar="ADDR:PORT",
    help=f"The agent's --listen address (default $BEAMFLEET_LISTEN or {DEFAULT_LISTEN}).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the raw JSON status.")
@click.option("--timeout", type=float, default=5.0, show_default=True)
def status(listen: str | None, as_json: bool, timeout: float) -> None:
    """Ask a running agent for its state. Exit 0 healthy, 1 unhealthy, 2 unreachable."""
    try:
        host, port = parse_listen(listen or os.environ.get("BEAMFLEET_LISTEN") or DEFAULT_LISTEN)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1" if host == "0.0.0.0" else "::1"
    url_host = f"[{host}]" if ":" in host else host
    url = f"http://{url_host}:{port}/status"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            data = json.loads(resp.read())
    except (OSError, urllib.error.URLError, ValueError) as exc:
        click.echo(f"error: no agent answered at {url}: {exc}", err=True)
        sys.exit(2)
    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=True))
    else:
        click.echo(f"healthy: {data['healthy']} ({data['reason']})")
        click.echo(
            f"ownership: {data['ownership']}  desired peers: {len(data['desired'])}  "
            f"last successful poll: {data['last_success_age']} s ago"
        )
        for src in data["sources"]:
            state = "ok" if src["ok"] else f"FAILING: {src['error']}"
            click.echo(f"source {src['source']}: {src['peers']} peers, {state}")
        for node, info in data["owned"].items():
            reach = "reachable" if info["reachable"] else f"UNREACHABLE: {info['error']}"
            click.echo(
                f"node {node}: {reach}, {len(info['connected'])} connected, "
                f"missing {info['missing'] or 'none'}"
            )
        for peer, age in data["pending_removal"].items():
            click.echo(f"pending removal: {peer} (absent {age} s)")
    sys.exit(0 if data["healthy"] else 1)

"""`beamfleet agent` (the discovery agent) and `beamfleet status` (ask a running agent)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any, TypeVar

import click

from beamfleet.runtime.cli.cookie import read_private_cookie
from beamfleet.runtime.discovery.agent import Agent
from beamfleet.runtime.discovery.config import DEFAULT_LISTEN, load_config
from beamfleet.runtime.discovery.errors import ConfigError
from beamfleet.runtime.discovery.log import JsonLog
from beamfleet.runtime.discovery.server import parse_listen
from beamfleet.runtime.discovery.settings import SETTINGS, Setting, setting
from beamfleet.runtime.erlang_dist import CookieFileError, TlsConfigError

LISTEN_ENV = setting("listen").env


F = TypeVar("F", bound=Callable[..., Any])


def click_option(s: Setting) -> Callable[[F], F]:
    """The click option for one declared setting (its help carries default and env var)."""
    if s.type is bool:
        decls = [f"{s.flag}/--no-{s.flag[2:]}", s.name]
        return click.option(*decls, default=None, help=s.cli_help)
    kind: Any = click.Choice(s.choices) if s.choices else s.type
    return click.option(
        s.flag,
        s.name,
        type=kind,
        multiple=s.repeatable,
        metavar=s.metavar or None,
        help=s.cli_help,
    )


def with_settings(command: F) -> F:
    """Adds one option per entry of SETTINGS, listed in --help in declaration order."""
    for s in reversed(SETTINGS):
        command = click_option(s)(command)
    return command


@click.command()
@with_settings
def agent(source: tuple[str, ...], config: str | None, **flags: Any) -> None:
    """Run the discovery agent that meshes BEAM nodes.

    Example: BEAMFLEET_COOKIE_FILE=/run/secrets/cookie beamfleet agent
    --source static:a@127.0.0.1,b@127.0.0.1 --ownership all --interval 1
    """
    try:
        loaded = load_config(flags, list(source), config_file=config)
        cookie = read_private_cookie(loaded.cookie_file)
        instance = Agent.from_config(loaded, cookie, log=JsonLog(level=loaded.log_level))
    except (ConfigError, CookieFileError, TlsConfigError) as exc:
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
    help=f"The agent's --listen address (default ${LISTEN_ENV} or {DEFAULT_LISTEN}).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the raw JSON status.")
@click.option("--timeout", type=float, default=5.0, show_default=True)
def status(listen: str | None, as_json: bool, timeout: float) -> None:
    """Ask a running agent for its state. Exit 0 healthy, 1 unhealthy, 2 unreachable."""
    try:
        host, port = parse_listen(listen or os.environ.get(LISTEN_ENV) or DEFAULT_LISTEN)
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
        deferred = data.get("removal_deferred") or []  # absent from older agents
        if deferred:
            click.echo(
                f"removal deferred: {len(deferred)} peer(s) past their grace kept, "
                f"at most {data.get('removal_limit')} removed per grace window"
            )
    sys.exit(0 if data["healthy"] else 1)

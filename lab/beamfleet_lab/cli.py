"""``beamfleet lab``: start, inspect and remove the local multi-host lab."""

from __future__ import annotations

import os
from pathlib import Path

import click

from beamfleet_lab import DEFAULT_LAB, Lab, LabError

_name_option = click.option(
    "--name", "name", default=DEFAULT_LAB, show_default=True, help="Lab name (several can run)."
)
_root_option = click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Project directory holding inventories/ and .lab/ (default: current directory).",
)


def _lab(name: str, root: Path | None) -> Lab:
    try:
        return Lab(name, root)
    except LabError as exc:
        raise click.ClickException(str(exc)) from exc


@click.group()
def lab() -> None:
    """The local multi-host lab: Debian hosts (systemd + sshd) as containers."""


@lab.command()
@click.option("--hosts", default=3, show_default=True, help="Number of hosts.")
@click.option("--managers", default=1, show_default=True, help="Hosts in group `managers`.")
@click.option(
    "--debian",
    "suite",
    type=click.Choice(["bookworm", "trixie"]),
    default="bookworm",
    show_default=True,
    help="The hosts' Debian: bookworm (12) or trixie (13).",
)
@_name_option
@_root_option
def up(hosts: int, managers: int, suite: str, name: str, root: Path | None) -> None:
    """Start the lab and write its pyinfra inventory."""
    target = _lab(name, root)
    try:
        state = target.up(hosts=hosts, managers=managers, suite=suite)
    except LabError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"lab {state.name!r}: {len(state.hosts)} hosts on {state.subnet}")
    for host in state.hosts:
        click.echo(f"  {host.name:<8} {host.ip:<15} {host.group}")
    click.echo(f"dns: {state.dns_name} (every host) served by {state.dns_server}")
    click.echo(f"inventory: {target.inventory_path}")


@lab.command()
@click.option(
    "--demo/--no-demo",
    default=True,
    show_default=True,
    help="Also the demo application's image (examples/demo) and the agent's.",
)
def images(demo: bool) -> None:
    """Build the images labs and deploys use, now, once (each is built only when missing).

    Run before several labs start at once (the test suite does), so they share the images
    instead of building the same ones side by side.
    """
    from beamfleet.controller.deploys import images as deploy_images  # noqa: PLC0415
    from beamfleet_lab.images import ensure_host_image  # noqa: PLC0415

    try:
        for suite in ("bookworm", "trixie"):
            click.echo(f"lab host ({suite}): {ensure_host_image(suite)}")
    except LabError as exc:
        raise click.ClickException(str(exc)) from exc
    if demo:
        root = Path.cwd() / "examples" / "demo"
        app = deploy_images.build(
            deploy_images.APP_REPO_DEFAULT, deploy_images.app_context(root), archive=False
        )
        click.echo(f"demo: {app.ref}")
        agent = deploy_images.build(deploy_images.AGENT_REPO, deploy_images.agent_context())
        click.echo(f"agent: {agent.ref}")


@lab.command()
@_name_option
@_root_option
def down(name: str, root: Path | None) -> None:
    """Remove the lab's containers, volumes, network, state and inventory."""
    try:
        removed = _lab(name, root).down()
    except LabError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"removed {len(removed)} objects" if removed else f"lab {name!r}: nothing to remove")


@lab.command()
@_name_option
@_root_option
def status(name: str, root: Path | None) -> None:
    """Show each host's container state, whether its sshd answers, and the lab's DNS server."""
    target = _lab(name, root)
    try:
        rows = target.status()
        dns_server = target.load().dns_server
        dns_running = target.dns_running()
    except LabError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{'HOST':<8} {'GROUP':<9} {'ADDRESS':<15} {'CONTAINER':<10} SSH")
    for row in rows:
        ssh = "up" if row.ssh else "down"
        click.echo(f"{row.name:<8} {row.group:<9} {row.ip:<15} {row.container_state:<10} {ssh}")
    if not dns_server:
        click.echo("dns: none (lab created before the lab had a DNS server: down, then up)")
    else:
        server = "running" if dns_running else "NOT running: `beamfleet lab up` starts it again"
        click.echo(f"dns: {target.dns_name} served by {dns_server} ({server})")
    if not dns_running or not all(r.ssh and r.container_state == "running" for r in rows):
        raise SystemExit(1)


@lab.command(context_settings={"ignore_unknown_options": True})
@click.argument("host")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@_name_option
@_root_option
def ssh(host: str, command: tuple[str, ...], name: str, root: Path | None) -> None:
    """Log into HOST (as named in the inventory), or run COMMAND on it: lab ssh host1 -- ls."""
    try:
        argv = _lab(name, root).ssh_argv(host, command)
    except LabError as exc:
        raise click.ClickException(str(exc)) from exc
    os.execvp(argv[0], argv)


@lab.command("add-host")
@click.option(
    "--group", type=click.Choice(["managers", "workers"]), default="workers", show_default=True
)
@_name_option
@_root_option
def add_host(group: str, name: str, root: Path | None) -> None:
    """Start one more host and add it to the inventory (the next deploy joins it)."""
    try:
        host = _lab(name, root).add_host(group)
    except LabError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"added {host.name} ({host.ip}) to {host.group}")


@lab.command("move-host")
@click.argument("host")
@click.option("--group", type=click.Choice(["managers", "workers"]), required=True)
@_name_option
@_root_option
def move_host(host: str, group: str, name: str, root: Path | None) -> None:
    """Move HOST to another group (the next deploy promotes or demotes it)."""
    try:
        moved = _lab(name, root).move_host(host, group)
    except LabError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{moved.name} is now in {moved.group}")


@lab.command("remove-host")
@click.argument("host")
@_name_option
@_root_option
def remove_host(host: str, name: str, root: Path | None) -> None:
    """Delete HOST's container and drop it from the inventory.

    Run deploys/remove_host.py first so the swarm lets the node go cleanly.
    """
    try:
        gone = _lab(name, root).forget_host(host)
    except LabError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"removed {gone.name} ({gone.ip})")

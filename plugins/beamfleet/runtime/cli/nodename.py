"""``beamfleet nodename``: print (or export and exec with) this node's BEAM name.

Same flags, outputs, error texts and exit codes as the sh shim
``beamfleet/assets/beamfleet-nodename`` (docs/naming.md)::

    beamfleet nodename --basename app --cidr 10.0.9.0/24 --format env
    beamfleet nodename --basename app --provider aws --exec -- bin/app start

``--provider`` (the address provider) was once called ``--source``; that spelling still
works, hidden from ``--help``, and prints a one-line deprecation warning.
"""

from __future__ import annotations

import os
import shutil
import sys

import click

from beamfleet.runtime.naming.errors import NamingError
from beamfleet.runtime.naming.nodename import FORMATS, check_format
from beamfleet.runtime.naming.resolve import resolve_node_name

PROG = "nodename"
PROVIDER_HELP = "auto|rancher|aws|gcp|azure|digitalocean|openstack|k8s|hostname|env:VAR"
SOURCE_DEPRECATED = "warning: --source is deprecated, use --provider (same values)"


def _fail(message: str, code: int) -> None:
    click.echo(f"{PROG}: {message}", err=True)
    sys.exit(code)


def _check_executable(program: str) -> None:
    """Fail like the shim (127 not found, 126 not executable) before replacing the process."""
    if "/" in program:
        if not os.path.exists(program):
            _fail(f"--exec: command not found: {program}", 127)
        if os.path.isdir(program) or not os.access(program, os.X_OK):
            _fail(f"--exec: command not executable: {program}", 126)
    elif shutil.which(program) is None:
        _fail(f"--exec: command not found: {program}", 127)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--basename", default=None, help="The part before '@' (a valid alive name).")
@click.option("--provider", default=None, help=f"Address provider [default: auto]: {PROVIDER_HELP}")
@click.option("--source", "old_provider", default=None, hidden=True)
@click.option("--cidr", "cidrs", multiple=True, help="Keep addresses inside CIDR (repeatable).")
@click.option("--interface", default=None, help="Keep addresses of this interface.")
@click.option(
    "--format",
    "fmt",
    default=None,
    help=f"{'|'.join(FORMATS)} (default: name; env with --exec)",
)
@click.option(
    "--exec",
    "do_exec",
    is_flag=True,
    help="Export the env variables, then exec the command given after --.",
)
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def nodename(
    *,
    basename: str | None,
    provider: str | None,
    old_provider: str | None,
    cidrs: tuple[str, ...],
    interface: str | None,
    fmt: str | None,
    do_exec: bool,
    command: tuple[str, ...],
) -> None:
    """Compute a BEAM node name (basename@address) from this host's or container's address.

    Exit codes: 0 ok, 2 bad input, 3 no/ambiguous address, 4 address provider failure,
    126/127 --exec command not executable/not found.
    """
    if old_provider is not None:
        click.echo(f"{PROG}: {SOURCE_DEPRECATED}", err=True)
        if provider is not None:
            _fail("--source is the old name of --provider: give --provider only", 2)
        provider = old_provider
    try:
        if fmt is not None:
            check_format(fmt)
        if command and not do_exec:
            _fail(f"unexpected argument '{command[0]}' (a command needs --exec -- CMD...)", 2)
        if do_exec and not command:
            _fail("--exec needs a command after --", 2)
        if basename is None:
            _fail("missing --basename NAME (the part before '@')", 2)
            return
        node = resolve_node_name(basename, provider or "auto", cidrs, interface)
    except NamingError as exc:
        _fail(str(exc), exc.exit_code)
        return
    if not do_exec:
        click.echo(node.render(fmt or "name", os.environ), nl=False)
        return
    os.environ.update(node.env(os.environ))
    os.environ["BEAMFLEET_NODE_NAME"] = node.name
    argv = list(command) + (node.erl_args() if fmt == "erl-flags" else [])
    _check_executable(argv[0])
    sys.stdout.flush()
    try:
        os.execvp(argv[0], argv)
    except FileNotFoundError:
        _fail(f"--exec: command not found: {argv[0]}", 127)
    except PermissionError:
        _fail(f"--exec: command not executable: {argv[0]}", 126)
    except OSError as exc:
        _fail(f"--exec: cannot run {argv[0]}: {exc.strerror}", 126)

"""The ``beamfleet`` command line.

Each sub-command lives in its own module and is imported only when it is used,
so ``beamfleet nodename`` in an entrypoint does not pay for importing pyinfra.
"""

from __future__ import annotations

import importlib
from typing import Any

import click

from beamfleet import __version__

# name -> "module:attribute" of a click command or group
SUBCOMMANDS: dict[str, str] = {
    "node": "beamfleet.cli.node:node",
    "nodename": "beamfleet.cli.nodename:nodename",
    "agent": "beamfleet.cli.agent:agent",
    "status": "beamfleet.cli.agent:status",
    "lab": "beamfleet.cli.lab:lab",
}


class LazyGroup(click.Group):
    """A click group whose sub-commands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(SUBCOMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = SUBCOMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        command: Any = getattr(importlib.import_module(module_name), attr)
        if not isinstance(command, click.Command):
            raise TypeError(f"{target} is not a click command")
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="beamfleet")
def main() -> None:
    """beamfleet: Erlang/Elixir clusters on Docker Swarm, without a clustering library."""

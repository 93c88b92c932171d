"""The ``beamfleet`` command line.

Each sub-command lives in its own module and is imported only when it is used,
so ``beamfleet nodename`` in an entrypoint does not pay for importing anything else.
Other installed distributions add sub-commands through the ``beamfleet.commands``
entry-point group (the development lab registers ``beamfleet lab`` that way), so the
runtime never imports them and works where none is installed (the agent image).
"""

from __future__ import annotations

import importlib
from importlib import metadata
from typing import Any

import click

from beamfleet import __version__

# name -> "module:attribute" of a click command or group
SUBCOMMANDS: dict[str, str] = {
    "node": "beamfleet.runtime.cli.node:node",
    "nodename": "beamfleet.runtime.cli.nodename:nodename",
    "agent": "beamfleet.runtime.cli.agent:agent",
    "status": "beamfleet.runtime.cli.agent:status",
    "mesh": "beamfleet.runtime.cli.mesh:mesh",
}
PLUGIN_GROUP = "beamfleet.commands"


def plugin_subcommands() -> dict[str, str]:
    """The sub-commands installed distributions register (built-in names win)."""
    return {
        entry.name: entry.value
        for entry in metadata.entry_points(group=PLUGIN_GROUP)
        if entry.name not in SUBCOMMANDS
    }


class LazyGroup(click.Group):
    """A click group whose sub-commands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*SUBCOMMANDS, *plugin_subcommands()])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        # A built-in command never scans the installed distributions' metadata: that
        # scan would be paid by every `beamfleet nodename` in a container's entrypoint.
        target = SUBCOMMANDS.get(cmd_name) or plugin_subcommands().get(cmd_name)
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

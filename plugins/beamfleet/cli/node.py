"""`beamfleet node` (placeholder until issue 2 lands)."""

import click


@click.command()
def node() -> None:
    """Talk to a BEAM node over the Erlang distribution protocol."""
    raise click.ClickException("not implemented yet (issue 2)")
